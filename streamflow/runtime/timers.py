"""Processing-time and event-time timers of a keyed operator subtask.

A timer is (timestamp, key); registering the same one twice keeps one. Deletion is
lazy: the heap entry stays and is skipped when popped. Timers are snapshotted with the
keyed state, as ``(timestamp, key_group, key)`` tuples, so they move with their keys on
rescale; the snapshot is pickled, so keys keep their types.

Snapshots written before exact state types (JSON) hold ``[timestamp, key_group, key]``
lists whose tuple keys came back as lists; those are turned back into tuples, and their
key group is recomputed as the keyed state's is (see ``streamflow.state.heap_snapshot``).
"""

from __future__ import annotations

import heapq
from typing import Any, Iterable, Sequence

from streamflow.partitioning.keygroups import key_group_for
from streamflow.state.shapes import tuplify


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

    def snapshot(self) -> list[tuple[float, int, Any]]:
        return [entry for entry in self._heap if (entry[0], entry[2]) in self._live]

    def restore(self, entries: Iterable[Sequence[Any]], key_groups: range, max_parallelism: int) -> None:
        """Register the snapshot's timers whose key group is in ``key_groups``."""
        for entry in entries:
            timestamp, key_group, key = entry
            if type(entry) is list:  # written before exact state types
                key = tuplify(key)
                if type(key) is not str and type(key) is not int:
                    key_group = key_group_for(key, max_parallelism)
            if key_group in key_groups:
                self.register(timestamp, key, key_group)
