"""The operator around a user function: map, flat_map, filter, process, reduce.

Records go through in batches; the per-record loops below are the hot path, so each
keeps a tight inner loop and leaves error handling to the exception path. Three paths,
chosen once per operator (:class:`RecordPath`): a synchronous map that is not keyed and
a synchronous keyed reduce each have a loop of their own; every other kind, keyed or
not, sync or async, goes through the general loop. The fast paths are shortcuts of the
general one: same output, same positions, same state, same error handling.

Timestamps: every output record carries the event timestamp of the record it came from
(a reduce's output, the record reduced in; a process function's, the input's unless
``out.collect(value, timestamp=...)`` sets one); what ``on_timer`` emits carries the
timer's time for an event-time timer and none for a processing-time timer. A process
function reads the current one with ``ctx.timestamp()`` and sends values to side
outputs with ``ctx.output(tag, value)``; they leave after the batch's main output, with
the position and timestamp of the record that produced them.
"""

from __future__ import annotations

import copy
import enum
import inspect
import logging
from typing import Any, TypeVar

from streamflow.api.functions import is_checkpointed_function
from streamflow.checkpoint.incremental import KeyedCheckpoints, is_native_part
from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType, TimerSnapshot
from streamflow.core.elements import Batch, Watermark
from streamflow.errors import StateError, UserFunctionError
from streamflow.graph.spec import OperatorKind, OperatorSpec
from streamflow.partitioning.keygroups import KeyGroupAssigner
from streamflow.runtime.operators.base import Restored, StreamOperator, short_repr
from streamflow.runtime.operators.contexts import (
    CallContext,
    CheckpointHooks,
    InitContext,
    ListCollector,
    OperatorContext,
    SideOutputBuffer,
    SnapshotContext,
    maybe_await,
)
from streamflow.runtime.record_errors import RecordErrorHandler
from streamflow.runtime.timers import TimerQueue
from streamflow.state.backend import ValueTableBackend
from streamflow.state.descriptors import ValueStateDescriptor
from streamflow.state.operator import OperatorStateStore, restore_operator_state
from streamflow.state.timers import TimerStore, TimerStoreBackend

__all__ = ["FunctionOperator", "RecordPath", "carry_along", "own_copy"]

log = logging.getLogger("streamflow.operator")

_V = TypeVar("_V")


class RecordPath(enum.Enum):
    """Which loop a function operator runs its batches through (see the module docstring)."""

    MAP = "map"  # a synchronous map, not keyed
    REDUCE = "reduce"  # a synchronous reduce, keyed
    GENERAL = "general"  # every kind, keyed or not, sync or async

    @classmethod
    def for_operator(cls, kind: OperatorKind, keyed: bool, is_async: bool) -> RecordPath:
        if kind is OperatorKind.MAP and not keyed and not is_async:
            return cls.MAP
        if kind is OperatorKind.REDUCE and keyed and not is_async:
            return cls.REDUCE
        return cls.GENERAL


class FunctionOperator(StreamOperator):
    """An operator around a user function: map, flat_map, filter, process, reduce.

    Owns the function's lifecycle, its keyed state backend (when the input is keyed),
    its operator state (CheckpointedFunction), its timers and its error policy.
    """

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        fn = own_copy(spec.function, self.uid)
        self.fn = fn
        self.keyed = spec.key_selector is not None
        self.key_selector = spec.key_selector
        self.operator_state = OperatorStateStore()
        backend = ctx.keyed_backend
        # timers in the keyed backend when it holds them (RocksDB: its native checkpoints
        # carry them), else in memory
        self.processing_timers: TimerStore
        self.event_timers: TimerStore
        self.timers_in_backend = isinstance(backend, TimerStoreBackend)
        if isinstance(backend, TimerStoreBackend):
            self.processing_timers, self.event_timers = backend.timer_store("processing"), backend.timer_store("event")
        else:
            self.processing_timers, self.event_timers = TimerQueue(), TimerQueue()
        self.watermark = float("-inf")
        self.current_key: Any = None
        self.current_key_group = 0
        self.current_timestamp: float | None = None  # of the record (or event-time timer) being processed
        self.current_position: Any = None  # of the record being processed (None for a timer)
        self.side_buffer = SideOutputBuffer(self)
        self.errors = RecordErrorHandler(
            spec.error_policy, owner="operator", uid=self.uid, subtask=ctx.subtask_index, metrics=self.metrics,
            logger=log,
        )
        method = {
            OperatorKind.PROCESS: getattr(fn, "process_element", None),
        }.get(spec.kind, fn)
        self.call: Any = method
        self.is_async = inspect.iscoroutinefunction(method) or inspect.iscoroutinefunction(
            getattr(method, "__call__", None)
        )
        self._on_timer = getattr(fn, "on_timer", None)
        self._checkpointed = is_checkpointed_function(fn)
        self._hooks = CheckpointHooks(fn)
        self._key_group_of = KeyGroupAssigner(ctx.max_parallelism)
        # GENERAL serves every operator; the contract tests set it to compare the paths.
        self.path = RecordPath.for_operator(spec.kind, self.keyed, self.is_async)
        self._context = CallContext(self)
        self._collector = ListCollector()
        owner = f"{self.uid}-{ctx.subtask_index}"
        self._value_tables = backend if isinstance(backend, ValueTableBackend) else None
        self.keyed_checkpoints = (  # the keyed state's way through checkpoints (canonical or incremental)
            None if backend is None else KeyedCheckpoints(backend, owner=owner, checkpoint_directory=ctx.checkpoint_directory)
        )

    # -- lifecycle ----------------------------------------------------------------

    async def open(self, restored: Restored | None) -> None:
        try:
            await self._open(restored)
        except StateError as exc:
            # State errors raised below (restore, get_state, initialize_state) may not
            # know which operator they are about; a restore that fails must name it.
            if exc.fields.get("operator") is not None:
                raise
            raise StateError(
                f"operator {self.uid!r} (subtask {self.ctx.subtask_index}): {exc}",
                **{**exc.fields, "operator": self.uid},
            ) from exc

    async def _open(self, restored: Restored | None) -> None:
        backend = self.ctx.keyed_backend
        if restored is not None:
            if backend is not None and self.keyed_checkpoints is not None:
                held = await self.keyed_checkpoints.restore([s.keyed for s in restored if s.keyed])
                owned, groups = backend.key_group_range, backend.max_parallelism
                for timers in [s.timers for s in restored if s.timers is not None] + held:
                    self.processing_timers.restore(timers.processing, owned, groups)
                    self.event_timers.restore(timers.event, owned, groups)
            self.operator_state = restore_operator_state(
                [s.operator or {} for s in restored], self.ctx.subtask_index, self.ctx.parallelism
            )
        if hasattr(self.fn, "open"):
            await maybe_await(self.fn.open(self.ctx))
        if self._checkpointed:
            await maybe_await(self.fn.initialize_state(InitContext(self.operator_state, backend)))

    async def snapshot(self, checkpoint_id: int, snapshot_type: SnapshotType) -> OperatorSnapshot | None:
        if self._checkpointed:
            await maybe_await(self.fn.snapshot_state(SnapshotContext(checkpoint_id)))
        operator = self.operator_state.snapshot()
        operator_part = operator if operator.get("states") else None
        if self.keyed_checkpoints is None:
            return None if operator_part is None else OperatorSnapshot(operator=operator_part)
        keyed, pending = await self.keyed_checkpoints.snapshot(checkpoint_id, snapshot_type)
        timers = None
        if not (self.timers_in_backend and is_native_part(keyed)):  # (else the native files hold them)
            timers = TimerSnapshot(processing=self.processing_timers.snapshot(), event=self.event_timers.snapshot())
        return OperatorSnapshot(operator=operator_part, keyed=keyed, timers=timers, pending=pending)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.keyed_checkpoints is not None:
            self.keyed_checkpoints.completed(checkpoint_id)
        await self._hooks.complete(checkpoint_id)

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        if self.keyed_checkpoints is not None:
            self.keyed_checkpoints.aborted(checkpoint_id)
        await self._hooks.aborted(checkpoint_id)

    def notify_shared_files_lost(self) -> None:
        if self.keyed_checkpoints is not None:
            self.keyed_checkpoints.shared_files_lost()

    async def close(self) -> None:
        if hasattr(self.fn, "close"):
            await maybe_await(self.fn.close())
        if self.ctx.keyed_backend is not None:
            self.ctx.keyed_backend.close()

    # -- errors -------------------------------------------------------------------

    def _on_error(self, exc: Exception, batch: Batch, index: int) -> None:
        """Apply the error policy to the record at ``index``; raise to fail the attempt."""
        record = batch.records[index]
        position = batch.describe_position(index)
        where = f"at {position}" if position else "(no source position: produced by an upstream operator's timer)"
        if not self.errors.takes(exc):
            raise UserFunctionError(
                f"operator {self.uid!r} (subtask {self.ctx.subtask_index}) failed on record {short_repr(record)} "
                f"{where}: {type(exc).__name__}: {exc}. The job attempt fails and the restart strategy decides; "
                "fix the function, or route bad records aside with "
                ".with_error_policy(ErrorPolicy.skip()) or ErrorPolicy.dead_letter(sink) on this operator.",
                operator=self.uid,
                subtask=self.ctx.subtask_index,
                position=position,
                record=short_repr(record),
            ) from exc
        self.errors.set_aside(exc, record, position, f"record {short_repr(record)} {where}")

    # -- keys ---------------------------------------------------------------------

    def _keys_of(self, batch: Batch) -> tuple[list[Any], list[int]]:
        if batch.keys is not None and batch.key_groups is not None:
            return batch.keys, batch.key_groups
        selector = self.key_selector
        assert selector is not None  # only called on keyed operators
        keys = list(map(selector, batch.records))
        return keys, self._key_group_of.of_all(keys)

    def set_key(self, key: Any, key_group: int) -> None:
        self.current_key = key
        self.current_key_group = key_group
        backend = self.ctx.keyed_backend
        assert backend is not None  # only called on keyed operators
        backend.set_current_key(key, key_group)
        backend.on_record()

    # -- records ------------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        records = batch.records
        self.metrics.records_in += len(records)
        path = self.path
        if path is RecordPath.MAP:
            out, failed = self._map_fast(batch)
            positions, timestamps = _without(batch.positions, failed), _without(batch.timestamps, failed)
        elif path is RecordPath.REDUCE:
            out, failed = self._reduce_fast(batch)
            positions, timestamps = _without(batch.positions, failed), _without(batch.timestamps, failed)
        else:
            out, positions, timestamps = await self._general(batch)
        self.metrics.records_out += len(out)
        if self.errors.pending:
            await self.errors.flush(self.dead_letter)
        if out:
            await self.emit(Batch(out, positions, batch.origin, timestamps=timestamps))
        if self.side_buffer.pending:
            await self.side_buffer.flush(batch.origin)

    def _reduce_fast(self, batch: Batch) -> tuple[list[Any], list[int]]:
        """A synchronous running reduce in one tight loop, no per-record dispatch.

        On a backend that hands out its value table (the heap's, no TTL) a record costs
        a few dict operations; otherwise it goes through the state handle, with the
        backend's per-record work (``on_record``). A record whose reduce raises changes
        no state and goes to the error policy; the loop then continues with the next
        record (the iterator keeps its place).
        """
        keys, key_groups = self._keys_of(batch)
        state = self._reduce_state  # registers the state before its table is asked for
        tables = self._value_tables
        table = None if tables is None else tables.value_table(state.name)
        if table is None:
            out, failed = self._reduce_by_handle(batch, keys, key_groups)
        else:
            out, failed = self._reduce_in_table(batch, keys, key_groups, table)
        if keys:
            self.current_key, self.current_key_group = keys[-1], key_groups[-1]
            backend = self.ctx.keyed_backend
            assert backend is not None  # the reduce path is keyed
            backend.set_current_key(keys[-1], key_groups[-1])
        return out, failed

    def _reduce_in_table(
        self, batch: Batch, keys: list[Any], key_groups: list[int], table: dict[int, dict[Any, Any]]
    ) -> tuple[list[Any], list[int]]:
        fn = self.call
        out: list[Any] = []
        append = out.append
        failed: list[int] = []
        rows = enumerate(zip(keys, key_groups, batch.records))
        index = 0
        while True:
            try:
                for index, (key, key_group, record) in rows:
                    group = table.get(key_group)
                    if group is None:
                        table[key_group] = {key: record}
                        append(record)
                        continue
                    previous = group.get(key)
                    value = record if previous is None else fn(previous, record)
                    group[key] = value
                    append(value)
                break
            except Exception as exc:
                self._on_error(exc, batch, index)
                failed.append(index)
        return out, failed

    def _reduce_by_handle(self, batch: Batch, keys: list[Any], key_groups: list[int]) -> tuple[list[Any], list[int]]:
        fn = self.call
        backend = self.ctx.keyed_backend
        assert backend is not None  # the reduce path is keyed
        set_current_key, on_record = backend.set_current_key, backend.on_record
        state = self._reduce_state
        read, write = state.value, state.update
        out: list[Any] = []
        append = out.append
        failed: list[int] = []
        indexes = iter(range(len(batch.records)))
        records = batch.records
        index = 0
        while True:
            try:
                for index in indexes:
                    set_current_key(keys[index], key_groups[index])
                    on_record()
                    previous = read()
                    value = records[index] if previous is None else fn(previous, records[index])
                    write(value)
                    append(value)
                break
            except Exception as exc:
                self._on_error(exc, batch, index)
                failed.append(index)
        return out, failed

    def _map_fast(self, batch: Batch) -> tuple[list[Any], list[int]]:
        fn = self.call
        records = batch.records
        out: list[Any] = []
        append = out.append
        failed: list[int] = []
        it = iter(records)
        while True:
            try:
                for record in it:
                    append(fn(record))
                break
            except Exception as exc:
                index = len(out) + len(failed)
                self._on_error(exc, batch, index)
                failed.append(index)
        return out, failed

    async def _general(self, batch: Batch) -> tuple[list[Any], list[Any] | None, list[float | None] | None]:
        """Every kind, keyed or not, sync or async: one record at a time."""
        kind = self.spec.kind
        call = self.call
        is_async = self.is_async
        records = batch.records
        positions = batch.positions
        timestamps = batch.timestamps
        keys, key_groups = self._keys_of(batch) if self.keyed else (None, None)
        out: list[Any] = []
        append = out.append
        out_positions: list[Any] | None = [] if positions is not None else None
        out_timestamps: list[float | None] | None = [] if timestamps is not None else None
        collector = self._collector
        collector.reset(out)
        context = self._context
        side = self.side_buffer
        reduce_state = self._reduce_state if kind is OperatorKind.REDUCE else None
        for index, record in enumerate(records):
            if keys is not None:
                self.set_key(keys[index], key_groups[index])  # type: ignore[index]
            if kind is OperatorKind.PROCESS:
                self.current_timestamp = None if timestamps is None else timestamps[index]
                self.current_position = None if positions is None else positions[index]
            before = len(out)
            side_before = len(side.pending)
            try:
                if kind is OperatorKind.MAP:
                    value = call(record)
                    append(await value if is_async else value)
                elif kind is OperatorKind.FILTER:
                    keep = call(record)
                    if await keep if is_async else keep:
                        append(record)
                elif kind is OperatorKind.FLAT_MAP:
                    values = call(record)
                    out.extend(await values if is_async else values)
                elif kind is OperatorKind.PROCESS:
                    result = call(record, context, collector)
                    if is_async:
                        await result
                else:  # REDUCE
                    assert reduce_state is not None
                    previous = reduce_state.value()
                    if previous is None:
                        value = record
                    else:
                        value = call(previous, record)
                        if is_async:
                            value = await value
                    reduce_state.update(value)
                    append(value)
            except Exception as exc:
                del out[before:]
                collector.forget_from(before)
                side.forget_from(side_before)
                self._on_error(exc, batch, index)
                continue
            produced = len(out) - before
            if produced == 1:
                if out_positions is not None:
                    out_positions.append(positions[index])  # type: ignore[index]
                if out_timestamps is not None:
                    out_timestamps.append(timestamps[index])  # type: ignore[index]
            elif produced:
                carry_along(out_positions, out_timestamps, positions, timestamps, index, produced)
        if collector.stamped:
            out_timestamps = collector.apply_timestamps(out_timestamps, len(out))
        return out, out_positions, out_timestamps

    @property
    def _reduce_state(self) -> Any:
        state = getattr(self, "_reduce_handle", None)
        if state is None:
            state = self.ctx.get_state(ValueStateDescriptor("reduce"))
            self._reduce_handle = state
        return state

    # -- time ---------------------------------------------------------------------

    def next_timer(self) -> float | None:
        return self.processing_timers.next_time()

    async def on_processing_time(self, now: float) -> None:
        await self._fire(self.processing_timers.pop_due(now), event_time=False)

    async def on_watermark(self, watermark: Watermark) -> None:
        self.watermark = watermark.timestamp
        await self._fire(self.event_timers.pop_due(watermark.timestamp), event_time=True)

    async def _fire(self, due: list[tuple[float, int, Any]], *, event_time: bool) -> None:
        """``on_timer`` for each due timer; what it emits carries the timer's time as its
        timestamp for an event-time timer, none for a processing-time one."""
        if not due or self._on_timer is None:
            return
        out: list[Any] = []
        timestamps: list[float | None] = []
        collector = self._collector
        collector.reset(out)
        self.current_position = None
        for timestamp, key_group, key in due:
            self.set_key(key, key_group)
            self.current_timestamp = timestamp if event_time else None
            before = len(out)
            await maybe_await(self._on_timer(timestamp, self._context, collector))
            timestamps.extend([self.current_timestamp] * (len(out) - before))
        if collector.stamped:
            collector.apply_timestamps(timestamps, len(out))
        if out:
            self.metrics.records_out += len(out)
            await self.emit(Batch(out, timestamps=timestamps if event_time or collector.stamped else None))
        if self.side_buffer.pending:
            await self.side_buffer.flush(None)


def own_copy(fn: Any, uid: str) -> Any:
    """This subtask's own instance of the user function (plain functions are returned as is).

    Like Flink, which gives every subtask a deserialized copy, each subtask of each attempt
    gets its own copy of a function object: fields set in ``open`` (keyed state handles) or
    kept for ``snapshot_state`` are never shared between parallel subtasks, and nothing
    leaks from a failed attempt into the next.
    """
    try:
        return copy.deepcopy(fn)
    except Exception as exc:
        log.warning(
            "operator %r: cannot copy function %r per subtask (%s: %s); its subtasks share one "
            "instance, so keep no per-subtask fields in it (create resources in open())",
            uid, fn, type(exc).__name__, exc,
        )
        return fn


def _without(values: list[_V] | None, failed: list[int]) -> list[_V] | None:
    """``values`` (positions, timestamps) minus the indexes of records that produced no output."""
    if not failed or values is None:
        return values
    gone = set(failed)
    return [p for i, p in enumerate(values) if i not in gone]


def carry_along(
    out_positions: list[Any] | None,
    out_timestamps: list[float | None] | None,
    positions: list[Any] | None,
    timestamps: list[float | None] | None,
    index: int,
    produced: int,
) -> None:
    """Input record ``index``'s position and timestamp, once per output it ``produced``
    (the out lists exist exactly when the input's do)."""
    if out_positions is not None:
        out_positions.extend([positions[index]] * produced)  # type: ignore[index]
    if out_timestamps is not None:
        out_timestamps.extend([timestamps[index]] * produced)  # type: ignore[index]
