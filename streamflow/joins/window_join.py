"""Window join and co-group: two keyed streams, matched per key within each window.

As in Flink, a window join is a co-group: both inputs go into one window operator
(:class:`~streamflow.windowing.logic.WindowOperatorLogic`), each element tagged with its
side (:func:`tag_left` / :func:`tag_right`), keyed by ``where`` on the left and
``equal_to`` on the right. When a window fires, the function below splits its elements
by side and

- :class:`WindowJoin` calls ``join_fn(left, right)`` for every pair (an inner join: a
  window with no element on one side produces nothing), or, for a
  :class:`FlatJoinFunction`, ``join(left, right, out)``;
- :class:`WindowCoGroup` calls ``co_group(lefts, rights, out)`` once per key and window,
  also when one side is empty (outer joins are built this way).

Window contents, lateness and cleanup are the window operator's: the buffered elements
of both sides are keyed window state. :func:`window_join_config` builds the operator's
:class:`~streamflow.windowing.config.WindowConfig`.
"""

from __future__ import annotations

from typing import Any, Callable, Final, Iterable

from streamflow.errors import ConfigError
from streamflow.windowing.assigners import WindowAssigner
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.functions import Collector, ProcessWindowContext, ProcessWindowFunction
from streamflow.windowing.triggers import Trigger

__all__ = [
    "LEFT",
    "RIGHT",
    "FlatJoinFunction",
    "WindowCoGroup",
    "WindowJoin",
    "tag_left",
    "tag_right",
    "window_join_config",
]

LEFT: Final = 0
RIGHT: Final = 1


def tag_left(value: Any) -> tuple[int, Any]:
    """An element of the first (left) input, as the join's window keeps it."""
    return (LEFT, value)


def tag_right(value: Any) -> tuple[int, Any]:
    """An element of the second (right) input."""
    return (RIGHT, value)


def _split(elements: Iterable[tuple[int, Any]]) -> tuple[list[Any], list[Any]]:
    lefts: list[Any] = []
    rights: list[Any] = []
    for side, value in elements:
        (lefts if side == LEFT else rights).append(value)
    return lefts, rights


class FlatJoinFunction:
    """A join function that emits any number of results per pair through ``out``."""

    def join(self, left: Any, right: Any, out: Collector) -> None:
        raise NotImplementedError


class WindowJoin(ProcessWindowFunction):
    """Every (left, right) pair of a key's window, through the user's join function."""

    __slots__ = ("join_fn",)

    def __init__(self, join_fn: Callable[[Any, Any], Any] | FlatJoinFunction) -> None:
        if not isinstance(join_fn, FlatJoinFunction) and not callable(join_fn):
            raise ConfigError(
                f"window join apply() needs fn(left, right) -> result or a FlatJoinFunction, got {join_fn!r}"
            )
        self.join_fn = join_fn

    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Collector) -> None:
        lefts, rights = _split(elements)
        join_fn = self.join_fn
        if isinstance(join_fn, FlatJoinFunction):
            for left in lefts:
                for right in rights:
                    join_fn.join(left, right, out)
            return
        for left in lefts:
            for right in rights:
                out.collect(join_fn(left, right))


class WindowCoGroup(ProcessWindowFunction):
    """All left and all right elements of a key's window, in one call."""

    __slots__ = ("co_group_fn",)

    def __init__(self, co_group_fn: Callable[[list[Any], list[Any], Collector], None]) -> None:
        if not callable(co_group_fn):
            raise ConfigError(f"co_group apply() needs fn(lefts, rights, out), got {co_group_fn!r}")
        self.co_group_fn = co_group_fn

    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Collector) -> None:
        lefts, rights = _split(elements)
        self.co_group_fn(lefts, rights, out)


def window_join_config(
    *,
    operator: str,
    assigner: WindowAssigner,
    function: WindowJoin | WindowCoGroup,
    trigger: Trigger | None = None,
    allowed_lateness: float = 0.0,
) -> WindowConfig:
    """The window operator of a join or co-group (its elements are tagged pairs)."""
    return WindowConfig(
        operator=operator, assigner=assigner, trigger=trigger, allowed_lateness=allowed_lateness, process_fn=function
    )
