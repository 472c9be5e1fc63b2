"""The windows elements are grouped into: :class:`TimeWindow` and :class:`GlobalWindow`.

A window is an immutable, hashable value: it names the namespace under which its
contents, trigger state and timers are kept. Its ``max_timestamp`` is the last instant
that belongs to it; an event-time window fires when the watermark reaches it.

A :class:`TimeWindow` covers ``[start, end)``: ``max_timestamp`` is one microsecond
before ``end``. Its boundaries are computed in whole microseconds (see
:mod:`streamflow.eventtime.resolution`), so windows built from the same instants are
equal, hash alike, and hold every element at or after ``start`` and before ``end``.

They are plain values of event time, defined here below the state layer: the RocksDB
backend encodes a time window in its keys as two doubles. :mod:`streamflow.windowing`
exports them with the rest of the window API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol

from streamflow.eventtime.resolution import from_micros, to_micros

__all__ = ["GLOBAL_WINDOW", "GlobalWindow", "TimeWindow", "Window"]


class Window(Protocol):
    """What every window has: the last instant that belongs to it."""

    @property
    def max_timestamp(self) -> float: ...

    def __hash__(self) -> int: ...


@dataclass(frozen=True, slots=True, eq=False)
class TimeWindow:
    """The interval ``[start, end)`` in float seconds; see the module docstring.

    Windows are dict keys of the window state on every element, so equality and the
    (cached) hash are written out rather than generated.
    """

    start: float
    end: float
    max_timestamp: float = field(init=False, repr=False)
    _hash: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if type(self.start) is not float or type(self.end) is not float:
            object.__setattr__(self, "start", float(self.start))
            object.__setattr__(self, "end", float(self.end))
        object.__setattr__(self, "max_timestamp", from_micros(to_micros(self.end) - 1))
        object.__setattr__(self, "_hash", hash((self.start, self.end)))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not TimeWindow:
            return NotImplemented
        return self.start == other.start and self.end == other.end

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[TimeWindow], tuple[float, float]]:
        # Pickled as its constructor call: a checkpoint pickles every open window, and the
        # state functions a slots dataclass gets call dataclasses.fields() each time
        # (~20 us a window). Windows pickled the old way still load (__setstate__ stays).
        return (TimeWindow, (self.start, self.end))

    @classmethod
    def of_micros(cls, start: int, end: int) -> TimeWindow:
        """The window ``[start, end)`` given in whole microseconds: what ``TimeWindow(start
        / 10**6, end / 10**6)`` gives, without its checks and conversions (the fast paths
        build one per new window or grown session)."""
        window = object.__new__(cls)
        setter = object.__setattr__
        start_seconds, end_seconds = from_micros(start), from_micros(end)
        setter(window, "start", start_seconds)
        setter(window, "end", end_seconds)
        setter(window, "max_timestamp", from_micros(end - 1))
        setter(window, "_hash", hash((start_seconds, end_seconds)))
        return window

    def intersects(self, other: TimeWindow) -> bool:
        """Whether the two windows overlap or touch (sessions that touch merge)."""
        return self.start <= other.end and self.end >= other.start

    def cover(self, other: TimeWindow) -> TimeWindow:
        """The smallest window holding both."""
        return TimeWindow(min(self.start, other.start), max(self.end, other.end))

    def snapshot(self) -> list[float]:
        """Plain data for a checkpoint: ``[start, end]``."""
        return [self.start, self.end]

    @classmethod
    def restore(cls, data: Any) -> TimeWindow:
        start, end = data
        return cls(start, end)


@dataclass(frozen=True, slots=True)
class GlobalWindow:
    """The one window of :class:`~streamflow.windowing.assigners.GlobalWindows`: every
    element of a key, forever. It never ends, so it is never cleaned up by time; a trigger
    (a count, say) decides when it fires and a purge empties it."""

    max_timestamp: ClassVar[float] = float("inf")

    def __repr__(self) -> str:
        return "GlobalWindow()"


GLOBAL_WINDOW: Final = GlobalWindow()
