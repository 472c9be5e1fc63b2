"""The checkpoint history of a job run, kept across its attempts and read by metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamflow.runtime.checkpoint_timing import SubtaskCheckpointTiming

__all__ = ["CheckpointRecord", "CheckpointStats"]


@dataclass(slots=True)
class CheckpointRecord:
    """One line of the checkpoint history shown by metrics."""

    checkpoint_id: int
    status: str
    triggered_at: float
    duration: float | None = None
    size: int = 0
    reason: str | None = None
    is_final: bool = False
    savepoint: str | None = None  # the savepoint directory, once written
    # per task name, its phases of this checkpoint (filled when it completes or aborts)
    subtasks: dict[str, SubtaskCheckpointTiming] = field(default_factory=dict)


@dataclass(slots=True)
class CheckpointStats:
    """Counts of a run's checkpoints, where it restored from, and the last 20 records."""

    completed: int = 0
    failed: int = 0
    restored_from: int | None = None
    restored_path: str | None = None  # the savepoint or chk-<n> directory restored from
    history: list[CheckpointRecord] = field(default_factory=list)

    def add(self, record: CheckpointRecord) -> None:
        self.history.append(record)
        del self.history[:-20]
