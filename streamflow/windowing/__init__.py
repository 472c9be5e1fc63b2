"""Windows with Flink's semantics, as pure logic the runtime feeds.

- windows: :class:`TimeWindow`, :class:`GlobalWindow`;
- assigners: tumbling, sliding and session windows in event and processing time,
  :class:`GlobalWindows`, and :func:`count_window` (global windows with a count trigger);
- triggers (:class:`Trigger`, :class:`TriggerResult` and the built-ins) and evictors;
- functions: reduce, :class:`AggregateFunction`, :class:`ProcessWindowFunction`;
- built-in aggregations of one field: :class:`Sum`, :class:`Min`, :class:`Max`,
  :class:`MinBy`, :class:`MaxBy`, :class:`Mean`, and :class:`Count`;
- :class:`WindowConfig`: one window operator, validated at build time;
- :class:`WindowOperatorLogic`: the operator itself, over a state store and timers;
- :class:`MergingWindowSet`: session merging bookkeeping.
"""

from streamflow.windowing.assigners import (
    EventTimeSessionWindows,
    GlobalWindows,
    MergingWindowAssigner,
    ProcessingTimeSessionWindows,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
)
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.count_windows import CountWindow, count_window
from streamflow.windowing.emission import WindowEmission
from streamflow.windowing.evictors import CountEvictor, Evictor, TimeEvictor, TimestampedValue
from streamflow.windowing.field_aggregates import Count, FieldValueError, Max, MaxBy, Mean, Min, MinBy, Sum
from streamflow.windowing.functions import AggregateFunction, ProcessWindowContext, ProcessWindowFunction
from streamflow.windowing.logic import ElementFate, WindowOperatorLogic
from streamflow.windowing.merging import MergingWindowSet
from streamflow.windowing.store import ABSENT, InMemoryWindowStore, WindowStateStore, WindowTimers, WindowTimerService
from streamflow.windowing.triggers import (
    ContinuousEventTimeTrigger,
    ContinuousProcessingTimeTrigger,
    CountTrigger,
    EventTimeTrigger,
    NeverTrigger,
    ProcessingTimeTrigger,
    PurgingTrigger,
    Trigger,
    TriggerContext,
    TriggerResult,
)
from streamflow.eventtime.windows import GLOBAL_WINDOW, GlobalWindow, TimeWindow, Window

__all__ = [
    "ABSENT",
    "GLOBAL_WINDOW",
    "AggregateFunction",
    "ContinuousEventTimeTrigger",
    "ContinuousProcessingTimeTrigger",
    "Count",
    "CountEvictor",
    "CountTrigger",
    "CountWindow",
    "ElementFate",
    "EventTimeSessionWindows",
    "EventTimeTrigger",
    "Evictor",
    "FieldValueError",
    "GlobalWindow",
    "GlobalWindows",
    "InMemoryWindowStore",
    "Max",
    "MaxBy",
    "Mean",
    "MergingWindowAssigner",
    "MergingWindowSet",
    "Min",
    "MinBy",
    "NeverTrigger",
    "ProcessWindowContext",
    "ProcessWindowFunction",
    "ProcessingTimeSessionWindows",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "Sum",
    "TimeEvictor",
    "TimeWindow",
    "TimestampedValue",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "Window",
    "WindowAssigner",
    "WindowConfig",
    "WindowEmission",
    "WindowOperatorLogic",
    "WindowStateStore",
    "WindowTimerService",
    "WindowTimers",
    "count_window",
]
