"""Joins of two keyed streams, as pure logic over keyed state: window join and co-group
(:mod:`streamflow.joins.window_join`), interval join (:mod:`streamflow.joins.interval_join`)."""

from streamflow.joins.interval_join import IntervalJoinConfig, IntervalJoinLogic, ProcessJoinFunction
from streamflow.joins.window_join import (
    LEFT,
    RIGHT,
    FlatJoinFunction,
    WindowCoGroup,
    WindowJoin,
    tag_left,
    tag_right,
    window_join_config,
)

__all__ = [
    "LEFT",
    "RIGHT",
    "FlatJoinFunction",
    "IntervalJoinConfig",
    "IntervalJoinLogic",
    "ProcessJoinFunction",
    "WindowCoGroup",
    "WindowJoin",
    "tag_left",
    "tag_right",
    "window_join_config",
]
