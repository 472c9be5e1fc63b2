"""Time, injected: TTL, timers and timeouts read a :class:`Clock`, so tests can drive it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Processing time in float seconds since the epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock (``time.time``)."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests of TTL and timers."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = now
