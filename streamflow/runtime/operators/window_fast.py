"""The window operator's fast path: tumbling and sliding event-time windows that reduce or
aggregate, on the in-memory state backend.

These are most windows in practice, and for them the general path spends most of its
time on what does not change the result: a trigger call per element (the event-time
trigger only registers the window's timer), a cleanup timer registered again for every
element (it is the same timer as the trigger's when there is no allowed lateness), a
window object built per element, the key set per element, and a timer per window and key
that fires through the trigger and the store. Here one loop over the batch finds each
element's window (for tumbling windows by comparing its timestamp with the current
window's bounds; a new window's start is computed in integer microseconds), reuses the
window object of that start, and folds the element straight into the contents table of
the keyed state (``table[key_group][key][window]``, the table the general path's store
reads). A built-in ``sum`` or ``count`` folds a tumbling batch from its values read in
C, without a Python call per element. A window
new for its key is noted in :class:`~.window_due.DueWindows`, which the operator fires
by a watermark scan over window ends instead of an end timer (a tumbling window takes
the shortest loop: one window per element); only a cleanup timer for allowed lateness
is registered.

Everything else is exactly the general path's: the same state and, in snapshots, the
same timers (so a checkpoint of one restores into the other), the same results, the same
late-data handling. An element the loop does not take on itself goes through the logic,
with its key set: one without a timestamp (an error for the error policy), or one
arriving for a window whose end the watermark has passed but whose lateness has not (a
late firing). A reduce or aggregate that raises leaves every window of the element
unchanged and sends the record to the error policy.

Chosen when the operator opens (:meth:`FastWindowPath.for_operator`): an event-time
tumbling or sliding assigner, the plain :class:`EventTimeTrigger`, no evictor, a reduce or
aggregate function (a ProcessWindowFunction after it is fine: it fires through the
logic), and a backend that hands out the live contents table (the heap backend).
"""

from __future__ import annotations

import math
from itertools import count
from typing import Any, Callable, Final, Protocol

from streamflow.core.elements import Batch
from streamflow.eventtime.resolution import MICROS_PER_SECOND
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.operators.window_due import DueWindows
from streamflow.runtime.operators.window_state import CONTENTS_STATE
from streamflow.state.descriptors import MapStateDescriptor
from streamflow.state.timers import TimerStore
from streamflow.windowing.assigners import SlidingEventTimeWindows, TumblingEventTimeWindows
from streamflow.windowing.emission import WindowEmission
from streamflow.windowing.field_aggregates import Count, Sum
from streamflow.windowing.logic import ElementFate, WindowOperatorLogic
from streamflow.windowing.store import ABSENT
from streamflow.windowing.triggers import EventTimeTrigger
from streamflow.eventtime.windows import TimeWindow

__all__ = ["FastWindowPath", "WindowOperator", "each_through_logic", "process_through_logic"]

_ADDING: Final = (Sum, Count)  # built-ins whose accumulator is the running sum of their batch values

_WINDOW_CACHE_LIMIT: Final = 4096  # window objects kept per subtask before the cache is dropped
_NO_WINDOW: Final = TimeWindow.of_micros(0, 1)  # (a placeholder: never used while the bounds are infinite)


class WindowOperator(Protocol):
    """What the fast path uses of its window operator (a keyed FunctionOperator)."""

    ctx: OperatorContext
    event_timers: TimerStore
    current_key: Any

    def _keys_of(self, batch: Batch) -> tuple[list[Any], list[int]]: ...

    def set_key(self, key: Any, key_group: int) -> None: ...

    def _on_error(self, exc: Exception, batch: Batch, index: int) -> None: ...


class FastWindowPath:
    """The batch loop of one window operator subtask (see the module docstring)."""

    __slots__ = (
        "_op", "_logic", "_table", "_size", "_slide", "_offset", "_lateness", "_reduce", "_aggregate",
        "_register", "_windows", "_late_tag", "due", "_values_of", "_spans",
    )  # fmt: skip

    def __init__(self, op: WindowOperator, logic: WindowOperatorLogic, table: dict[int, dict[Any, Any]]) -> None:
        config = logic.config
        assigner = config.assigner
        self._op = op
        self._logic = logic
        self._table = table
        self._size: int = assigner.size_micros  # type: ignore[attr-defined]
        self._slide: int = getattr(assigner, "slide_micros", self._size)
        self._offset: int = assigner.offset_micros  # type: ignore[attr-defined]
        self._lateness = config.allowed_lateness
        self._reduce = config.reduce_fn
        self._aggregate = config.aggregate_fn
        self._register = op.event_timers.register
        self._windows: dict[int, TimeWindow] = {}
        self._late_tag = config.late_data_tag
        self.due = DueWindows(logic, table)  # the windows opened here, fired by the operator's watermark scan
        # a built-in sum or count (exactly: a subclass may add otherwise): its values
        # taken per batch in C (see process)
        adding = type(config.aggregate_fn) in _ADDING
        self._values_of: Callable[[list[Any]], list[Any] | None] | None = (
            config.aggregate_fn.batch_values if adding else None
        )
        self._spans: dict[int, tuple[int, TimeWindow, float, float]] = {}  # start (µs) -> see _span_of

    @classmethod
    def for_operator(cls, op: WindowOperator, logic: WindowOperatorLogic) -> FastWindowPath | None:
        """The fast path for ``op``, or None when its windows need the general one."""
        config = logic.config
        if type(config.assigner) not in (TumblingEventTimeWindows, SlidingEventTimeWindows):
            return None
        if type(config.trigger) is not EventTimeTrigger or config.evictor is not None:
            return None
        if config.reduce_fn is None and config.aggregate_fn is None:
            return None
        backend = op.ctx.keyed_backend
        live_table = getattr(backend, "live_table", None)
        if live_table is None:
            return None
        table = live_table(MapStateDescriptor[Any, Any](CONTENTS_STATE))
        return None if table is None else cls(op, logic, table)

    def process(self, batch: Batch) -> dict[int, Any]:
        """Every record of ``batch`` into its windows; returns output index -> source
        position of the late records sent to the side output (as the general path)."""
        op = self._op
        logic = self._logic
        keys, key_groups = op._keys_of(batch)
        records = batch.records
        timestamps = batch.timestamps
        if timestamps is None:  # no record has a timestamp: each one is the logic's (an error)
            return each_through_logic(op, logic, batch, keys, key_groups)
        if self._slide != self._size:  # sliding: each record into each of its windows
            return self._each_placed(batch, keys, key_groups)
        # What the loop folds: the records, or for a built-in sum or count the values of
        # their field, read and checked (ints and floats) for the whole batch in C, so
        # that a record costs no Python call: the accumulator is the running number
        # (``0 + value`` for a new window, as create_accumulator and add give it).
        values = None if self._values_of is None else self._values_of(records)
        adding = values is not None
        items = records if values is None else values
        late_positions: dict[int, Any] = {}
        table = self._table
        self._trim_caches()
        watermark = logic.watermark
        reduce, aggregate = self._reduce, self._aggregate
        lateness = self._lateness
        low = high = math.inf  # the current window's timestamps: low <= timestamp < high
        window = _NO_WINDOW
        start = 0
        due_keys: dict[Any, int] = {}
        last_key: Any = ABSENT
        for index, item, timestamp, key, key_group in zip(count(), items, timestamps, keys, key_groups):
            if timestamp is None:
                last_key = self._place(batch, index, keys, key_groups, late_positions, last_key)
                continue
            if not low <= timestamp < high:  # (the records of a batch mostly share their window)
                start, window, low, high = self._span_of(timestamp)
                if window.max_timestamp <= watermark:  # late, or a late firing: the general way
                    low = high = math.inf
                    last_key = self._place(batch, index, keys, key_groups, late_positions, last_key)
                    continue
                due_keys = self.due.keys_of(start, window)
            group = table.get(key_group)
            contents = None if group is None else group.get(key)
            stored = ABSENT if contents is None else contents.get(window, ABSENT)
            try:
                if stored is ABSENT:
                    if adding:
                        value = 0 + item
                    else:
                        value = item if reduce is not None else aggregate.add(item, aggregate.create_accumulator())
                elif adding:
                    value = stored + item
                else:
                    value = reduce(stored, item) if reduce is not None else aggregate.add(item, stored)
            except Exception as exc:  # (a function that raised; for a sum, an int too large for a float)
                op._on_error(exc, batch, index)
                continue
            if contents is None:
                if group is None:
                    group = table[key_group] = {}
                group[key] = {window: value}
            else:
                contents[window] = value
                if stored is not ABSENT:
                    last_key = key
                    continue
            due_keys[key] = key_group  # (a window new for its key: fired by the watermark scan)
            if lateness:
                self._register(window.max_timestamp + lateness, (key, window), key_group)
            last_key = key
        if last_key is not ABSENT:
            op.current_key = last_key
        return late_positions

    def _span_of(self, timestamp: float) -> tuple[int, TimeWindow, float, float]:
        """The tumbling window of ``timestamp``: its start (µs), the window object (one
        per start while cached) and the float bounds of exactly the timestamps whose
        microsecond falls in it (see :func:`_bounds_of`), so that the loops find a
        record's window by two comparisons instead of computing its start."""
        at = round(timestamp * MICROS_PER_SECOND)
        start = at - (at - self._offset) % self._size
        span = self._spans.get(start)
        if span is None:
            window = self._windows.get(start)
            if window is None:
                window = self._windows[start] = TimeWindow.of_micros(start, start + self._size)
            span = self._spans[start] = (start, window, *_bounds_of(start, start + self._size))
        return span

    def _trim_caches(self) -> None:
        if len(self._spans) > _WINDOW_CACHE_LIMIT or len(self._windows) > _WINDOW_CACHE_LIMIT:
            self._spans.clear()
            self._windows.clear()

    def _each_placed(self, batch: Batch, keys: list[Any], key_groups: list[int]) -> dict[int, Any]:
        late_positions: dict[int, Any] = {}
        self._trim_caches()
        last_key: Any = ABSENT
        for index in range(len(batch.records)):
            last_key = self._place(batch, index, keys, key_groups, late_positions, last_key)
        if last_key is not ABSENT:
            self._op.current_key = last_key
        return late_positions

    def _opened(self, start: int, window: TimeWindow, key: Any, key_group: int) -> None:
        """``window`` is new for ``key``: noted to fire by the watermark scan at its end,
        and its cleanup timer registered when the allowed lateness keeps it longer."""
        self.due.keys_of(start, window)[key] = key_group
        if self._lateness:
            self._register(window.max_timestamp + self._lateness, (key, window), key_group)

    def _place(
        self, batch: Batch, index: int, keys: list[Any], key_groups: list[int], late_positions: dict[int, Any],
        last_key: Any,
    ) -> Any:
        """Record ``index`` into each of its windows (sliding windows, and the records of
        windows the watermark has reached); returns the key the backend has set now."""
        op = self._op
        logic = self._logic
        timestamp = batch.timestamps[index] if batch.timestamps is not None else None
        if timestamp is None:
            process_through_logic(op, logic, batch, index, keys, key_groups, late_positions)
            return ABSENT
        record = batch.records[index]
        size, slide = self._size, self._slide
        watermark = logic.watermark
        lateness = self._lateness
        at = round(timestamp * MICROS_PER_SECOND)
        start = at - (at - self._offset) % slide
        targets = []
        assigned = late_firing = False
        while start > at - size:
            assigned = True
            window = self._windows.get(start)
            if window is None:
                window = self._windows[start] = TimeWindow.of_micros(start, start + size)
            end = window.max_timestamp
            if end + lateness > watermark:  # not over yet (else this window is late)
                if end <= watermark:
                    late_firing = True
                targets.append((start, window))
            start -= slide
        if not targets:
            if assigned:  # (no window at all: a gap between sliding windows, as the logic says)
                self._late(record, timestamp, index, batch.positions, late_positions)
            return last_key
        key = keys[index]
        if late_firing:
            if process_through_logic(op, logic, batch, index, keys, key_groups, late_positions):
                for start, window in targets:  # the logic registered the end timers of the others
                    if window.max_timestamp > watermark:
                        self.due.forget(start, key)
            return ABSENT
        key_group = key_groups[index]
        group = self._table.get(key_group)
        contents = None if group is None else group.get(key)
        reduce, aggregate = self._reduce, self._aggregate
        try:
            updates = [
                (start, window, (record if reduce is not None else aggregate.add(record, aggregate.create_accumulator()))
                 if contents is None or (stored := contents.get(window, ABSENT)) is ABSENT
                 else (reduce(stored, record) if reduce is not None else aggregate.add(record, stored)))
                for start, window in targets
            ]
        except Exception as exc:
            op._on_error(exc, batch, index)
            return last_key
        if contents is None:
            if group is None:
                group = self._table[key_group] = {}
            contents = group[key] = {}
        for start, window, value in updates:
            if window not in contents:
                self._opened(start, window, key, key_group)
            contents[window] = value
        return key

    def _late(
        self, record: Any, timestamp: float, index: int, positions: list[Any] | None, late_positions: dict[int, Any]
    ) -> None:
        """Every window of the record is over: the late-data side output, or dropped and counted."""
        logic = self._logic
        tag = self._late_tag
        if tag is None:
            logic.late_records_dropped += 1
            return
        logic.output.append(WindowEmission(record, timestamp, tag))
        if positions is not None:
            late_positions[len(logic.output) - 1] = positions[index]


def _bounds_of(start: int, end: int) -> tuple[float, float]:
    """The float timestamps of the window ``[start, end)`` (µs): ``low <= t < high``
    exactly when ``round(t * MICROS_PER_SECOND)`` is in it (that rounding is monotonic
    in ``t``, so both bounds exist and are found by stepping to the neighbouring floats)."""
    return _first_at(start), _first_at(end)


def _first_at(micros: int) -> float:
    """The least float ``t`` with ``round(t * MICROS_PER_SECOND) >= micros``."""
    t = (micros - 0.5) / MICROS_PER_SECOND  # (within a few floats of it)
    while round(t * MICROS_PER_SECOND) >= micros:
        t = math.nextafter(t, -math.inf)
    while round(t * MICROS_PER_SECOND) < micros:
        t = math.nextafter(t, math.inf)
    return t


def process_through_logic(
    op: WindowOperator,
    logic: WindowOperatorLogic,
    batch: Batch,
    index: int,
    keys: list[Any],
    key_groups: list[int],
    late_positions: dict[int, Any],
) -> bool:
    """Record ``index`` of ``batch`` the general way, with its key set (as the operator's
    general loop does it): for the records a fast path does not take on itself. False
    when the logic raised (the record went to the error policy, no window changed)."""
    key = keys[index]
    op.set_key(key, key_groups[index])
    output = logic.output
    before = len(output)
    timestamps = batch.timestamps
    try:
        fate = logic.process_element(key, batch.records[index], None if timestamps is None else timestamps[index])
    except Exception as exc:
        del output[before:]
        op._on_error(exc, batch, index)
        return False
    if fate is ElementFate.LATE_SIDE_OUTPUT and batch.positions is not None:
        late_positions[len(output) - 1] = batch.positions[index]
    return True


def each_through_logic(
    op: WindowOperator, logic: WindowOperatorLogic, batch: Batch, keys: list[Any], key_groups: list[int]
) -> dict[int, Any]:
    """Every record of ``batch`` the general way; returns the late records' positions."""
    late_positions: dict[int, Any] = {}
    for index in range(len(batch.records)):
        process_through_logic(op, logic, batch, index, keys, key_groups, late_positions)
    return late_positions
