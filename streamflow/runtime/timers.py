"""Processing-time and event-time timers of a keyed operator subtask.

A timer is (timestamp, key); registering the same one twice keeps one. Deletion is
lazy: the heap entry stays and is skipped when popped. Timers are snapshotted with the
keyed state, by key group, so they move with their keys on rescale.
"""

from __future__ import annotations

import heapq
from typing import Any, Iterable


def tuplify(value: Any) -> Any:
    """JSON turned tuples into lists; keys are hashable, so lists here were tuples."""
    if isinstance(value, list):
        return tuple(tuplify(v) for v in value)
    return value


class TimerQueue:
    """One kind of timer (processing or event time)."""

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._live: set[tuple[float, Any]] = set()

    def register(self, timestamp: float, key: Any, key_group: int) -> None:
        entry = (timestamp, key)
        if entry not in self._live:
            self._live.add(entry)
            heapq.heappush(self._heap, (timestamp, key_group, key))

    def delete(self, timestamp: float, key: Any) -> None:
        self._live.discard((timestamp, key))

    def next_time(self) -> float | None:
        heap = self._heap
        while heap and (heap[0][0], heap[0][2]) not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[tuple[float, int, Any]]:
        """Timers with timestamp <= now, in time order; they are removed."""
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            timestamp, key_group, key = heapq.heappop(heap)
            if (timestamp, key) in self._live:
                self._live.discard((timestamp, key))
                due.append((timestamp, key_group, key))
        return due

    def snapshot(self) -> list[list[Any]]:
        return [[t, kg, k] for t, kg, k in self._heap if (t, k) in self._live]

    def restore(self, entries: Iterable[list[Any]], key_groups: range) -> None:
        for timestamp, key_group, key in entries:
            if key_group in key_groups:
                self.register(timestamp, tuplify(key), key_group)
