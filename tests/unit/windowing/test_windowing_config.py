"""WindowConfig refuses, at build time and naming the operator, what cannot work."""

from __future__ import annotations

import operator
from typing import Any

import pytest

from streamflow.api.side_outputs import OutputTag
from streamflow.errors import ConfigError
from streamflow.windowing import (
    AggregateFunction,
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeSessionWindows,
    EventTimeTrigger,
    GlobalWindows,
    NeverTrigger,
    ProcessingTimeSessionWindows,
    ProcessWindowFunction,
    PurgingTrigger,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    Window,
    WindowConfig,
)

SESSIONS = EventTimeSessionWindows.with_gap(30.0)
MINUTE = TumblingEventTimeWindows.of(60.0)


class NoMerge(Trigger):
    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE


class SumWithoutMerge(AggregateFunction[int, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: int, accumulator: int) -> int:
        return accumulator + value

    def get_result(self, accumulator: int) -> int:
        return accumulator


class DuckAverage:
    """Not a subclass: any object with the methods serves."""

    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: int, acc: list[int]) -> list[int]:
        return [acc[0] + value, acc[1] + 1]

    def get_result(self, acc: list[int]) -> float:
        return acc[0] / acc[1]

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return [a[0] + b[0], a[1] + b[1]]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"assigner": SESSIONS, "trigger": NoMerge(), "reduce_fn": operator.add},
         r"window operator 'totals': EventTimeSessionWindows\(gap=30.0, gap_fn=None\) merges windows, but trigger NoMerge\(\) cannot merge"),
        ({"assigner": SESSIONS, "trigger": PurgingTrigger.of(NoMerge()), "reduce_fn": operator.add}, "cannot merge"),
        ({"assigner": SESSIONS, "aggregate_fn": SumWithoutMerge()}, r"needs merge\(a, b\) to combine the accumulators of merged sessions"),
        ({"assigner": MINUTE, "reduce_fn": operator.add, "allowed_lateness": -1}, r"window operator 'totals': allowed_lateness must be finite seconds >= 0, got -1"),
        ({"assigner": MINUTE, "reduce_fn": operator.add, "allowed_lateness": float("nan")}, "got nan"),
        ({"assigner": TumblingProcessingTimeWindows.of(60), "reduce_fn": operator.add, "allowed_lateness": 5},
         r"allowed_lateness\(5.0\) has no effect on processing-time windows"),
        ({"assigner": ProcessingTimeSessionWindows.with_gap(5), "reduce_fn": operator.add, "late_data_tag": OutputTag("late")},
         r"side_output_late_data\(OutputTag\('late'\)\) never receives anything on processing-time windows"),
        ({"assigner": MINUTE, "reduce_fn": operator.add, "late_data_tag": "late"}, "side_output_late_data needs an OutputTag"),
        ({"assigner": MINUTE}, r"the window needs a function: reduce\(fn\), aggregate\(fn\) or process\(fn\)"),
        ({"assigner": MINUTE, "reduce_fn": operator.add, "aggregate_fn": DuckAverage()}, "give reduce or aggregate, not both"),
        ({"assigner": MINUTE, "reduce_fn": 3}, r"reduce needs fn\(a, b\) -> c, got 3"),
        ({"assigner": MINUTE, "aggregate_fn": object()}, "lacks create_accumulator, add, get_result"),
        ({"assigner": MINUTE, "process_fn": operator.add}, "process needs a ProcessWindowFunction"),
        ({"assigner": "minute", "reduce_fn": operator.add}, "window\\(\\) needs a WindowAssigner"),
        ({"assigner": MINUTE, "trigger": "count", "reduce_fn": operator.add}, "trigger 'count' lacks on_element"),
        ({"assigner": MINUTE, "evictor": 3, "reduce_fn": operator.add}, "evictor 3 lacks evict_before/evict_after"),
    ],
)
def test_what_cannot_work_is_refused_naming_the_operator_and_the_fix(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        WindowConfig(operator="totals", **options)


def test_what_flink_allows_is_built() -> None:
    assert isinstance(WindowConfig(assigner=MINUTE, reduce_fn=operator.add).trigger, EventTimeTrigger)
    assert isinstance(WindowConfig(assigner=GlobalWindows.create(), reduce_fn=operator.add).trigger, NeverTrigger)
    # an event-time trigger on global windows never fires before the end of input, but is allowed
    WindowConfig(assigner=GlobalWindows.create(), trigger=EventTimeTrigger(), reduce_fn=operator.add)
    for trigger in (CountTrigger.of(3), ContinuousEventTimeTrigger.of(10), PurgingTrigger.of(EventTimeTrigger())):
        WindowConfig(assigner=SESSIONS, trigger=trigger, process_fn=ProcessWindowFunction())
    WindowConfig(assigner=SESSIONS, aggregate_fn=DuckAverage(), allowed_lateness=60, late_data_tag=OutputTag("late"))


def test_cleanup_time_is_the_end_plus_the_lateness_in_event_time_only() -> None:
    window = TimeWindow(0, 60)
    assert WindowConfig(assigner=MINUTE, reduce_fn=operator.add, allowed_lateness=30).cleanup_time(window) == 59.999999 + 30
    assert WindowConfig(assigner=TumblingProcessingTimeWindows.of(60), reduce_fn=operator.add).cleanup_time(window) == 59.999999


def test_output_tags_are_equal_by_name_only() -> None:
    assert OutputTag("late", dict) == OutputTag("late")
    assert hash(OutputTag("late", dict)) == hash(OutputTag("late"))
    assert OutputTag("late") != OutputTag("early")
    with pytest.raises(ConfigError, match=r"OutputTag needs a non-empty str name, got ''"):
        OutputTag("")
