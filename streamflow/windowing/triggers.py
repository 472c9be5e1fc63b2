"""Triggers: when a window's function runs (fires) and when its contents are dropped (purged).

A trigger is asked on every element added to a window (``on_element``) and when a timer
it registered is due (``on_event_time``, ``on_processing_time``); it answers a
:class:`TriggerResult`. Through its :class:`TriggerContext` it registers timers and
keeps state per key and window (``get_partitioned_state``). Triggers are shared by all
keys and windows: keep nothing in fields, everything in the context's state.

Lifecycle per window: ``on_element`` / ``on_*_time`` ... -> (session windows:
``on_merge`` of the merge result, then ``clear`` of each window merged into it) ->
``clear`` when the window is over (its cleanup time passed). ``clear`` must delete the
timers and state the trigger made for the window.

Built in, as in Flink: :class:`EventTimeTrigger` (the default of event-time windows),
:class:`ProcessingTimeTrigger`, :class:`CountTrigger`, :class:`PurgingTrigger`,
:class:`ContinuousEventTimeTrigger` and :class:`ContinuousProcessingTimeTrigger` (early
and repeated firings), :class:`NeverTrigger` (the default of global windows).
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, Self

from streamflow.errors import ConfigError
from streamflow.eventtime.durations import positive_seconds
from streamflow.eventtime.resolution import from_micros, to_micros
from streamflow.state.descriptors import ReducingStateDescriptor, StateDescriptor
from streamflow.eventtime.windows import Window

__all__ = [
    "ContinuousEventTimeTrigger",
    "ContinuousProcessingTimeTrigger",
    "CountTrigger",
    "EventTimeTrigger",
    "NeverTrigger",
    "OnMergeContext",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
]


class TriggerResult(enum.Enum):
    """What the window does: CONTINUE (nothing), FIRE (run the function, keep the
    contents), PURGE (drop the contents), FIRE_AND_PURGE (run it, then drop them)."""

    is_fire: bool
    is_purge: bool

    CONTINUE = (False, False)
    FIRE = (True, False)
    PURGE = (False, True)
    FIRE_AND_PURGE = (True, True)

    def __init__(self, fire: bool, purge: bool) -> None:
        # plain attributes: read for every element, where an enum property costs a lookup chain
        self.is_fire = fire
        self.is_purge = purge


class TriggerContext(Protocol):
    """The trigger's view of the current key and window."""

    def current_processing_time(self) -> float: ...

    def current_watermark(self) -> float: ...

    def register_event_time_timer(self, timestamp: float) -> None: ...

    def delete_event_time_timer(self, timestamp: float) -> None: ...

    def register_processing_time_timer(self, timestamp: float) -> None: ...

    def delete_processing_time_timer(self, timestamp: float) -> None: ...

    def get_partitioned_state(self, descriptor: StateDescriptor) -> Any:
        """State of the current key and window (value, list, reducing or aggregating)."""


class OnMergeContext(TriggerContext, Protocol):
    def merge_partitioned_state(self, descriptor: StateDescriptor) -> None:
        """Fold the state ``descriptor`` of the merged windows into the merge result."""


class Trigger:
    """Base of triggers: every method but ``on_element`` defaults to doing nothing."""

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        raise NotImplementedError

    def on_event_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        """Whether the trigger works with merging (session) windows; then it implements
        ``on_merge``."""
        return False

    def on_merge(self, window: Window, ctx: OnMergeContext) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support merging windows")

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EventTimeTrigger(Trigger):
    """Fires once the watermark passes the window's end; an element arriving later, within
    the allowed lateness, fires the window again at once (a late firing)."""

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        end = window.max_timestamp
        if end <= ctx.current_watermark():
            return TriggerResult.FIRE
        ctx.register_event_time_timer(end)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp else TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: OnMergeContext) -> None:
        if window.max_timestamp > ctx.current_watermark():
            ctx.register_event_time_timer(window.max_timestamp)

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp)


class ProcessingTimeTrigger(Trigger):
    """Fires when the processing time passes the window's end."""

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp)
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: OnMergeContext) -> None:
        if window.max_timestamp > ctx.current_processing_time():
            ctx.register_processing_time_timer(window.max_timestamp)

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp)


class NeverTrigger(Trigger):
    """Never fires: the default of global windows, which need a trigger of their own."""

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_merge(self, window: Window, ctx: OnMergeContext) -> None:
        return None


_COUNT: ReducingStateDescriptor[int] = ReducingStateDescriptor("count", operator.add)


@dataclass(frozen=True, slots=True)
class CountTrigger(Trigger):
    """Fires every ``max_count`` elements of a window (the count restarts after each
    firing). ``CountTrigger.of(100)``."""

    max_count: int

    def __post_init__(self) -> None:
        if isinstance(self.max_count, bool) or not isinstance(self.max_count, int) or self.max_count < 1:
            raise ConfigError(
                f"CountTrigger.of(max_count) needs an int >= 1, got {self.max_count!r}; "
                "pass how many elements make the window fire"
            )

    @classmethod
    def of(cls, max_count: int) -> CountTrigger:
        return cls(max_count)

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        count = ctx.get_partitioned_state(_COUNT)
        count.add(1)
        if count.get() >= self.max_count:
            count.clear()
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: OnMergeContext) -> None:
        ctx.merge_partitioned_state(_COUNT)

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.get_partitioned_state(_COUNT).clear()


@dataclass(frozen=True, slots=True)
class PurgingTrigger(Trigger):
    """Turns every FIRE of ``nested`` into FIRE_AND_PURGE: each firing sees only the
    elements since the previous one. ``PurgingTrigger.of(CountTrigger.of(10))``."""

    nested: Trigger

    def __post_init__(self) -> None:
        if not isinstance(self.nested, Trigger):
            raise ConfigError(
                f"PurgingTrigger.of(trigger) needs a Trigger, got {self.nested!r}; e.g. PurgingTrigger.of(CountTrigger.of(10))"
            )

    @classmethod
    def of(cls, nested: Trigger) -> PurgingTrigger:
        return cls(nested)

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return TriggerResult.FIRE_AND_PURGE if result.is_fire else result

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_element(element, timestamp, window, ctx))

    def on_event_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_event_time(time, window, ctx))

    def on_processing_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_processing_time(time, window, ctx))

    def can_merge(self) -> bool:
        return self.nested.can_merge()

    def on_merge(self, window: Window, ctx: OnMergeContext) -> None:
        self.nested.on_merge(window, ctx)

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        self.nested.clear(window, ctx)

    def __repr__(self) -> str:
        return f"PurgingTrigger.of({self.nested!r})"


_FIRE_AT: ReducingStateDescriptor[float] = ReducingStateDescriptor("fire-time", min)


def _interval(value: object, what: str) -> float:
    """``value`` as seconds > 0, a whole number of microseconds."""
    number = positive_seconds(value, what, "pass seconds between firings, e.g. 10.0")
    if to_micros(number) < 1:
        raise ConfigError(f"{what} must be at least a microsecond, got {value!r}")
    return from_micros(to_micros(number))


def _next_fire(aligned_from: float, interval: int, window: Window) -> float:
    """The next firing after the interval boundary at or before ``aligned_from``, never
    after the window's end."""
    now = to_micros(aligned_from)
    return min(from_micros(now - now % interval + interval), window.max_timestamp)


@dataclass(frozen=True, slots=True)
class _ContinuousTrigger(Trigger):
    """What both continuous triggers share: the next firing, a multiple of ``interval``
    never after the window's end, kept as trigger state (the earliest wins when sessions
    merge) with a timer in the trigger's time domain."""

    interval: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", _interval(self.interval, f"{type(self).__name__}.of(interval)"))

    @classmethod
    def of(cls, interval: float | timedelta) -> Self:
        return cls(_interval(interval, f"{cls.__name__}.of(interval)"))

    def _register(self, ctx: TriggerContext, time: float) -> None:
        raise NotImplementedError

    def _delete(self, ctx: TriggerContext, time: float) -> None:
        raise NotImplementedError

    def _start(self, now: float, window: Window, ctx: TriggerContext) -> None:
        """Schedule the first firing, unless one is scheduled."""
        fire_at = ctx.get_partitioned_state(_FIRE_AT)
        if fire_at.get() is None:
            self._schedule(fire_at, now, window, ctx)

    def _fire_if_due(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        fire_at = ctx.get_partitioned_state(_FIRE_AT)
        if fire_at.get() == time:
            fire_at.clear()
            self._schedule(fire_at, time, window, ctx)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def _schedule(self, fire_at: Any, after: float, window: Window, ctx: TriggerContext) -> None:
        next_time = _next_fire(after, to_micros(self.interval), window)
        fire_at.add(next_time)
        self._register(ctx, next_time)

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Window, ctx: OnMergeContext) -> None:
        ctx.merge_partitioned_state(_FIRE_AT)
        next_time = ctx.get_partitioned_state(_FIRE_AT).get()
        if next_time is not None:
            self._register(ctx, next_time)

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        fire_at = ctx.get_partitioned_state(_FIRE_AT)
        next_time = fire_at.get()
        if next_time is not None:
            self._delete(ctx, next_time)
        fire_at.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}.of({self.interval!r})"


class ContinuousEventTimeTrigger(_ContinuousTrigger):
    """Fires every ``interval`` seconds of event time while the window is open (early
    results), and at the window's end. Firings fall on multiples of the interval."""

    __slots__ = ()

    def _register(self, ctx: TriggerContext, time: float) -> None:
        ctx.register_event_time_timer(time)

    def _delete(self, ctx: TriggerContext, time: float) -> None:
        ctx.delete_event_time_timer(time)

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        if window.max_timestamp <= ctx.current_watermark():
            return TriggerResult.FIRE  # a late element: fire at once, as EventTimeTrigger
        ctx.register_event_time_timer(window.max_timestamp)
        if timestamp is not None:
            self._start(timestamp, window, ctx)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        if time == window.max_timestamp:
            return TriggerResult.FIRE
        return self._fire_if_due(time, window, ctx)


class ContinuousProcessingTimeTrigger(_ContinuousTrigger):
    """Fires every ``interval`` seconds of processing time while the window has elements.
    Firings fall on multiples of the interval; the window's own end is left to the
    window's cleanup (pair it with a purging or an end-of-window trigger if needed)."""

    __slots__ = ()

    def _register(self, ctx: TriggerContext, time: float) -> None:
        ctx.register_processing_time_timer(time)

    def _delete(self, ctx: TriggerContext, time: float) -> None:
        ctx.delete_processing_time_timer(time)

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        self._start(ctx.current_processing_time(), window, ctx)
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return self._fire_if_due(time, window, ctx)
