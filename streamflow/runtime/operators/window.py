"""Runtime of ``key_by(...).window(assigner)...`` (and ``window_all``, count windows, the
window join): :class:`~streamflow.windowing.WindowOperatorLogic` on keyed state.

Lifecycle as for every keyed :class:`~.function.FunctionOperator` (open -> process /
watermarks / timers -> snapshot(n) -> notify -> close); the window's contents and
every other value the logic keeps are keyed state (:mod:`.window_state`), its timers
are the operator's timers namespaced by window, so checkpoints, savepoints and rescaling
carry windows exactly as they carry any keyed state. Each window's state goes when the
window plus its allowed lateness is over (the logic's cleanup timer). The event time the
operator reached is saved with each checkpoint (:class:`.window_state.SavedWatermark`),
so a window that fired before a crash never fires again for a record replayed after it.

Per record: the key is set, then ``process_element``; a record the window functions,
the assigner or the trigger raise on (or one without a timestamp on event-time windows)
goes to the operator's error policy, its partial output dropped. Per watermark: the
logic's event time advances, then every event-time timer due fires, earliest first, one
at a time (timers registered meanwhile at or before the watermark fire in the same
pass); then the watermark goes on, after the results it released. Results carry their
window's ``max_timestamp`` as timestamp; late records routed to the late-data side
output keep their own timestamp and source position. A window function that raises
while a window fires fails the attempt with an error naming the key and the window.

The fast paths (:mod:`.window_fast` for tumbling and sliding windows,
:mod:`.window_session_fast` for sessions) take over ``process`` for the common windows;
the firing is always the logic's.
"""

from __future__ import annotations

import dataclasses
import logging
from operator import itemgetter
from typing import Any, Callable, cast

from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.elements import Batch, Watermark
from streamflow.errors import ConfigError, UserFunctionError
from streamflow.graph.spec import OperatorSpec
from streamflow.runtime.operators.base import Restored, short_repr
from streamflow.runtime.operators.contexts import OperatorContext, maybe_await
from streamflow.runtime.operators.function import FunctionOperator
from streamflow.runtime.operators.window_fast import FastWindowPath
from streamflow.runtime.operators.window_session_fast import FastSessionPath
from streamflow.runtime.operators.window_state import KeyedWindowStore, KeyedWindowTimers, SavedWatermark
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.emission import WindowEmission
from streamflow.windowing.logic import ElementFate, WindowOperatorLogic
from streamflow.eventtime.windows import Window

__all__ = ["WindowOperator", "emit_window_output", "feed_records"]

log = logging.getLogger("streamflow.operator")


class WindowOperator(FunctionOperator):
    """Runs the window logic of one operator subtask (see the module docstring)."""

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        if ctx.keyed_backend is None:
            raise ConfigError(f"window operator {self.uid!r} needs a keyed input: call key_by(...) before window(...)")
        self.config = cast(WindowConfig, self.fn)  # this subtask's own copy
        self.timer_service = KeyedWindowTimers(self)
        self.logic: WindowOperatorLogic | None = None
        self.fast: FastWindowPath | FastSessionPath | None = None
        self.saved_watermark: SavedWatermark | None = None

    async def _open(self, restored: Restored | None) -> None:
        await super()._open(restored)  # keyed state, timers and operator state restored first
        backend = self.ctx.keyed_backend
        assert backend is not None  # checked in __init__
        self.logic = WindowOperatorLogic(self.config, KeyedWindowStore(backend), self.timer_service, self.ctx.clock)
        self.saved_watermark = SavedWatermark(self.operator_state)
        self.logic.advance_watermark(self.saved_watermark.restored())
        self.watermark = self.logic.watermark
        self.fast = FastWindowPath.for_operator(self, self.logic) or FastSessionPath.for_operator(self, self.logic)
        for fn in _user_functions(self.config):
            if hasattr(fn, "open"):
                await maybe_await(fn.open(self.ctx))

    async def snapshot(self, checkpoint_id: int, snapshot_type: SnapshotType) -> OperatorSnapshot | None:
        if self.saved_watermark is not None and self.logic is not None:
            self.saved_watermark.save(self.logic.watermark)
        if isinstance(self.fast, FastSessionPath):
            self.fast.sync()  # (its sessions' timers where the general path keeps them)
        snapshot = await super().snapshot(checkpoint_id, snapshot_type)
        due = self.fast.due if isinstance(self.fast, FastWindowPath) else None
        if snapshot is None or snapshot.timers is None or due is None or not len(due):
            return snapshot
        # The fast path's windows are saved as the end timers the general path keeps.
        event = sorted([*snapshot.timers.event, *due.as_timers()], key=_timer_time)
        return dataclasses.replace(snapshot, timers=dataclasses.replace(snapshot.timers, event=event))

    async def close(self) -> None:
        for fn in _user_functions(self.config):
            if hasattr(fn, "close"):
                await maybe_await(fn.close())
        await super().close()

    # -- records ----------------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        logic = self.logic
        assert logic is not None  # opened
        self.metrics.records_in += len(batch.records)
        late_positions = self.fast.process(batch) if self.fast is not None else self._process_general(batch, logic)
        self.metrics.records_late_dropped = logic.late_records_dropped
        if self.errors.pending:
            await self.errors.flush(self.dead_letter)
        await self._emit(logic.take_output(), batch, late_positions)

    def _process_general(self, batch: Batch, logic: WindowOperatorLogic) -> dict[int, Any]:
        keys, key_groups = self._keys_of(batch)
        return feed_records(self, batch, keys, key_groups, logic.process_element, logic.output)

    async def _emit(self, emissions: list[WindowEmission], batch: Batch | None, late_positions: dict[int, Any]) -> None:
        self.metrics.records_out += await emit_window_output(
            self, emissions, batch.origin if batch is not None else None, late_positions
        )

    # -- time -------------------------------------------------------------------------

    async def on_watermark(self, watermark: Watermark) -> None:
        logic = self.logic
        assert logic is not None  # opened
        logic.advance_watermark(watermark.timestamp)
        time = self.watermark = logic.watermark  # (after a restore, not below the saved one)
        if isinstance(self.fast, FastSessionPath):
            self.fast.sync(time)
        pop_next = self.event_timers.pop_next
        windows = self.fast.due if isinstance(self.fast, FastWindowPath) else None
        while windows is not None and (end := windows.next_end()) is not None and end <= time:
            # in time order with the timers: those up to this end, then its windows
            while (timer := pop_next(end)) is not None:
                self._fire_window(timer, logic.on_event_time)
            windows.fire_earliest(self._fire_end_timer, self._firing_failed)
        while (timer := pop_next(time)) is not None:
            self._fire_window(timer, logic.on_event_time)
        await self._emit(logic.take_output(), None, {})

    async def on_processing_time(self, now: float) -> None:
        logic = self.logic
        assert logic is not None  # opened
        pop_next = self.processing_timers.pop_next
        while (due := pop_next(now)) is not None:
            self._fire_window(due, logic.on_processing_time)
        await self._emit(logic.take_output(), None, {})

    def _fire_end_timer(self, due: tuple[float, int, Any]) -> None:
        logic = self.logic
        assert logic is not None  # opened
        self._fire_window(due, logic.on_event_time)

    def _fire_window(self, due: tuple[float, int, Any], on_timer: Any) -> None:
        time, key_group, (key, window) = due
        self.set_key(key, key_group)
        try:
            on_timer(key, window, time)
        except Exception as exc:
            raise self._firing_failed(key, window, time, exc) from exc

    def _firing_failed(self, key: Any, window: Window, time: float, exc: Exception) -> UserFunctionError:
        """The error of a window function, trigger or evictor that raised as a window fired."""
        return UserFunctionError(
            f"window operator {self.uid!r} (subtask {self.ctx.subtask_index}) failed firing window "
            f"{window!r} of key {short_repr(key)} at {time!r}: {type(exc).__name__}: {exc}. "
            "A window function, trigger or evictor raised on a timer, where no record's error policy "
            "applies; the job attempt fails and the restart strategy decides. Fix the function.",
            operator=self.uid,
            subtask=self.ctx.subtask_index,
            record=f"window {window!r} of key {short_repr(key)}",
        )


def feed_records(
    op: FunctionOperator,
    batch: Batch,
    keys: list[Any],
    key_groups: list[int],
    process: Callable[[Any, Any, float | None], ElementFate],
    output: list[WindowEmission],
) -> dict[int, Any]:
    """Each record of ``batch`` through ``process(key, record, timestamp)`` with its key
    set (a window or interval-join logic appending to ``output``); a record ``process``
    raises on leaves no output and goes to the operator's error policy. Returns output
    index -> source position of the late records sent to the side output."""
    timestamps, positions = batch.timestamps, batch.positions
    late_positions: dict[int, Any] = {}
    for index, record in enumerate(batch.records):
        key = keys[index]
        op.set_key(key, key_groups[index])
        before = len(output)
        try:
            fate = process(key, record, None if timestamps is None else timestamps[index])
        except Exception as exc:
            del output[before:]
            op._on_error(exc, batch, index)
            continue
        if fate is ElementFate.LATE_SIDE_OUTPUT and positions is not None:
            late_positions[len(output) - 1] = positions[index]
    return late_positions


async def emit_window_output(
    op: FunctionOperator, emissions: list[WindowEmission], origin: Any, late_positions: dict[int, Any]
) -> int:
    """Forward what window or join logic emitted: main-output values as one batch with
    their timestamps, tagged values to their side outputs (a late record with its source
    position, when known). Returns how many main-output records went out."""
    if not emissions:
        return 0
    if set(map(_TAG, emissions)) == {None}:  # (the common case, in C: only main-output results)
        await op.emit(Batch(list(map(_VALUE, emissions)), timestamps=list(map(_TIMESTAMP, emissions))))
        return len(emissions)
    records: list[Any] = []
    timestamps: list[float | None] = []
    side: dict[str, tuple[list[Any], list[float | None], list[Any]]] = {}
    for index, (value, timestamp, tag) in enumerate(emissions):
        if tag is None:
            records.append(value)
            timestamps.append(timestamp)
        else:
            part = side.get(tag.name)
            if part is None:
                part = side[tag.name] = ([], [], [])
            part[0].append(value)
            part[1].append(timestamp)
            part[2].append(late_positions.get(index))
    if records:
        await op.emit(Batch(records, timestamps=timestamps))
    for name, (values, stamps, positions) in side.items():
        known = origin is not None and any(p is not None for p in positions)
        await op.emit_side_output(
            name, Batch(values, positions if known else None, origin if known else None, timestamps=stamps)
        )
    return len(records)


_VALUE, _TIMESTAMP, _TAG = itemgetter(0), itemgetter(1), itemgetter(2)  # of a WindowEmission


def _timer_time(timer: tuple[float, int, Any]) -> float:
    return timer[0]


def _user_functions(config: WindowConfig) -> list[Any]:
    return [fn for fn in (config.reduce_fn, config.aggregate_fn, config.process_fn) if fn is not None]
