"""Bounded channels between subtasks, and the input gate that reads a task's channels.

A :class:`Channel` connects one upstream subtask to one downstream subtask. It holds at
most ``capacity`` elements (record batches or control elements); ``put`` on a full channel
waits, and that wait is backpressure: it is timed, so the fill of every channel and the
time its writer spent blocked can be read while the job runs.

An :class:`InputGate` is the single place a task waits: on any of its channels that is
not held (barrier alignment holds channels), on its mailbox (checkpoint triggers and
notifications, served before records), or on a timeout (the next timer).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Final


class Channel:
    """A bounded FIFO with one writer and one reader."""

    __slots__ = ("name", "capacity", "_items", "_gate", "_space", "puts", "blocked_seconds", "_blocked_since")

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"channel capacity must be >= 1, got {capacity!r}")
        self.name = name
        self.capacity = capacity
        self._items: deque[Any] = deque()
        self._gate: InputGate | None = None
        self._space: asyncio.Future[None] | None = None
        self.puts = 0
        self.blocked_seconds = 0.0
        self._blocked_since: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def fill(self) -> float:
        """Fraction of capacity in use (0.0 .. 1.0)."""
        return len(self._items) / self.capacity

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
        if len(self._items) >= self.capacity:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            self._blocked_since = started
            try:
                while len(self._items) >= self.capacity:
                    self._space = loop.create_future()
                    await self._space
            finally:
                self._space = None
                self._blocked_since = None
                self.blocked_seconds += time.perf_counter() - started
        self._items.append(item)
        self.puts += 1
        gate = self._gate
        if gate is not None:
            gate.wake()

    def pop(self) -> Any:
        item = self._items.popleft()
        space = self._space
        if space is not None and not space.done():
            space.set_result(None)
        return item


class _Timeout:
    __slots__ = ()


TIMEOUT: Final = _Timeout()
MAIL: Final = -1


class InputGate:
    """Reads the input channels of one task, fairly, skipping held and finished ones."""

    __slots__ = ("channels", "_held", "_finished", "_mailbox", "_waiter", "_next", "idle_seconds", "_idle_since")

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
        self.wake()

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
