"""Window assigners: which windows an element belongs to (Flink's assigners).

- :class:`TumblingEventTimeWindows` / :class:`TumblingProcessingTimeWindows`: fixed,
  non-overlapping windows of ``size``, aligned to the epoch plus ``offset``.
- :class:`SlidingEventTimeWindows` / :class:`SlidingProcessingTimeWindows`: windows of
  ``size`` starting every ``slide``; an element is in ``size / slide`` of them.
- :class:`EventTimeSessionWindows` / :class:`ProcessingTimeSessionWindows`: one window
  per burst of activity, closed by a ``gap`` without elements (fixed, or per element
  with ``with_dynamic_gap``). They merge: see :class:`MergingWindowAssigner`.
- :class:`GlobalWindows`: one window per key, forever; a trigger decides when it fires
  (count windows are global windows with a count trigger).

Event-time assigners place an element by its timestamp; processing-time assigners by
the processing time when it arrives. Boundaries are computed in whole microseconds (see
:mod:`streamflow.eventtime.resolution`). Assigners are frozen values validated when
built: a bad size, slide, gap or offset is a :class:`ConfigError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, ClassVar, Protocol, Sequence

from streamflow.errors import ConfigError
from streamflow.eventtime.durations import positive_seconds
from streamflow.eventtime.resolution import from_micros, to_micros
from streamflow.eventtime.tracker import InvalidTimestampError
from streamflow.windowing.triggers import EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger
from streamflow.eventtime.windows import GLOBAL_WINDOW, GlobalWindow, TimeWindow, Window

__all__ = [
    "EventTimeSessionWindows",
    "GlobalWindows",
    "MergingWindowAssigner",
    "ProcessingTimeSessionWindows",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "WindowAssigner",
    "WindowAssignerContext",
]


class WindowAssignerContext(Protocol):
    def current_processing_time(self) -> float: ...


class WindowAssigner:
    """Base of assigners. ``is_event_time`` says which clock places elements and ends
    windows (allowed lateness and late data exist only in event time)."""

    is_event_time: ClassVar[bool] = True

    def assign_windows(self, element: Any, timestamp: float | None, ctx: WindowAssignerContext) -> Sequence[Window]:
        raise NotImplementedError

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger() if self.is_event_time else ProcessingTimeTrigger()


class MergingWindowAssigner(WindowAssigner):
    """An assigner whose windows merge when they overlap (sessions)."""

    def merge_windows(self, windows: Sequence[TimeWindow]) -> list[tuple[TimeWindow, list[TimeWindow]]]:
        """The groups of ``windows`` that merge: ``(cover, members)`` for every group of
        two or more windows that overlap or touch (Flink's ``TimeWindow.mergeWindows``)."""
        merged: list[tuple[TimeWindow, list[TimeWindow]]] = []
        cover: TimeWindow | None = None
        members: list[TimeWindow] = []
        for window in sorted(windows, key=lambda w: (w.start, w.end)):
            if cover is not None and cover.intersects(window):
                cover = cover.cover(window)
                members.append(window)
                continue
            if cover is not None and len(members) > 1:
                merged.append((cover, members))
            cover, members = window, [window]
        if cover is not None and len(members) > 1:
            merged.append((cover, members))
        return merged


def _time_of(assigner: WindowAssigner, timestamp: float | None, ctx: WindowAssignerContext) -> int:
    """The element's instant in microseconds: its timestamp, or the processing time."""
    if not assigner.is_event_time:
        return to_micros(ctx.current_processing_time())
    if timestamp is None:
        raise InvalidTimestampError(
            f"{assigner!r} places elements by event time, but this record has no timestamp; give the stream "
            "timestamps with a WatermarkStrategy (assign_timestamps_and_watermarks, or on its source), or use "
            "a processing-time assigner"
        )
    return to_micros(timestamp)


def _plain(value: float | timedelta) -> float:
    """A ``timedelta`` as seconds; anything else as it is, for ``__post_init__`` to check."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def _size(value: object, what: str, example: str) -> int:
    micros = to_micros(positive_seconds(value, what, f"pass seconds, e.g. {example}"))
    if micros < 1:
        raise ConfigError(f"{what} must be at least a microsecond, got {value!r}")
    return micros


def _offset(value: object, what: str, limit: int, limit_name: str) -> int:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be finite seconds (a float or a timedelta), got {value!r}; e.g. 0.0")
    micros = to_micros(value)
    if abs(micros) >= limit:
        raise ConfigError(
            f"{what} must lie within the {limit_name} (-{from_micros(limit)!r} < offset < {from_micros(limit)!r}), "
            f"got {value!r}; an offset of a whole {limit_name} or more is the same as its remainder"
        )
    return micros


@dataclass(frozen=True, slots=True)
class _Tumbling(WindowAssigner):
    size: float
    offset: float = 0.0
    _size_us: int = field(init=False, repr=False, compare=False)
    _offset_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = type(self).__name__
        size = _size(self.size, f"{name}.of(size)", "60.0")
        offset = _offset(self.offset, f"{name}.of(size, offset)", size, "size")
        object.__setattr__(self, "size", from_micros(size))
        object.__setattr__(self, "offset", from_micros(offset))
        object.__setattr__(self, "_size_us", size)
        object.__setattr__(self, "_offset_us", offset)

    def assign_windows(self, element: Any, timestamp: float | None, ctx: WindowAssignerContext) -> Sequence[Window]:
        at = _time_of(self, timestamp, ctx)
        size = self._size_us
        start = at - (at - self._offset_us) % size
        return (TimeWindow.of_micros(start, start + size),)

    @property
    def size_micros(self) -> int:
        """The window size in whole microseconds (for runtimes that compute windows in bulk)."""
        return self._size_us

    @property
    def offset_micros(self) -> int:
        return self._offset_us


class TumblingEventTimeWindows(_Tumbling):
    """Windows ``[offset + k*size, offset + (k+1)*size)`` by event time.
    ``TumblingEventTimeWindows.of(60.0)``: one window per minute; ``offset`` shifts the
    alignment (e.g. ``-3600`` for hours of another time zone), ``|offset| < size``."""

    @classmethod
    def of(cls, size: float | timedelta, offset: float | timedelta = 0.0) -> TumblingEventTimeWindows:
        return cls(_plain(size), _plain(offset))


class TumblingProcessingTimeWindows(_Tumbling):
    """:class:`TumblingEventTimeWindows` by the processing time an element arrives."""

    is_event_time: ClassVar[bool] = False

    @classmethod
    def of(cls, size: float | timedelta, offset: float | timedelta = 0.0) -> TumblingProcessingTimeWindows:
        return cls(_plain(size), _plain(offset))


@dataclass(frozen=True, slots=True)
class _Sliding(WindowAssigner):
    size: float
    slide: float
    offset: float = 0.0
    _size_us: int = field(init=False, repr=False, compare=False)
    _slide_us: int = field(init=False, repr=False, compare=False)
    _offset_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = type(self).__name__
        size = _size(self.size, f"{name}.of(size, slide)", "60.0")
        slide = _size(self.slide, f"{name}.of(size, slide)", "10.0")
        offset = _offset(self.offset, f"{name}.of(size, slide, offset)", slide, "slide")
        for attr, value in (("size", size), ("slide", slide), ("offset", offset)):
            object.__setattr__(self, attr, from_micros(value))
            object.__setattr__(self, f"_{attr}_us", value)

    def assign_windows(self, element: Any, timestamp: float | None, ctx: WindowAssignerContext) -> Sequence[Window]:
        at = _time_of(self, timestamp, ctx)
        size, slide = self._size_us, self._slide_us
        start = at - (at - self._offset_us) % slide
        windows = []
        while start > at - size:
            windows.append(TimeWindow.of_micros(start, start + size))
            start -= slide
        return windows

    @property
    def size_micros(self) -> int:
        """The window size in whole microseconds (for runtimes that compute windows in bulk)."""
        return self._size_us

    @property
    def slide_micros(self) -> int:
        return self._slide_us

    @property
    def offset_micros(self) -> int:
        return self._offset_us


class SlidingEventTimeWindows(_Sliding):
    """Windows of ``size`` starting every ``slide`` seconds, by event time.
    ``SlidingEventTimeWindows.of(300.0, 60.0)``: the last 5 minutes, every minute.
    ``|offset| < slide``."""

    @classmethod
    def of(
        cls, size: float | timedelta, slide: float | timedelta, offset: float | timedelta = 0.0
    ) -> SlidingEventTimeWindows:
        return cls(_plain(size), _plain(slide), _plain(offset))


class SlidingProcessingTimeWindows(_Sliding):
    """:class:`SlidingEventTimeWindows` by the processing time an element arrives."""

    is_event_time: ClassVar[bool] = False

    @classmethod
    def of(
        cls, size: float | timedelta, slide: float | timedelta, offset: float | timedelta = 0.0
    ) -> SlidingProcessingTimeWindows:
        return cls(_plain(size), _plain(slide), _plain(offset))


@dataclass(frozen=True, slots=True)
class _Sessions(MergingWindowAssigner):
    gap: float | None = None
    gap_fn: Callable[[Any], float] | None = None
    _gap_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.gap_fn is not None:
            if not callable(self.gap_fn):
                raise ConfigError(
                    f"{name}.with_dynamic_gap(fn) needs fn(element) -> seconds, got {self.gap_fn!r}"
                )
            object.__setattr__(self, "_gap_us", 0)
            return
        gap = _size(self.gap, f"{name}.with_gap(gap)", "1800.0")
        object.__setattr__(self, "gap", from_micros(gap))
        object.__setattr__(self, "_gap_us", gap)

    def _gap_of(self, element: Any) -> int:
        if self.gap_fn is None:
            return self._gap_us
        gap = self.gap_fn(element)
        if isinstance(gap, timedelta):
            gap = gap.total_seconds()
        if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not math.isfinite(gap) or to_micros(gap) < 1:
            raise ValueError(
                f"the dynamic session gap of {type(self).__name__} is {gap!r} for this element: "
                "the gap function must return seconds > 0 (at least a microsecond)"
            )
        return to_micros(gap)

    def assign_windows(self, element: Any, timestamp: float | None, ctx: WindowAssignerContext) -> Sequence[Window]:
        at = _time_of(self, timestamp, ctx)
        return (TimeWindow.of_micros(at, at + self._gap_of(element)),)


class EventTimeSessionWindows(_Sessions):
    """Sessions by event time: an element opens ``[ts, ts + gap)`` and windows that overlap
    merge, so a session ends after ``gap`` seconds without elements.
    ``EventTimeSessionWindows.with_gap(1800.0)``, or
    ``EventTimeSessionWindows.with_dynamic_gap(lambda e: e["timeout"])``."""

    @classmethod
    def with_gap(cls, gap: float | timedelta) -> EventTimeSessionWindows:
        return cls(gap=_plain(gap))

    @classmethod
    def with_dynamic_gap(cls, gap_fn: Callable[[Any], float]) -> EventTimeSessionWindows:
        return cls(gap_fn=gap_fn)


class ProcessingTimeSessionWindows(_Sessions):
    """:class:`EventTimeSessionWindows` by the processing time elements arrive."""

    is_event_time: ClassVar[bool] = False

    @classmethod
    def with_gap(cls, gap: float | timedelta) -> ProcessingTimeSessionWindows:
        return cls(gap=_plain(gap))

    @classmethod
    def with_dynamic_gap(cls, gap_fn: Callable[[Any], float]) -> ProcessingTimeSessionWindows:
        return cls(gap_fn=gap_fn)


@dataclass(frozen=True, slots=True)
class GlobalWindows(WindowAssigner):
    """Every element of a key in one :class:`GlobalWindow`, which never ends. Its default
    trigger never fires: give it one (``CountTrigger.of(n)``, say)."""

    is_event_time: ClassVar[bool] = False

    @classmethod
    def create(cls) -> GlobalWindows:
        return cls()

    def assign_windows(self, element: Any, timestamp: float | None, ctx: WindowAssignerContext) -> Sequence[GlobalWindow]:
        return (GLOBAL_WINDOW,)

    def default_trigger(self) -> Trigger:
        return NeverTrigger()
