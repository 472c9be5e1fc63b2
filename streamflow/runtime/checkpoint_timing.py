"""How long each phase of a checkpoint took in one task: Flink's per-subtask statistics.

A task notes the moments of checkpoint n as they happen, in order:

1. the first barrier n arrives (a source: its trigger is served) - the start delay is
   measured from the coordinator's trigger time, on the job's clock;
2. the last barrier n arrives: alignment is over (0 for one input or a source); the
   task forwards the barrier (waiting while an output channel is full: counted in no
   phase) and then copies every operator's state: the synchronous part;
3. the copy is done; the state is written in the background;
4. the writes are done: the asynchronous part is over and the bytes written are known.

The coordinator copies them into the checkpoint's history when it completes or aborts,
and the metrics read the last finished one per task. Cost: a few clock reads per
checkpoint and task, never per record.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Protocol

__all__ = ["CheckpointTimings", "NotesCheckpointTimings", "SubtaskCheckpointTiming", "subtask_timings"]

_KEPT = 8  # checkpoints remembered per task: more than can be in flight at once


@dataclass(slots=True)
class SubtaskCheckpointTiming:
    """Checkpoint phases of one task (a chain subtask), durations in seconds.

    ``async_duration`` and ``size`` are None/0 until the state writes are done.
    ``persisted_bytes`` counts in-flight records written as channel state (unaligned
    checkpoints); aligned checkpoints persist none.
    """

    checkpoint_id: int
    start_delay: float
    alignment: float = 0.0
    sync_duration: float | None = None
    async_duration: float | None = None
    size: int = 0
    persisted_bytes: int = 0
    unaligned: bool = False
    _first_barrier: float = field(default=0.0, repr=False, compare=False)  # perf_counter at step 1
    _writes_started: float = field(default=0.0, repr=False, compare=False)  # perf_counter at step 3

    @property
    def finished(self) -> bool:
        return self.async_duration is not None


class CheckpointTimings:
    """The timings of the last few checkpoints of one task (see the module docstring)."""

    __slots__ = ("_by_id", "last")

    def __init__(self) -> None:
        self._by_id: OrderedDict[int, SubtaskCheckpointTiming] = OrderedDict()
        self.last: SubtaskCheckpointTiming | None = None  # the newest one whose writes are done

    def barrier_arrived(self, checkpoint_id: int, triggered_at: float, now: float) -> None:
        """Step 1 (only the first barrier of ``checkpoint_id`` counts). ``triggered_at``
        and ``now`` are on the job's clock."""
        if checkpoint_id in self._by_id:
            return
        timing = SubtaskCheckpointTiming(checkpoint_id, start_delay=max(0.0, now - triggered_at))
        timing._first_barrier = time.perf_counter()
        self._by_id[checkpoint_id] = timing
        while len(self._by_id) > _KEPT:
            self._by_id.popitem(last=False)

    def aligned(self, checkpoint_id: int, triggered_at: float, now: float) -> None:
        """Step 2: every barrier is in (a source: its trigger is being served now)."""
        self.barrier_arrived(checkpoint_id, triggered_at, now)
        timing = self._by_id[checkpoint_id]
        timing.alignment = time.perf_counter() - timing._first_barrier

    def synced(self, checkpoint_id: int, copy_started: float) -> None:
        """Step 3: the synchronous copy that began at ``copy_started`` (perf_counter,
        after the barrier was forwarded) is done."""
        timing = self._by_id.get(checkpoint_id)
        if timing is not None:
            now = time.perf_counter()
            timing.sync_duration = now - copy_started
            timing._writes_started = now

    def written(self, checkpoint_id: int, size: int) -> None:
        """Step 4: the state writes are done; ``size`` bytes were written."""
        timing = self._by_id.get(checkpoint_id)
        if timing is not None:
            timing.async_duration = time.perf_counter() - timing._writes_started
            timing.size = size
            if self.last is None or checkpoint_id >= self.last.checkpoint_id:
                self.last = timing

    def get(self, checkpoint_id: int) -> SubtaskCheckpointTiming | None:
        return self._by_id.get(checkpoint_id)


class NotesCheckpointTimings(Protocol):
    """A task as the coordinator reads it for the history: its name and its timings
    (declared here so that the coordinator does not import the task module)."""

    @property
    def name(self) -> str: ...

    @property
    def checkpoint_timings(self) -> CheckpointTimings: ...


def subtask_timings(tasks: Iterable[NotesCheckpointTimings], checkpoint_id: int) -> dict[str, SubtaskCheckpointTiming]:
    """Per task name, what each task noted of ``checkpoint_id``; tasks the barrier never
    reached are left out."""
    found: dict[str, SubtaskCheckpointTiming] = {}
    for task in tasks:
        timing = task.checkpoint_timings.get(checkpoint_id)
        if timing is not None:
            found[task.name] = timing
    return found
