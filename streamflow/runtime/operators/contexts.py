"""The contexts the runtime hands to user functions.

``OperatorContext`` is the RuntimeContext given to ``open`` (subtask, parallelism, keyed
state). A process function gets a ``CallContext`` (current key, timestamp, timers, time,
side outputs) and a ``ListCollector`` as ``out`` for each record; both are reused across
records and read their operator's current key at call time, so they cost nothing per
record.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from streamflow.api.functions import checkpoint_hook
from streamflow.api.side_outputs import OutputTag
from streamflow.core.clock import Clock
from streamflow.core.elements import Batch, SourceRef
from streamflow.core.services import JobServices
from streamflow.errors import ConfigError, StateError
from streamflow.eventtime.tracker import InvalidTimestampError
from streamflow.graph.spec import OperatorSpec
from streamflow.partitioning.keygroups import key_group_range
from streamflow.state.backend import KeyedStateBackend
from streamflow.state.operator import OperatorStateStore
from streamflow.state.timers import TimerStore


class OperatorContext:
    """The RuntimeContext a user function gets in ``open``."""

    def __init__(
        self,
        *,
        job_name: str,
        run_id: str = "",
        spec: OperatorSpec,
        subtask_index: int,
        parallelism: int,
        max_parallelism: int,
        clock: Clock,
        keyed_backend: KeyedStateBackend | None,
        checkpointing: bool,
        checkpoint_interval: float | None,
        services: JobServices | None = None,
        checkpoint_directory: Path | None = None,
        key_groups: range | None = None,
    ) -> None:
        self.job_name = job_name
        self.run_id = run_id
        self.operator_uid = spec.effective_uid
        self.operator_name = spec.name
        self.subtask_index = subtask_index
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self.clock = clock
        self.keyed_backend = keyed_backend
        self.checkpointing = checkpointing
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_directory = checkpoint_directory  # the job's (None without checkpointing)
        self.services = services if services is not None else JobServices()  # the job run's own objects
        self.key_groups = (
            key_group_range(max_parallelism, parallelism, subtask_index) if key_groups is None else key_groups
        )
        """The key groups whose records this subtask gets after ``key_by``: Flink's split,
        unless the job runs on workers whose exchanges deal key groups by partition."""

    def get_state(self, descriptor: Any) -> Any:
        if self.keyed_backend is None:
            raise StateError(
                f"operator {self.operator_uid!r} asked for keyed state {descriptor.name!r} but its input "
                "is not keyed; call .key_by(...) before this operator",
                operator=self.operator_uid,
            )
        return self.keyed_backend.get_state(descriptor)

    def current_processing_time(self) -> float:
        return self.clock.now()


async def maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class CheckpointHooks:
    """The checkpoint notifications a user function defines (each is optional), called
    and awaited when async, for the operator that owns the function."""

    __slots__ = ("_complete", "_aborted")

    def __init__(self, fn: Any) -> None:
        self._complete = checkpoint_hook(fn, "notify_checkpoint_complete")
        self._aborted = checkpoint_hook(fn, "notify_checkpoint_aborted")

    async def complete(self, checkpoint_id: int) -> None:
        if self._complete is not None:
            await maybe_await(self._complete(checkpoint_id))

    async def aborted(self, checkpoint_id: int) -> None:
        if self._aborted is not None:
            await maybe_await(self._aborted(checkpoint_id))


class InitContext:
    """What ``initialize_state`` gets: the operator state store, and the keyed one (None
    when the input is not keyed)."""

    def __init__(self, store: OperatorStateStore, keyed_backend: KeyedStateBackend | None) -> None:
        self.is_restored = store.is_restored
        self.operator_state_store = store
        self.keyed_state_store = keyed_backend


class SnapshotContext:
    def __init__(self, checkpoint_id: int) -> None:
        self.checkpoint_id = checkpoint_id


class ListCollector:
    """``out`` of a process function: ``collect(value)`` appends to the operator's output
    list; ``collect(value, timestamp=t)`` also gives the output record its own event
    timestamp (float seconds) instead of the input record's."""

    __slots__ = ("_out", "_append", "stamped")

    def __init__(self) -> None:
        self.reset([])

    def reset(self, out: list[Any]) -> None:
        """Collect into ``out`` from now on."""
        self._out = out
        self._append = out.append
        self.stamped: list[tuple[int, float]] = []  # (index in out, timestamp) set by collect

    def collect(self, value: Any, timestamp: float | None = None) -> None:
        self._append(value)
        if timestamp is not None:
            if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
                del self._out[-1]
                raise InvalidTimestampError(
                    f"out.collect(..., timestamp={timestamp!r}): a timestamp must be finite float seconds since the epoch"
                )
            self.stamped.append((len(self._out) - 1, float(timestamp)))

    def forget_from(self, index: int) -> None:
        """The outputs from ``index`` on were dropped (their record failed)."""
        stamped = self.stamped
        while stamped and stamped[-1][0] >= index:
            stamped.pop()

    def apply_timestamps(self, timestamps: list[float | None] | None, count: int) -> list[float | None]:
        """``timestamps`` of ``count`` outputs (None: none had one) with the ones set by
        ``collect(..., timestamp=)`` in place."""
        if timestamps is None:
            timestamps = [None] * count
        for index, timestamp in self.stamped:
            timestamps[index] = timestamp
        self.stamped = []
        return timestamps


class SideOutputBuffer:
    """What ``ctx.output(tag, value)`` sent during one batch (or one round of timers),
    with the position and timestamp of the record being processed; flushed per tag after
    the main output."""

    __slots__ = ("_op", "pending")

    def __init__(self, op: Any) -> None:
        self._op = op
        self.pending: list[tuple[str, Any, Any, float | None]] = []

    def add(self, tag: OutputTag, value: Any) -> None:
        if not isinstance(tag, OutputTag):
            raise ConfigError(f"ctx.output(tag, value) needs an OutputTag as tag, got {tag!r}; e.g. OutputTag('late')")
        op = self._op
        self.pending.append((tag.name, value, op.current_position, op.current_timestamp))

    def forget_from(self, index: int) -> None:
        """What was sent from entry ``index`` on is dropped (its record failed)."""
        del self.pending[index:]

    async def flush(self, origin: SourceRef | None) -> None:
        pending, self.pending = self.pending, []
        by_tag: dict[str, tuple[list[Any], list[Any], list[float | None]]] = {}
        for name, value, position, timestamp in pending:
            records, positions, timestamps = by_tag.setdefault(name, ([], [], []))
            records.append(value)
            positions.append(position)
            timestamps.append(timestamp)
        emit_side_output: Callable[[str, Batch], Awaitable[None]] = self._op.emit_side_output
        for name, (records, positions, timestamps) in by_tag.items():
            await emit_side_output(
                name,
                Batch(
                    records,
                    positions if origin is not None and any(p is not None for p in positions) else None,
                    origin,
                    timestamps=timestamps if any(t is not None for t in timestamps) else None,
                ),
            )


class TimerScope(Protocol):
    """What a call context and its timer service read of their operator: its context,
    current key, watermark and timer queues (a
    :class:`~streamflow.runtime.operators.function.FunctionOperator`)."""

    uid: str
    ctx: OperatorContext
    watermark: float
    current_key: Any
    current_key_group: int
    current_timestamp: float | None
    processing_timers: TimerStore
    event_timers: TimerStore
    side_buffer: SideOutputBuffer


class CallContext:
    """Context of a (Keyed)ProcessFunction call; reused for every record."""

    __slots__ = ("_op", "timer_service")

    def __init__(self, op: TimerScope) -> None:
        self._op = op
        self.timer_service = OperatorTimerService(op)

    def get_current_key(self) -> Any:
        backend = self._op.ctx.keyed_backend
        if backend is None:
            raise StateError(f"operator {self._op.uid!r} has no current key: its input is not keyed")
        return backend.get_current_key()

    def current_processing_time(self) -> float:
        return self._op.ctx.clock.now()

    def current_watermark(self) -> float:
        return self._op.watermark

    def timestamp(self) -> float | None:
        """The event timestamp of the record being processed (float seconds), or of the
        event-time timer firing; None when it has none."""
        return self._op.current_timestamp

    def output(self, tag: OutputTag, value: Any) -> None:
        """Send ``value`` to the side output ``tag`` (read it with
        ``stream.get_side_output(tag)``), with this record's timestamp."""
        self._op.side_buffer.add(tag, value)


class OperatorTimerService:
    __slots__ = ("_op",)

    def __init__(self, op: TimerScope) -> None:
        self._op = op

    def _key(self) -> tuple[Any, int]:
        op = self._op
        if op.ctx.keyed_backend is None:
            raise StateError(f"timers need a keyed input; call .key_by(...) before operator {op.uid!r}")
        return op.current_key, op.current_key_group

    def current_processing_time(self) -> float:
        return self._op.ctx.clock.now()

    def current_watermark(self) -> float:
        return self._op.watermark

    def register_processing_time_timer(self, timestamp: float) -> None:
        self._op.processing_timers.register(timestamp, *self._key())

    def delete_processing_time_timer(self, timestamp: float) -> None:
        self._op.processing_timers.delete(timestamp, *self._key())

    def register_event_time_timer(self, timestamp: float) -> None:
        self._op.event_timers.register(timestamp, *self._key())

    def delete_event_time_timer(self, timestamp: float) -> None:
        self._op.event_timers.delete(timestamp, *self._key())
