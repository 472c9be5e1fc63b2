"""Processing-time and event-time timers of a keyed operator subtask.

A timer is (timestamp, key); registering the same one twice keeps one. Deletion is
lazy: the heap entry stays and is skipped when popped. Timers of one timestamp come out
in the order they were registered (a counter breaks ties, so keys never have to be
comparable). Timers are snapshotted with the keyed state, as ``(timestamp, key_group,
key)`` tuples, so they move with their keys on rescale; the snapshot is pickled, so keys
keep their types. A window operator's timer key is ``(key, window)``: its timers are
namespaced by window, with the key group of the key.

Snapshots written before exact state types (JSON) are read as
:func:`~streamflow.state.timers.owned_timer_entries` says. This is the
:class:`~streamflow.state.timers.TimerStore` of operators whose keyed backend does not
hold timers itself (the heap backend; RocksDB keeps them in its database).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Iterable, Sequence

from streamflow.state.timers import owned_timer_entries, pop_due


class TimerQueue:
    """One kind of timer (processing or event time)."""

    __slots__ = ("_heap", "_live", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Any]] = []  # (timestamp, order, key_group, key)
        self._live: set[tuple[float, Any]] = set()
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def register(self, timestamp: float, key: Any, key_group: int) -> None:
        entry = (timestamp, key)
        if entry not in self._live:
            self._live.add(entry)
            heapq.heappush(self._heap, (timestamp, next(self._order), key_group, key))

    def delete(self, timestamp: float, key: Any, key_group: int = 0) -> None:
        """Delete the timer (its key group is not needed here)."""
        self._live.discard((timestamp, key))

    def next_time(self) -> float | None:
        heap = self._heap
        while heap and (heap[0][0], heap[0][3]) not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[tuple[float, int, Any]]:
        """Timers with timestamp <= now, in time order; they are removed."""
        return pop_due(self, now)

    def pop_next(self, now: float) -> tuple[float, int, Any] | None:
        """The earliest timer with timestamp <= now (removed), or None. Called in a loop,
        it also hands out timers registered meanwhile at or before ``now``."""
        heap = self._heap
        live = self._live
        while heap and heap[0][0] <= now:
            timestamp, _, key_group, key = heapq.heappop(heap)
            entry = (timestamp, key)
            if entry in live:
                live.discard(entry)
                return timestamp, key_group, key
        return None

    def snapshot(self) -> list[tuple[float, int, Any]]:
        """The live timers, ``(timestamp, key_group, key)`` each, in time order."""
        live, seen = self._live, set()
        entries = []
        # Only live heap entries are sorted (a session window's merges leave many deleted
        # ones behind); (timestamp, order) is unique, so the tuples never compare keys.
        held = [e for e in self._heap if (e[0], e[3]) in live]
        held.sort()
        for timestamp, _, key_group, key in held:
            entry = (timestamp, key)
            if entry in live and entry not in seen:  # deleted and registered again: two heap entries
                seen.add(entry)
                entries.append((timestamp, key_group, key))
        return entries

    def restore(self, entries: Iterable[Sequence[Any]], key_groups: range, max_parallelism: int) -> None:
        """Register the snapshot's timers whose key group is in ``key_groups``."""
        for timestamp, key_group, key in owned_timer_entries(entries, key_groups, max_parallelism):
            self.register(timestamp, key, key_group)
