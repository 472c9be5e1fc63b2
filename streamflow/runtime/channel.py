"""Bounded channels between subtasks, and the input gate that reads a task's channels.

A :class:`Channel` connects one upstream subtask to one downstream subtask. It holds at
most ``capacity`` elements (record batches or control elements); ``put`` on a full channel
waits, and that wait is backpressure: it is timed, so the fill of every channel and the
time its writer spent blocked can be read while the job runs.

An :class:`InputGate` is the single place a task waits: on any of its channels that is
not held (barrier alignment holds channels), on its mailbox (checkpoint triggers and
notifications, served before records), or on a timeout (the next timer).

Unaligned checkpoints: a barrier is put without waiting for space (:meth:`Channel.put_now`),
and the reading task may take it out of the middle of the queue
(:meth:`InputGate.take_barrier`): the elements ahead of it are what it overtook. Each
channel counts the barriers it holds so that the reader looks only when there is one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Callable, Final

from streamflow.core.elements import Barrier, Batch


class Channel:
    """A bounded FIFO with one writer and one reader: full at ``capacity`` elements or,
    with ``record_capacity``, at that many records in its batches (an empty channel
    takes any batch)."""

    __slots__ = (
        "name", "capacity", "_items", "_gate", "_space", "puts", "blocked_seconds", "_blocked_since", "barriers",
        "_overflow", "record_capacity", "records",
    )

    def __init__(self, name: str, capacity: int, record_capacity: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"channel capacity must be >= 1, got {capacity!r}")
        if record_capacity is not None and record_capacity < 1:
            raise ValueError(f"channel record capacity must be >= 1, got {record_capacity!r}")
        self.name = name
        self.capacity = capacity
        self.record_capacity = record_capacity
        self.records = 0  # records in the queued batches (counted only with a record capacity)
        self._items: deque[Any] = deque()
        self._gate: InputGate | None = None
        self._space: asyncio.Future[None] | None = None
        self.puts = 0
        self.blocked_seconds = 0.0
        self._blocked_since: float | None = None
        self.barriers = 0  # barriers in the queue now
        self._overflow = False  # the next put goes in without waiting for space (release_writer)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def fill(self) -> float:
        """Fraction of capacity in use (0.0 .. 1.0; the fuller of the two bounds)."""
        fill = len(self._items) / self.capacity
        if self.record_capacity is not None:
            fill = max(fill, self.records / self.record_capacity)
        return fill

    def _full(self) -> bool:
        if len(self._items) >= self.capacity:
            return True
        bound = self.record_capacity
        return bound is not None and self.records >= bound

    @property
    def is_blocked(self) -> bool:
        """True while the writer waits for space right now."""
        return self._blocked_since is not None

    def current_blocked_seconds(self) -> float:
        """Blocked time so far, including a wait still in progress."""
        since = self._blocked_since
        return self.blocked_seconds + (time.perf_counter() - since if since is not None else 0.0)

    async def put(self, item: Any) -> None:
        """Append ``item``; waits while the channel is full (backpressure)."""
        if (len(self._items) >= self.capacity or self.record_capacity is not None) and self._full() and not self._overflow:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            self._blocked_since = started
            try:
                while self._full() and not self._overflow:
                    self._space = loop.create_future()
                    await self._space
            finally:
                self._space = None
                self._blocked_since = None
                self.blocked_seconds += time.perf_counter() - started
        if type(item) is not Batch or self.record_capacity is not None or self._overflow:
            self.put_now(item)  # barriers counted, records counted, a release used up
            return
        self._items.append(item)  # the hot path: a batch into a channel bounded in batches
        self.puts += 1
        gate = self._gate
        if gate is not None:
            gate.wake()

    def put_now(self, item: Any) -> None:
        """Append ``item`` even past capacity: an unaligned barrier, which must not wait
        behind the records it is about to overtake, and restored channel state."""
        self._items.append(item)
        self.puts += 1
        gate = self._gate
        kind = type(item)
        if kind is not Batch:
            if kind is Barrier:
                self.barriers += 1
                if gate is not None and gate.on_urgent is not None:
                    gate.on_urgent(item)
        elif self.record_capacity is not None:
            self.records += len(item.records)
        if self._overflow:
            self._overflow = False
        if gate is not None:
            gate.wake()

    def release_writer(self) -> None:
        """Let the next put (or the one waiting now) go in past capacity: the writer has
        an unaligned barrier to send after it, which must not wait for space."""
        self._overflow = True
        self._signal_space()

    def pop(self) -> Any:
        item = self._items.popleft()
        kind = type(item)
        if kind is not Batch:
            if kind is Barrier:
                self.barriers -= 1
        elif self.record_capacity is not None:
            self.records -= len(item.records)
        space = self._space
        if space is not None and not space.done():
            space.set_result(None)
        return item

    def take_barrier(self) -> tuple[Barrier, list[Any]] | None:
        """Remove the first barrier in the queue; returns it and the elements ahead of it
        (which stay queued, in order), or None when the queue holds no barrier."""
        if not self.barriers:
            return None
        items = self._items
        for index, item in enumerate(items):
            if type(item) is Barrier:
                ahead = [items[i] for i in range(index)]
                del items[index]
                self.barriers -= 1
                self._signal_space()
                return item, ahead
        raise AssertionError(f"channel {self.name} counted a barrier it does not hold")  # internal invariant

    def first_barrier(self) -> Barrier | None:
        """The first barrier in the queue, if any (without removing it)."""
        if self.barriers:
            for item in self._items:
                if type(item) is Barrier:
                    return item
        return None

    def _signal_space(self) -> None:
        space = self._space
        if space is not None and not space.done():
            space.set_result(None)


class _Timeout:
    __slots__ = ()


TIMEOUT: Final = _Timeout()
MAIL: Final = -1


class InputGate:
    """Reads the input channels of one task, fairly, skipping held and finished ones."""

    __slots__ = (
        "channels", "_held", "_finished", "_mailbox", "_waiter", "_next", "idle_seconds", "_idle_since", "on_urgent",
    )

    def __init__(self, channels: list[Channel]) -> None:
        self.channels = channels
        for channel in channels:
            channel._gate = self
        self._held = [False] * len(channels)
        self._finished = [False] * len(channels)
        self._mailbox: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._next = 0
        self.idle_seconds = 0.0
        self._idle_since: float | None = None
        # called with every barrier put into a channel and every mail posted: the task
        # may have to act before it next reads its gate (unaligned checkpoints)
        self.on_urgent: Callable[[Any], None] | None = None

    def current_idle_seconds(self) -> float:
        """Idle time so far, including a wait for input still in progress."""
        since = self._idle_since
        return self.idle_seconds + (time.perf_counter() - since if since is not None else 0.0)

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def post(self, mail: Any) -> None:
        """Queue a control message for the task; served before any record."""
        self._mailbox.append(mail)
        if self.on_urgent is not None:
            self.on_urgent(mail)
        self.wake()

    def queued_barrier(self) -> tuple[int, Barrier] | None:
        """The first barrier queued in a channel that is neither held nor finished, with
        that channel's index: one a task may take out early (unaligned checkpoints)."""
        for index, channel in enumerate(self.channels):
            if channel.barriers and not self._held[index] and not self._finished[index]:
                barrier = channel.first_barrier()
                if barrier is not None:
                    return index, barrier
        return None

    def hold(self, index: int) -> None:
        self._held[index] = True

    def release_all(self) -> None:
        self._held = [False] * len(self.channels)
        self.wake()

    def finish(self, index: int) -> None:
        self._finished[index] = True

    @property
    def all_finished(self) -> bool:
        return all(self._finished)

    def _poll(self) -> tuple[int, Any] | None:
        count = len(self.channels)
        start = self._next
        for offset in range(count):
            index = (start + offset) % count
            if self._held[index] or self._finished[index]:
                continue
            channel = self.channels[index]
            if channel._items:
                self._next = (index + 1) % count
                return index, channel.pop()
        return None

    async def next(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next (channel index, element), ``(MAIL, message)`` or ``(MAIL, TIMEOUT)``."""
        while True:
            if self._mailbox:
                return MAIL, self._mailbox.popleft()
            found = self._poll()
            if found is not None:
                return found
            if timeout is not None and timeout <= 0:
                return MAIL, TIMEOUT
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            started = time.perf_counter()
            self._idle_since = started
            try:
                if timeout is None:
                    await self._waiter
                else:
                    try:
                        async with asyncio.timeout(timeout):  # wait_for may swallow a cancel on 3.11
                            await self._waiter
                    except TimeoutError:
                        return MAIL, TIMEOUT
            finally:
                self._waiter = None
                self._idle_since = None
                self.idle_seconds += time.perf_counter() - started
