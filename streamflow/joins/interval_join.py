"""Interval join: pairs of a key's elements whose timestamps are close (Flink's
IntervalJoinOperator), as pure logic.

For keyed streams A (left) and B (right) and bounds ``lower <= upper``, every pair with
``lower <= b.timestamp - a.timestamp <= upper`` (both bounds inclusive) goes to the join
function, with timestamp ``max(a.timestamp, b.timestamp)``. Each side is buffered per key
by timestamp in the :class:`~streamflow.windowing.store.WindowStateStore` (names
``left`` / ``right``, namespace ``None``: ``{timestamp in microseconds: [(value,
timestamp), ...]}``); a new element is matched against the other side's buffer, then
buffered. A cleanup timer per buffered timestamp removes it once the watermark shows
that no element of the other side can still match it: at ``t + upper`` for the left
side, ``t - lower`` for the right (or ``t`` when that bound does not reach forward).

An element behind the watermark is late: it joins nothing, and goes to its side's
late-data output if one is set, else it is dropped and counted. Interval arithmetic
runs in whole microseconds, so bounds hold exactly.

Calls: ``process_left`` / ``process_right`` per record (the runtime's current key set),
``advance_watermark``, ``on_event_time(key, namespace, time)`` for each due timer.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Final, cast

from streamflow.api.side_outputs import OutputTag
from streamflow.errors import ConfigError
from streamflow.eventtime.resolution import from_micros, to_micros
from streamflow.eventtime.tracker import InvalidTimestampError
from streamflow.windowing.emission import EmittingLogic, WindowEmission
from streamflow.windowing.logic import ElementFate
from streamflow.windowing.store import ABSENT, WindowStateStore, WindowTimerService

__all__ = ["IntervalJoinConfig", "IntervalJoinLogic", "ProcessJoinFunction"]

LEFT_BUFFER: Final = "left"
RIGHT_BUFFER: Final = "right"


class ProcessJoinFunction:
    """Gets each matching pair with a context: ``ctx.left_timestamp``,
    ``ctx.right_timestamp``, ``ctx.timestamp`` (the result's) and ``ctx.output(tag, v)``."""

    def process_element(self, left: Any, right: Any, ctx: Any, out: Any) -> None:
        raise NotImplementedError


def _bound(value: object, what: str) -> int:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise ConfigError(f"interval join between(lower, upper): {what} must be finite seconds, got {value!r}")
    return to_micros(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntervalJoinConfig:
    """An interval join operator: bounds (seconds, may be negative), the function (a
    :class:`ProcessJoinFunction` or ``fn(left, right) -> result``) and optional late-data
    outputs per side."""

    operator: str = "interval-join"
    lower: float
    upper: float
    function: ProcessJoinFunction | Callable[[Any, Any], Any]
    left_late_tag: OutputTag | None = None
    right_late_tag: OutputTag | None = None

    def __post_init__(self) -> None:
        where = f"interval join {self.operator!r}"
        lower, upper = _bound(self.lower, "lower"), _bound(self.upper, "upper")
        if lower > upper:
            raise ConfigError(
                f"{where}: between({self.lower!r}, {self.upper!r}) needs lower <= upper; "
                "swap them, e.g. between(-5.0, 5.0) for right elements up to 5 s before or after"
            )
        object.__setattr__(self, "lower", from_micros(lower))
        object.__setattr__(self, "upper", from_micros(upper))
        fn = self.function
        if not (callable(getattr(fn, "process_element", None)) or callable(fn)):
            raise ConfigError(f"{where}: process needs a ProcessJoinFunction or fn(left, right), got {fn!r}")
        for tag in (self.left_late_tag, self.right_late_tag):
            if tag is not None and not isinstance(tag, OutputTag):
                raise ConfigError(f"{where}: late-data outputs need an OutputTag, got {tag!r}")


class _JoinContext:
    __slots__ = ("_output", "left_timestamp", "right_timestamp", "timestamp")

    def __init__(self, output: list[WindowEmission]) -> None:
        self._output = output
        self.left_timestamp = 0.0
        self.right_timestamp = 0.0
        self.timestamp = 0.0

    def output(self, tag: OutputTag, value: Any) -> None:
        self._output.append(WindowEmission(value, self.timestamp, tag))

    def collect(self, value: Any) -> None:
        self._output.append(WindowEmission(value, self.timestamp))


class IntervalJoinLogic(EmittingLogic):
    """The interval join of one operator subtask (see the module docstring)."""

    def __init__(self, config: IntervalJoinConfig, store: WindowStateStore, timers: WindowTimerService) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self.timers = timers
        self._lower = to_micros(config.lower)
        self._upper = to_micros(config.upper)
        fn = config.function
        self._process: Callable[[Any, Any, Any, Any], Any] | None = getattr(fn, "process_element", None)
        self._call: Callable[[Any, Any], Any] | None = None if self._process is not None else cast(Any, fn)
        self._ctx = _JoinContext(self.output)

    def process_left(self, key: Any, value: Any, timestamp: float | None) -> ElementFate:
        return self._process_side(key, value, timestamp, True)

    def process_right(self, key: Any, value: Any, timestamp: float | None) -> ElementFate:
        return self._process_side(key, value, timestamp, False)

    def on_event_time(self, key: Any, namespace: Hashable, time: float) -> None:
        """A cleanup timer: drop the buffered elements of one side at one timestamp."""
        side, at = cast("tuple[str, int]", namespace)
        buffer = self.store.get(key, None, side)
        if buffer is ABSENT or at not in buffer:
            return
        del buffer[at]
        if buffer:
            self.store.put(key, None, side, buffer)
        else:
            self.store.remove(key, None, side)

    def _process_side(self, key: Any, value: Any, timestamp: float | None, is_left: bool) -> ElementFate:
        if timestamp is None:
            raise InvalidTimestampError(
                f"interval join {self.config.operator!r} needs event timestamps, but this record has none; "
                "give both inputs a WatermarkStrategy"
            )
        if timestamp < self.watermark:
            tag = self.config.left_late_tag if is_left else self.config.right_late_tag
            if tag is None:
                self.late_records_dropped += 1
                return ElementFate.LATE_DROPPED
            self.output.append(WindowEmission(value, timestamp, tag))
            return ElementFate.LATE_SIDE_OUTPUT
        at = to_micros(timestamp)
        if is_left:
            ours, theirs, low, high = LEFT_BUFFER, RIGHT_BUFFER, self._lower, self._upper
        else:
            ours, theirs, low, high = RIGHT_BUFFER, LEFT_BUFFER, -self._upper, -self._lower
        store = self.store
        other = store.get(key, None, theirs)
        if other is not ABSENT:
            for other_at, entries in other.items():
                if at + low <= other_at <= at + high:
                    for other_value, other_timestamp in entries:
                        if is_left:
                            self._emit(value, other_value, timestamp, other_timestamp)
                        else:
                            self._emit(other_value, value, other_timestamp, timestamp)
        buffer = store.get(key, None, ours)
        if buffer is ABSENT:
            buffer = {}
        buffer.setdefault(at, []).append((value, timestamp))
        store.put(key, None, ours, buffer)
        cleanup = at + high if high > 0 else at
        self.timers.register_event_time_timer(key, (ours, at), from_micros(cleanup))
        return ElementFate.ADDED

    def _emit(self, left: Any, right: Any, left_timestamp: float, right_timestamp: float) -> None:
        ctx = self._ctx
        ctx.left_timestamp = left_timestamp
        ctx.right_timestamp = right_timestamp
        ctx.timestamp = max(left_timestamp, right_timestamp)
        if self._process is not None:
            self._process(left, right, ctx, ctx)
        elif self._call is not None:
            ctx.collect(self._call(left, right))
