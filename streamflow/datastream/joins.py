"""Joins of two streams: the window join and co-group, and the interval join.

- ``a.join(b).where(key_a).equal_to(key_b).window(assigner).apply(fn)``: every pair of a
  key's elements that fall into the same window, through ``fn(left, right)`` (or a
  :class:`~streamflow.joins.FlatJoinFunction`); ``co_group`` instead of ``join`` hands
  ``fn(lefts, rights, out)`` all of a key's window at once, also when one side is empty.
  As in Flink it is a window operator over the union of both streams, each element
  tagged with its side, keyed by ``where`` on the left and ``equal_to`` on the right.
- ``a_keyed.interval_join(b_keyed).between(lower, upper).process(fn)``: every pair of a
  key's elements with ``lower <= b.timestamp - a.timestamp <= upper``, through a
  :class:`~streamflow.joins.ProcessJoinFunction` or ``fn(left, right)``: a keyed
  two-input operator that buffers each side in keyed state until the watermark shows no
  element of the other side can match it.

Both need event timestamps on both inputs. The builders here collect the configuration,
check it when the last call comes (a ConfigError naming the operator and what to
change), and let the left stream add the operator (this module does not import it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Generic, Self, TypeVar

from streamflow.api.side_outputs import OutputTag
from streamflow.errors import ConfigError
from streamflow.joins.interval_join import IntervalJoinConfig, ProcessJoinFunction
from streamflow.joins.window_join import LEFT, FlatJoinFunction, WindowCoGroup, WindowJoin, window_join_config
from streamflow.windowing.assigners import WindowAssigner
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.functions import Collector
from streamflow.windowing.triggers import Trigger

__all__ = ["IntervalJoinBuilder", "JoinKey", "JoinedStreams", "WindowedJoin"]

S = TypeVar("S")

AddWindowJoin = Callable[[Callable[[Any], Any], Callable[[Any], Any], WindowConfig, str], S]
"""Adds a window join: (where, equal_to, its window config, name) -> the result stream."""
AddIntervalJoin = Callable[[IntervalJoinConfig, str], S]


class JoinKey:
    """The key of a tagged join element: ``where`` of a left one, ``equal_to`` of a right one."""

    __slots__ = ("where", "equal_to")

    def __init__(self, where: Callable[[Any], Any], equal_to: Callable[[Any], Any]) -> None:
        self.where = where
        self.equal_to = equal_to

    def __call__(self, tagged: tuple[int, Any]) -> Any:
        side, value = tagged
        return self.where(value) if side == LEFT else self.equal_to(value)


class JoinedStreams(Generic[S]):
    """``a.join(b)`` (or ``a.co_group(b)``): name the keys, then the window."""

    def __init__(self, add: AddWindowJoin[S], *, co_group: bool) -> None:
        self._add = add
        self._co_group = co_group
        self._where: Callable[[Any], Any] | None = None
        self._equal_to: Callable[[Any], Any] | None = None

    @property
    def _what(self) -> str:
        return "co_group" if self._co_group else "join"

    def where(self, key: Callable[[Any], Any]) -> Self:
        """The key of the left (first) stream's elements."""
        if not callable(key):
            raise ConfigError(f"{self._what}(...).where needs a key function of the left elements, got {key!r}")
        self._where = key
        return self

    def equal_to(self, key: Callable[[Any], Any]) -> Self:
        """The key of the right (second) stream's elements, compared with ``where``'s."""
        if not callable(key):
            raise ConfigError(f"{self._what}(...).equal_to needs a key function of the right elements, got {key!r}")
        self._equal_to = key
        return self

    def window(self, assigner: WindowAssigner) -> WindowedJoin[S]:
        if self._where is None or self._equal_to is None:
            raise ConfigError(
                f"{self._what}(...) needs both keys before window(...): "
                f"a.{self._what}(b).where(key_of_a).equal_to(key_of_b).window(...)"
            )
        if not isinstance(assigner, WindowAssigner):
            raise ConfigError(
                f"{self._what}(...).window needs a WindowAssigner (e.g. TumblingEventTimeWindows.of(60.0)), "
                f"got {assigner!r}"
            )
        return WindowedJoin(self._add, self._where, self._equal_to, assigner, co_group=self._co_group)


class WindowedJoin(Generic[S]):
    """A window join with its window: optionally a trigger and lateness, then ``apply``."""

    def __init__(
        self,
        add: AddWindowJoin[S],
        where: Callable[[Any], Any],
        equal_to: Callable[[Any], Any],
        assigner: WindowAssigner,
        *,
        co_group: bool,
    ) -> None:
        self._add = add
        self._where = where
        self._equal_to = equal_to
        self._assigner = assigner
        self._co_group = co_group
        self._trigger: Trigger | None = None
        self._lateness: float | timedelta = 0.0

    def trigger(self, trigger: Trigger) -> Self:
        self._trigger = trigger
        return self

    def allowed_lateness(self, lateness: float | timedelta) -> Self:
        self._lateness = lateness
        return self

    def apply(
        self,
        fn: Callable[[Any, Any], Any] | FlatJoinFunction | Callable[[list[Any], list[Any], Collector], None],
    ) -> S:
        """A join: ``fn(left, right) -> result`` (or a FlatJoinFunction) per pair; a
        co-group: ``fn(lefts, rights, out)`` per key and window."""
        name = "window-co-group" if self._co_group else "window-join"
        function: WindowJoin | WindowCoGroup = WindowCoGroup(fn) if self._co_group else WindowJoin(fn)  # type: ignore[arg-type]
        config = window_join_config(
            operator=name,
            assigner=self._assigner,
            function=function,
            trigger=self._trigger,
            allowed_lateness=self._lateness,  # type: ignore[arg-type]  # checked by WindowConfig
        )
        return self._add(self._where, self._equal_to, config, name)


class IntervalJoinBuilder(Generic[S]):
    """``a.interval_join(b)``: the bounds, optional late-data outputs, then ``process``."""

    def __init__(self, add: AddIntervalJoin[S]) -> None:
        self._add = add
        self._bounds: tuple[float | timedelta, float | timedelta] | None = None
        self._left_late: OutputTag | None = None
        self._right_late: OutputTag | None = None

    def between(self, lower: float | timedelta, upper: float | timedelta) -> Self:
        """Join left ``a`` with right ``b`` when ``lower <= b.timestamp - a.timestamp <= upper``
        (seconds, both inclusive; negative bounds reach back in time)."""
        self._bounds = (lower, upper)
        return self

    def side_output_left_late_data(self, tag: OutputTag) -> Self:
        """Left elements behind the watermark go to side output ``tag`` instead of being dropped."""
        self._left_late = tag
        return self

    def side_output_right_late_data(self, tag: OutputTag) -> Self:
        """Right elements behind the watermark go to side output ``tag`` instead of being dropped."""
        self._right_late = tag
        return self

    def process(self, fn: ProcessJoinFunction | Callable[[Any, Any], Any]) -> S:
        if self._bounds is None:
            raise ConfigError(
                "interval_join(...) needs its bounds before process(...): "
                "a.interval_join(b).between(lower_seconds, upper_seconds).process(fn)"
            )
        lower, upper = self._bounds
        name = "interval-join"
        config = IntervalJoinConfig(
            operator=name,
            lower=lower,  # type: ignore[arg-type]  # checked (and converted) by IntervalJoinConfig
            upper=upper,  # type: ignore[arg-type]
            function=fn,
            left_late_tag=self._left_late,
            right_late_tag=self._right_late,
        )
        return self._add(config, name)
