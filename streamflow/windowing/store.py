"""What the window logic needs from the runtime: state per (key, namespace, name), and timers.

The window logic keeps everything it knows in a :class:`WindowStateStore` and asks a
:class:`WindowTimerService` for timers; the runtime provides both over its keyed state
backend and timer queues, so window contents and timers are keyed state: checkpointed,
kept in savepoints and moved by key group on rescale. The namespace of a value is the
window it belongs to, or ``None`` for what belongs to the key as a whole.

What the logic stores, by name (every value is plain data or the user's own values):

- ``contents``, namespace: the state window - the window's elements, its reduced value
  or its accumulator;
- ``trigger:<n>``, namespace: the window - a trigger's state ``n`` (a count, a fire time);
- ``window:<n>``, namespace: the window - a ProcessWindowFunction's per-window state;
- ``global:<n>``, namespace ``None`` - a ProcessWindowFunction's per-key state;
- ``merging-windows``, namespace ``None`` - the key's session windows,
  ``[[start, end, state_start, state_end], ...]``;
- ``left`` / ``right``, namespace ``None`` - an interval join's buffers,
  ``{timestamp in microseconds: [(value, timestamp), ...]}``.

Contract: the runtime calls the logic with its keyed backend's current key already set
to the ``key`` argument, so a store over keyed state may use the current key.

:class:`InMemoryWindowStore` and :class:`WindowTimers` are plain in-memory
implementations, used by the unit tests and usable by a runtime that snapshots them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Any, Final, Protocol

__all__ = ["ABSENT", "InMemoryWindowStore", "WindowStateStore", "WindowTimerService", "WindowTimers"]


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()
"""What :meth:`WindowStateStore.get` returns when nothing is stored (``None`` may be a value)."""


class WindowStateStore(Protocol):
    """Named values per key and namespace."""

    def get(self, key: Any, namespace: Hashable | None, name: str) -> Any:
        """The value stored, or :data:`ABSENT`."""

    def put(self, key: Any, namespace: Hashable | None, name: str, value: Any) -> None: ...

    def remove(self, key: Any, namespace: Hashable | None, name: str) -> None:
        """Remove one value (no error when absent)."""

    def remove_namespace(self, key: Any, namespace: Hashable | None) -> None:
        """Remove every value of the namespace (a window that is over)."""


class WindowTimerService(Protocol):
    """Timers per key and namespace. Registering a timer twice keeps one; deleting a timer
    that does not exist is a no-op. A due timer comes back to the logic's
    ``on_event_time`` / ``on_processing_time`` with its key, namespace and timestamp."""

    def register_event_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None: ...

    def delete_event_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None: ...

    def register_processing_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None: ...

    def delete_processing_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None: ...


class InMemoryWindowStore:
    """A :class:`WindowStateStore` in one dict: ``(key, namespace) -> {name: value}``."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[tuple[Any, Hashable | None], dict[str, Any]] = {}

    def get(self, key: Any, namespace: Hashable | None, name: str) -> Any:
        values = self.data.get((key, namespace))
        return ABSENT if values is None else values.get(name, ABSENT)

    def put(self, key: Any, namespace: Hashable | None, name: str, value: Any) -> None:
        values = self.data.get((key, namespace))
        if values is None:
            self.data[(key, namespace)] = {name: value}
        else:
            values[name] = value

    def remove(self, key: Any, namespace: Hashable | None, name: str) -> None:
        values = self.data.get((key, namespace))
        if values is not None:
            values.pop(name, None)
            if not values:
                del self.data[(key, namespace)]

    def remove_namespace(self, key: Any, namespace: Hashable | None) -> None:
        self.data.pop((key, namespace), None)


class _TimerHeap:
    """One kind of timer: a heap with lazy deletion, deduplicated by (time, key, namespace)."""

    __slots__ = ("_heap", "_live", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any, Hashable]] = []
        self._live: set[tuple[float, Any, Hashable]] = set()
        self._order = itertools.count()

    def register(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        entry = (timestamp, key, namespace)
        if entry not in self._live:
            self._live.add(entry)
            heapq.heappush(self._heap, (timestamp, next(self._order), key, namespace))

    def delete(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        self._live.discard((timestamp, key, namespace))

    def pop(self, until: float) -> tuple[float, Any, Hashable] | None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            timestamp, _, key, namespace = heapq.heappop(heap)
            entry = (timestamp, key, namespace)
            if entry in self._live:
                self._live.discard(entry)
                return entry
        return None

    def next_time(self) -> float | None:
        heap = self._heap
        while heap and (heap[0][0], heap[0][2], heap[0][3]) not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def __len__(self) -> int:
        return len(self._live)

    def entries(self) -> list[tuple[float, Any, Hashable]]:
        """The live timers, in time (then registration) order."""
        live, seen = self._live, set()
        entries = []
        for time, _, key, namespace in sorted(self._heap):
            entry = (time, key, namespace)
            if entry in live and entry not in seen:  # deleted and registered again: two heap entries
                seen.add(entry)
                entries.append(entry)
        return entries


class WindowTimers:
    """A :class:`WindowTimerService` in memory; ``pop_*`` hand out due timers one at a time,
    in time order, so timers registered while firing (at or before the same time) are
    still handed out in the same pass."""

    __slots__ = ("event_time", "processing_time")

    def __init__(self) -> None:
        self.event_time = _TimerHeap()
        self.processing_time = _TimerHeap()

    def register_event_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        self.event_time.register(key, namespace, timestamp)

    def delete_event_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        self.event_time.delete(key, namespace, timestamp)

    def register_processing_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        self.processing_time.register(key, namespace, timestamp)

    def delete_processing_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        self.processing_time.delete(key, namespace, timestamp)

    def snapshot(self) -> dict[str, list[tuple[float, Any, Hashable]]]:
        """The live timers as plain data: ``{"event": [(time, key, namespace), ...],
        "processing": [...]}``, each in time order."""
        return {"event": self.event_time.entries(), "processing": self.processing_time.entries()}

    @classmethod
    def restore(cls, snapshot: dict[str, list[tuple[float, Any, Hashable]]]) -> WindowTimers:
        timers = cls()
        for time, key, namespace in snapshot["event"]:
            timers.register_event_time_timer(key, namespace, time)
        for time, key, namespace in snapshot["processing"]:
            timers.register_processing_time_timer(key, namespace, time)
        return timers

    def pop_event_time(self, watermark: float) -> tuple[float, Any, Hashable] | None:
        """The earliest event-time timer at or before ``watermark`` (removed), or None."""
        return self.event_time.pop(watermark)

    def pop_processing_time(self, now: float) -> tuple[float, Any, Hashable] | None:
        """The earliest processing-time timer at or before ``now`` (removed), or None."""
        return self.processing_time.pop(now)
