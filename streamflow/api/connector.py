"""The contracts between the runtime and sources and sinks.

A :class:`Source` makes one :class:`SourceReader` per source subtask; a :class:`Sink`
makes one :class:`SinkWriter` per sink subtask. The runtime calls a reader or writer from
its subtask's own asyncio task only, never concurrently with itself.

Reader lifecycle: open -> poll* (interleaved with snapshot_splits(n) when checkpoint n is
triggered) -> notify_checkpoint_complete(n) -> ... -> close. A reader's split state is
operator ListState: on restore with the same parallelism each subtask gets back its own
splits; with another parallelism the splits of all old subtasks are redistributed evenly.

Writer lifecycle: open -> write* -> snapshot(n) on barrier n (a two-phase-commit writer
pre-commits here) -> notify_checkpoint_complete(n) (commit) / notify_checkpoint_aborted(n)
-> ... -> finish (end of input) -> close. ``close`` is not called after a crash. A writer
that also has ``initialize_state(ctx)`` and ``snapshot_state(ctx)`` (a
CheckpointedFunction) keeps operator state: ``initialize_state`` right after ``open``,
``snapshot_state`` right after ``snapshot(n)``.

These are public API, exported from ``streamflow.connectors``; the README sections
"Write your own source" and "Write your own exactly-once sink" walk through them.
What is given where a source or sink is expected is checked by
:mod:`streamflow.api.connector_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from streamflow.core.clock import Clock, SystemClock
from streamflow.core.services import JobServices


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceContext:
    """What a reader knows about its place in the job.

    ``restored_splits`` is ``None`` on a fresh start, and also when the checkpoint
    restored from holds no state of this source's uid (a source added to the job since
    starts as on a first run); else the split states this subtask got from the
    checkpoint (possibly an empty list). ``all_restored_splits`` is then
    the split states of every old subtask, in old-subtask order: a source that assigns
    splits by its own rule (Kafka partitions by a stable hash, so that partitions found
    while running have an owner too) picks its own from there, and tells a split no one
    has read yet from one another subtask owns.
    """

    job_name: str
    operator_uid: str
    subtask_index: int
    parallelism: int
    restored_splits: list[Any] | None = None
    all_restored_splits: list[Any] | None = None
    clock: Clock = field(default_factory=SystemClock)
    run_id: str = ""
    """Unique per job run (``env.execute``), the same for all its attempts and operators."""
    services: JobServices = field(default_factory=JobServices)
    """The job run's own objects (see :class:`~streamflow.core.services.JobServices`)."""


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """A record a reader read but could not turn into a pipeline record (bytes that do
    not deserialize). The source's error policy decides: fail the attempt, skip it, or
    send ``record`` (as read, e.g. the raw Kafka record) to the dead-letter sink."""

    position: Any
    record: Any
    error: Exception


@dataclass(slots=True)
class SourceBatch:
    """Records read from one split; ``positions[i]`` is record i's position in ``split``.

    ``failures`` are records of the same split left out of ``records`` (see
    :class:`RecordFailure`); the reader's position has moved past them.

    ``timestamps[i]`` is record i's own event time in float seconds (a Kafka record's
    timestamp), ``None`` for a record without one; the whole list is ``None`` when the
    source knows no timestamps (then nothing per record is spent on them). The records
    carry them downstream (across the exchanges between workers too), and a
    ``WatermarkStrategy`` given to ``env.from_source`` takes them as the records' event
    time unless it has a timestamp assigner of its own.

    ``watermark`` is the reader's own event time once these records are emitted (float
    seconds, ``None`` for no watermark), for readers that compute watermarks themselves:
    the runtime forwards it after the records when it is higher than the last one. An
    empty batch may carry a watermark too (idle input). It is ignored when the source was
    given a ``WatermarkStrategy``, which makes the watermarks instead. Such a reader may
    also have a ``watermark_status`` attribute (a ``WatermarkStatus``), read after every
    poll: while it is IDLE the subtask holds back no event time downstream.
    """

    records: list[Any]
    positions: list[Any] | None
    split: str
    failures: list[RecordFailure] | None = None
    watermark: float | None = None
    timestamps: list[float | None] | None = None


class SourceReader(Protocol):
    async def open(self) -> None:
        """Connect and seek to the restored (or initial) positions."""

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        """Return the next records, an empty batch if none arrived within ``max_wait``
        seconds, or ``None`` once the input is exhausted (bounded sources only).

        Must return within about ``max_wait`` seconds: the runtime serves checkpoint
        triggers between polls.
        """

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        """Split states covering every record polled so far; any picklable values (they
        are restored exactly: a tuple stays a tuple).

        A stored position is the NEXT record to read, never the last one read: restoring
        from it must not replay the last record.
        """

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None: ...

    async def close(self) -> None: ...


class SplitAwareReader(Protocol):
    """Optional: a reader that can say which splits it reads now.

    ``active_splits()`` returns the names (the ``SourceBatch.split`` values) of the
    splits the reader holds and has not finished. With a ``WatermarkStrategy`` on the
    source, the runtime asks it right after ``open`` and then at every periodic
    watermark emit: each split gets its own watermark from the start (a split that has
    not sent anything yet holds event time back instead of finding its records late),
    a finished split stops counting, and a subtask without splits is idle and holds
    nothing back downstream. A reader without it gets one watermark per split from the
    split's first batch on, and holds event time back until its first batch.
    """

    def active_splits(self) -> list[str]: ...


class SourceReaderBase:
    """Defaults for a reader: ``open``, ``notify_checkpoint_complete`` and ``close`` do
    nothing. Subclasses implement ``poll`` and ``snapshot_splits`` (the runtime refuses a
    reader that leaves either out) and override whichever other step they need."""

    async def open(self) -> None:
        return None

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


class Source(Protocol):
    """A factory of per-subtask readers; part of the inert job graph."""

    def create_reader(self, ctx: SourceContext) -> SourceReader: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkContext:
    """What a writer knows about its place in the job.

    ``restored_state`` is ``None`` on a fresh start, and also when the checkpoint
    restored from holds no state of this sink's uid (a sink added to the job since);
    else this subtask's share of the state lists the sink's subtasks returned from
    ``snapshot`` in the restored checkpoint (redistributed evenly if the parallelism
    changed; possibly an empty list). ``checkpointing`` says whether
    checkpoints run: without them a two-phase-commit writer commits in ``finish``.
    """

    job_name: str
    operator_uid: str
    subtask_index: int
    parallelism: int
    checkpointing: bool
    checkpoint_interval: float | None = None
    restored_state: list[Any] | None = None
    clock: Clock = field(default_factory=SystemClock)
    run_id: str = ""
    """Unique per job run (``env.execute``), the same for all its attempts and operators."""
    services: JobServices = field(default_factory=JobServices)
    """The job run's own objects (see :class:`~streamflow.core.services.JobServices`)."""


class SinkWriter(Protocol):
    async def open(self) -> None:
        """Connect; a two-phase-commit writer recovers here (commit what the restored
        checkpoint prepared, abort every other lingering transaction of this sink)."""

    async def write(self, records: list[Any]) -> None:
        """Write a batch; may block (that is backpressure)."""

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        """Called on barrier n, after every record before it was written. Returns the
        plain state list to store in checkpoint n (a 2PC writer: the prepared handles)."""

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint n is durable: commit what was prepared up to n (idempotent)."""

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None: ...

    async def finish(self) -> None:
        """End of input: everything written must become visible (after the final
        checkpoint when checkpointing runs; directly when it does not)."""

    async def close(self) -> None: ...


class Sink(Protocol):
    """A factory of per-subtask writers; part of the inert job graph."""

    def create_writer(self, ctx: SinkContext) -> SinkWriter: ...


class SinkWriterBase:
    """Defaults for a writer that keeps no state and no transactions: every lifecycle
    method is a no-op and ``snapshot`` stores nothing. Subclasses override ``write`` and
    whichever step they need (a buffered writer flushes in ``snapshot`` and ``finish``)."""

    async def open(self) -> None:
        return None

    async def write(self, records: list[Any]) -> None:
        raise NotImplementedError

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        return []

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        return None

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None
