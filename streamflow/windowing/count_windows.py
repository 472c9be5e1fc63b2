"""Count windows, built as Flink builds them: global windows with a count trigger.

``count_window(size)`` fires every ``size`` elements of a key and starts afresh
(a purging count trigger); ``count_window(size, slide)`` fires every ``slide`` elements
with the last ``size`` of them (a count trigger and a count evictor).
"""

from __future__ import annotations

from typing import NamedTuple

from streamflow.errors import ConfigError
from streamflow.windowing.assigners import GlobalWindows
from streamflow.windowing.evictors import CountEvictor, Evictor
from streamflow.windowing.triggers import CountTrigger, PurgingTrigger, Trigger

__all__ = ["CountWindow", "count_window"]


class CountWindow(NamedTuple):
    """The parts of a count window's :class:`~streamflow.windowing.config.WindowConfig`."""

    assigner: GlobalWindows
    trigger: Trigger
    evictor: Evictor | None


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"count_window: {what} must be an int >= 1, got {value!r}; e.g. count_window(100)")
    return value


def count_window(size: int, slide: int | None = None) -> CountWindow:
    """Tumbling (``slide`` None) or sliding count windows of ``size`` elements per key."""
    _count(size, "size")
    if slide is None:
        return CountWindow(GlobalWindows.create(), PurgingTrigger.of(CountTrigger.of(size)), None)
    _count(slide, "slide")
    return CountWindow(GlobalWindows.create(), CountTrigger.of(slide), CountEvictor.of(size))
