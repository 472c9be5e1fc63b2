"""What a job execution is configured with, besides its plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamflow.config import CheckpointConfig, RestartStrategy
from streamflow.core.clock import Clock
from streamflow.core.faults import FaultInjector
from streamflow.savepoint.restore import RestoreSettings
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
    restore_from: RestoreSettings | None = None  # a savepoint (or checkpoint) to start from
    savepoint_dir: Path | None = None  # default target of savepoints without a directory
    # Restore past a damaged completed checkpoint even with exactly-once sinks (duplicates).
    allow_checkpoint_rollback: bool = False
    # The faults armed for this run (tests); None: as STREAMFLOW_CRASH says.
    faults: FaultInjector | None = None
