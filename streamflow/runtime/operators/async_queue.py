"""The queue of an async operator: which calls may start, which results may go out.

Pure and synchronous (no event loop): the operator adds records and watermarks, starts
the calls :meth:`AsyncQueue.add` and :meth:`AsyncQueue.complete` hand back, marks calls
complete, and emits what :meth:`AsyncQueue.pop_ready` returns, in that order. Flink's
stream element queues, in three orderings (:class:`~streamflow.api.async_io.AsyncOrdering`):

- ORDERED: one FIFO of records and watermarks; the head goes out once its call is done.
- UNORDERED: *segments*, each the records between two watermarks. The results of the
  first segment go out as their calls complete; its closing watermark goes out when the
  segment is empty, and only then does the next segment's first result. So no result
  crosses a watermark, in either direction.
- PER_KEY: UNORDERED, and a record whose key has a call running waits for it; its call
  starts when the previous one of its key completed, so one key's results complete, and
  go out, in input order.

A :class:`~streamflow.eventtime.WatermarkStatus` is held like a watermark: an IDLE passed
ahead of held results would let the watermark downstream move past their timestamps.

Capacity: the operator adds a record only while fewer than ``capacity`` are held (added
and not yet popped), and never more than ``capacity`` calls run at once; entries beyond
it (restored inputs of several old subtasks after a rescale) wait to start.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from streamflow.api.async_io import AsyncOrdering
from streamflow.core.elements import SourceRef, Watermark
from streamflow.eventtime.status import WatermarkStatus

__all__ = ["AsyncEntry", "AsyncQueue"]


class AsyncEntry:
    """One record handed to the async function, from its arrival to its emission."""

    __slots__ = (
        "seq", "record", "position", "origin", "key", "timestamp", "results", "error", "attempts", "done", "segment"
    )

    def __init__(
        self,
        seq: int,
        record: Any,
        position: Any,
        origin: SourceRef | None,
        key: Any = None,
        timestamp: float | None = None,
    ) -> None:
        self.seq = seq  # arrival order in this subtask
        self.record = record
        self.position = position  # source position within origin (None: none known)
        self.origin = origin
        self.key = key  # after key_by: the record's key (per-key order, rescale by key group)
        self.timestamp = timestamp  # the record's event time, which its results keep (None: none)
        self.results: list[Any] = []  # the call's outputs, once done without error
        self.error: Exception | None = None  # why the call failed, once done
        self.attempts = 0
        self.done = False
        self.segment: _Segment | None = None  # UNORDERED / PER_KEY: the segment it belongs to

    def describe_position(self) -> str | None:
        return None if self.origin is None else self.origin.at(self.position)

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"AsyncEntry(#{self.seq} {self.record!r} {state})"


class _Segment:
    """The records between two watermarks (UNORDERED / PER_KEY)."""

    __slots__ = ("pending", "done", "watermark")

    def __init__(self) -> None:
        self.pending: set[AsyncEntry] = set()  # calls not complete
        self.done: deque[AsyncEntry] = deque()  # complete, in completion order, not yet popped
        self.watermark: EventTime | None = None  # the watermark (or status) that closes the segment


EventTime = Watermark | WatermarkStatus
Element = AsyncEntry | EventTime


class AsyncQueue:
    """See the module docstring.

    Args:
        capacity: records held at most (the operator checks :attr:`full`), and calls
            running at most.
        ordering: the emission order.
    """

    def __init__(self, capacity: int, ordering: AsyncOrdering) -> None:
        self.capacity = capacity
        self.ordering = ordering
        self.running = 0  # calls started and not complete
        self._held = 0  # entries added and not popped
        self._ordered: deque[Element] = deque()  # ORDERED
        self._segments: deque[_Segment] = deque()  # UNORDERED, PER_KEY
        self._startable: deque[AsyncEntry] = deque()  # may start, once a call slot is free
        self._waiting: dict[Any, deque[AsyncEntry]] = {}  # PER_KEY: behind a running call of their key
        self._busy_keys: set[Any] = set()  # PER_KEY: keys with a call running or startable

    def __len__(self) -> int:
        """Records held: added and not yet popped."""
        return self._held

    @property
    def full(self) -> bool:
        return self._held >= self.capacity

    @property
    def empty(self) -> bool:
        """Nothing held: no record and no watermark."""
        return not self._ordered and not self._segments

    def add(self, entry: AsyncEntry) -> list[AsyncEntry]:
        """Hold ``entry``; return the entries whose calls start now."""
        self._held += 1
        if self.ordering is AsyncOrdering.ORDERED:
            self._ordered.append(entry)
        else:
            segments = self._segments
            if not segments or segments[-1].watermark is not None:
                segments.append(_Segment())
            segment = segments[-1]
            segment.pending.add(entry)
            entry.segment = segment
            if self.ordering is AsyncOrdering.PER_KEY:
                key = entry.key
                if key in self._busy_keys:
                    self._waiting.setdefault(key, deque()).append(entry)
                    return []
                self._busy_keys.add(key)
        self._startable.append(entry)
        return self._start_some()

    def add_watermark(self, watermark: EventTime) -> bool:
        """Hold ``watermark`` (or a status) behind the records before it; False when
        nothing is held (the caller forwards it at once)."""
        if self.ordering is AsyncOrdering.ORDERED:
            if not self._ordered:
                return False
            self._ordered.append(watermark)
            return True
        segments = self._segments
        if not segments:
            return False
        if segments[-1].watermark is not None:  # two watermarks in a row: an empty segment between
            segments.append(_Segment())
        segments[-1].watermark = watermark
        return True

    def complete(self, entry: AsyncEntry) -> list[AsyncEntry]:
        """The call of ``entry`` ended (results or error set); return the entries whose
        calls start now."""
        entry.done = True
        self.running -= 1
        segment = entry.segment
        if segment is not None:
            segment.pending.discard(entry)
            segment.done.append(entry)
        if self.ordering is AsyncOrdering.PER_KEY:
            key = entry.key
            behind = self._waiting.get(key)
            if behind:
                self._startable.append(behind.popleft())  # the key stays busy
                if not behind:
                    del self._waiting[key]
            else:
                self._busy_keys.discard(key)
        return self._start_some()

    def _start_some(self) -> list[AsyncEntry]:
        startable = self._startable
        if not startable:
            return []
        starting = []
        while startable and self.running < self.capacity:
            starting.append(startable.popleft())
            self.running += 1
        return starting

    def pop_ready(self) -> list[Element]:
        """What may go out now, in order: done entries and the watermarks they release."""
        if self.ordering is AsyncOrdering.ORDERED:
            return self._pop_ordered()
        return self._pop_segments()

    def _pop_ordered(self) -> list[Element]:
        ready: list[Element] = []
        queue = self._ordered
        while queue:
            head = queue[0]
            if type(head) is AsyncEntry:
                if not head.done:
                    break
                self._held -= 1
            ready.append(queue.popleft())
        return ready

    def _pop_segments(self) -> list[Element]:
        ready: list[Element] = []
        segments = self._segments
        while segments:
            segment = segments[0]
            done = segment.done
            if done:
                self._held -= len(done)
                ready.extend(done)
                done.clear()
            if segment.pending:
                break
            segments.popleft()
            if segment.watermark is None:
                break  # the open (last) segment, now empty
            ready.append(segment.watermark)
        return ready

    def held_entries(self) -> list[AsyncEntry]:
        """Every entry held (call pending, waiting or done but not popped), in arrival order."""
        if self.ordering is AsyncOrdering.ORDERED:
            return [e for e in self._ordered if type(e) is AsyncEntry]
        held = [e for segment in self._segments for e in (*segment.pending, *segment.done)]
        held.sort(key=_arrival)
        return held


def _arrival(entry: AsyncEntry) -> int:
    return entry.seq
