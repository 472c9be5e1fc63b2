"""The windows the fast path opened, by end: fired by a scan as the watermark passes
their ends, instead of one event-time timer per window and key.

A tumbling window per key is mostly a handful of records, so a timer per (key, window)
(a heap push when the window opens, a heap pop and a trip through the trigger, the
window function context and the store when it fires) costs as much as the records
themselves. Here a window opened by :class:`~.window_fast.FastWindowPath` is noted
once, ``start -> (window, {key: key group})``, with its start on a heap; when the
watermark passes a window's end every key of it fires in one loop (in the order the
keys opened it, as their timers would have): the result straight from the contents
table, the contents removed unless the allowed lateness keeps them. A window function
with a ProcessWindowFunction goes through the logic's own firing, key by key.

The noted windows are the end timers the general path would have registered, and are
saved as such: :meth:`DueWindows.as_timers` adds them to the snapshot's event timers,
so a checkpoint or savepoint restores into either path, on any backend, exactly. Cleanup
timers (allowed lateness) stay ordinary timers. A (key, window) is noted here or has a
timer in the queue, never both (see :meth:`DueWindows.forget`).
"""

from __future__ import annotations

import heapq
from itertools import repeat
from typing import Any, Callable, Final

from streamflow.windowing.emission import WindowEmission
from streamflow.windowing.field_aggregates import Count, Max, Min, Sum
from streamflow.windowing.logic import WindowOperatorLogic
from streamflow.windowing.store import ABSENT
from streamflow.eventtime.windows import TimeWindow

__all__ = ["DueWindows"]

_RESULT_IS_ACCUMULATOR: Final = (Sum, Count, Min, Max)
_new_emission: Final = tuple.__new__

FireTimer = Callable[[tuple[float, int, Any]], None]
"""Fires the timer ``(time, key group, (key, window))`` through the logic, its key set
(the operator's own timer firing): for windows with a ProcessWindowFunction."""

FiringError = Callable[[Any, TimeWindow, float, Exception], Exception]
"""The operator's error for a window function that raised while ``(key, window)`` fired
at ``time``: the same as on its timer path."""


class DueWindows:
    """Windows opened on the fast path and not yet fired (see the module docstring)."""

    __slots__ = ("_open", "_starts", "_table", "_logic", "_result", "_keep", "_through_logic")

    def __init__(self, logic: WindowOperatorLogic, table: dict[int, dict[Any, Any]]) -> None:
        config = logic.config
        self._open: dict[int, tuple[TimeWindow, dict[Any, int]]] = {}  # start (µs) -> window, key -> key group
        self._starts: list[int] = []  # heap of the starts in _open
        self._table = table  # the live table of the contents state: key group -> key -> window -> value
        self._logic = logic
        aggregate = config.aggregate_fn
        # (None: the stored value is the result, as for the built-ins whose get_result returns it)
        self._result: Callable[[Any], Any] | None = (
            None if aggregate is None or type(aggregate) in _RESULT_IS_ACCUMULATOR else aggregate.get_result
        )
        self._keep = config.allowed_lateness > 0  # late firings need the contents until cleanup
        self._through_logic = config.process_fn is not None

    def __len__(self) -> int:
        return sum(len(keys) for _, keys in self._open.values())

    def keys_of(self, start: int, window: TimeWindow) -> dict[Any, int]:
        """The keys noted for the window at ``start`` (µs), noting the window if new."""
        entry = self._open.get(start)
        if entry is None:
            entry = self._open[start] = (window, {})
            heapq.heappush(self._starts, start)
        return entry[1]

    def forget(self, start: int, key: Any) -> None:
        """``key``'s window at ``start`` now has an end timer of the logic's (a record that
        went through the logic registered it): that timer fires it, not the scan."""
        entry = self._open.get(start)
        if entry is not None:
            entry[1].pop(key, None)

    def next_end(self) -> float | None:
        """The earliest end (``max_timestamp``) of a noted window, None if none is."""
        starts = self._starts
        return self._open[starts[0]][0].max_timestamp if starts else None

    def fire_earliest(self, fire_timer: FireTimer, failed: FiringError) -> None:
        """Fire every key of the earliest noted window and forget the window."""
        window, keys = self._open.pop(heapq.heappop(self._starts))
        end = window.max_timestamp
        if self._through_logic:
            for key, key_group in keys.items():
                fire_timer((end, key_group, (key, window)))
            return
        table, result, keep = self._table, self._result, self._keep
        stored_values = []
        fired_keys = []
        for key, key_group in keys.items():
            group = table.get(key_group)
            if group is None or (contents := group.get(key)) is None:
                continue  # no contents: nothing to fire (as on the timer path)
            if keep:
                stored = contents.get(window, ABSENT)
            else:
                stored = contents.pop(window, ABSENT)
                if not contents:
                    del group[key]  # (a map state keeps no empty map)
            if stored is not ABSENT:
                stored_values.append(stored)
                fired_keys.append(key)
        if result is not None:
            for index, stored in enumerate(stored_values):
                try:
                    stored_values[index] = result(stored)
                except Exception as exc:  # the attempt fails, as on the timer path
                    raise failed(fired_keys[index], window, end, exc) from exc
        # (built as tuples in C: the named tuple's own __new__ is a Python call per result)
        emissions = zip(stored_values, repeat(end), repeat(None))
        self._logic.output.extend(map(_new_emission, repeat(WindowEmission), emissions))

    def as_timers(self) -> list[tuple[float, int, Any]]:
        """The noted windows as the end timers ``(time, key group, (key, window))`` the
        general path would hold for them, in time order."""
        timers: list[tuple[float, int, Any]] = []
        for start in sorted(self._open):
            window, keys = self._open[start]
            end = window.max_timestamp
            timers.extend((end, key_group, (key, window)) for key, key_group in keys.items())
        return timers
