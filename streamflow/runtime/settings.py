"""What a job execution is configured with, besides its plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamflow.config import CheckpointConfig, RestartStrategy
from streamflow.core.clock import Clock
from streamflow.core.faults import FaultInjector
from streamflow.partitioning.workers import ONE_PROCESS, WorkerLayout
from streamflow.savepoint.restore import RestoreSettings
from streamflow.savepoint.set_restore import SetRestoreSettings
from streamflow.state.backend import StateBackend

__all__ = ["ExecutionSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSettings:
    """Everything an execution needs besides the plan; filled by StreamEnvironment."""

    job_name: str
    checkpoint: CheckpointConfig | None
    checkpoint_dir: Path | None
    restart: RestartStrategy
    state_backend: StateBackend
    clock: Clock
    channel_capacity: int  # batches per channel, unless the downstream operator sets its own
    source_batch_size: int
    source_poll_wait: float
    channel_records: int | None = None  # and at most this many records per channel
    # a savepoint (or checkpoint) to start from, or one worker's part of a savepoint set
    restore_from: RestoreSettings | SetRestoreSettings | None = None
    savepoint_dir: Path | None = None  # default target of savepoints without a directory
    # Restore past a damaged completed checkpoint even with exactly-once sinks (duplicates).
    allow_checkpoint_rollback: bool = False
    # The faults armed for this run (tests); None: as STREAMFLOW_CRASH says.
    faults: FaultInjector | None = None
    # Which worker of a job on several worker processes this run is. Sources, sinks and
    # operators see global subtask indices and parallelism; tasks, acks and state files
    # keep the local ones (each worker checkpoints on its own).
    layout: WorkerLayout = ONE_PROCESS
