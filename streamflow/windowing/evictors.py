"""Evictors: drop elements from a window's contents before or after its function runs.

A window with an evictor keeps every element with its timestamp (no incremental
reduce, as in Flink), and at each firing hands them to ``evict_before``, runs the
function over what is kept, then hands that to ``evict_after``; what ``evict_after``
keeps stays in the window. Elements are :class:`TimestampedValue` pairs in arrival
order; an evictor returns the list of those it keeps.

:class:`CountEvictor` keeps the last ``n`` elements (with a count trigger it makes
sliding count windows); :class:`TimeEvictor` keeps the elements within ``window_size``
seconds of the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

from streamflow.errors import ConfigError
from streamflow.eventtime.durations import positive_seconds
from streamflow.eventtime.windows import Window

__all__ = ["CountEvictor", "Evictor", "EvictorContext", "TimeEvictor", "TimestampedValue"]


class TimestampedValue(NamedTuple):
    value: Any
    timestamp: float | None


class EvictorContext(Protocol):
    def current_processing_time(self) -> float: ...

    def current_watermark(self) -> float: ...


class Evictor:
    """Base of evictors: keeps everything unless a method is overridden."""

    def evict_before(
        self, elements: list[TimestampedValue], window: Window, ctx: EvictorContext
    ) -> list[TimestampedValue]:
        return elements

    def evict_after(
        self, elements: list[TimestampedValue], window: Window, ctx: EvictorContext
    ) -> list[TimestampedValue]:
        return elements


class _OneSided(Evictor):
    """An evictor that evicts either before the function or, with ``do_evict_after``,
    after it, by the same rule (``_evict``)."""

    __slots__ = ()
    do_evict_after: bool

    def _evict(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        raise NotImplementedError

    def evict_before(
        self, elements: list[TimestampedValue], window: Window, ctx: EvictorContext
    ) -> list[TimestampedValue]:
        return elements if self.do_evict_after else self._evict(elements)

    def evict_after(
        self, elements: list[TimestampedValue], window: Window, ctx: EvictorContext
    ) -> list[TimestampedValue]:
        return self._evict(elements) if self.do_evict_after else elements


@dataclass(frozen=True, slots=True)
class CountEvictor(_OneSided):
    """Keeps the last ``max_count`` elements; ``do_evict_after`` evicts after the function
    instead of before it. ``CountEvictor.of(100)``."""

    max_count: int
    do_evict_after: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_count, bool) or not isinstance(self.max_count, int) or self.max_count < 1:
            raise ConfigError(
                f"CountEvictor.of(max_count) needs an int >= 1, got {self.max_count!r}; "
                "pass how many of the newest elements to keep"
            )

    @classmethod
    def of(cls, max_count: int, do_evict_after: bool = False) -> CountEvictor:
        return cls(max_count, do_evict_after)

    def _evict(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        return elements[-self.max_count :] if len(elements) > self.max_count else elements


@dataclass(frozen=True, slots=True)
class TimeEvictor(_OneSided):
    """Keeps the elements whose timestamp is more than ``newest - window_size``, where
    ``newest`` is the highest timestamp in the window; elements without a timestamp are
    kept. ``TimeEvictor.of(60.0)``."""

    window_size: float
    do_evict_after: bool = False

    def __post_init__(self) -> None:
        size = positive_seconds(self.window_size, "TimeEvictor.of(window_size)", "pass seconds to keep, e.g. 60.0")
        object.__setattr__(self, "window_size", size)

    @classmethod
    def of(cls, window_size: float | timedelta, do_evict_after: bool = False) -> TimeEvictor:
        seconds = window_size.total_seconds() if isinstance(window_size, timedelta) else window_size
        return cls(seconds, do_evict_after)

    def _evict(self, elements: list[TimestampedValue]) -> list[TimestampedValue]:
        stamps = [e.timestamp for e in elements if e.timestamp is not None]
        if not stamps:
            return elements
        cutoff = max(stamps) - self.window_size
        return [e for e in elements if e.timestamp is None or e.timestamp > cutoff]
