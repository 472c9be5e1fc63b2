"""Triggers, count windows and evictors, through the window logic."""

from __future__ import annotations

import operator
from typing import Any, Iterable

import pytest

from streamflow.errors import ConfigError
from streamflow.state.descriptors import ValueStateDescriptor
from streamflow.testing.windows import WindowHarness
from streamflow.windowing import (
    GLOBAL_WINDOW,
    ContinuousEventTimeTrigger,
    ContinuousProcessingTimeTrigger,
    CountEvictor,
    CountTrigger,
    EventTimeTrigger,
    GlobalWindows,
    ProcessWindowContext,
    ProcessWindowFunction,
    PurgingTrigger,
    TimeEvictor,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    Window,
    WindowConfig,
    WindowEmission,
    count_window,
)

INF = float("inf")
MINUTE = TumblingEventTimeWindows.of(60.0)
END_0 = 59.999999


class Elements(ProcessWindowFunction):
    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Any) -> None:
        out.collect(list(elements))  # type: ignore[attr-defined]


def values(emissions: list[WindowEmission]) -> list[Any]:
    return [e.value for e in emissions]


def test_trigger_results_say_whether_they_fire_and_purge() -> None:
    assert [(r.is_fire, r.is_purge) for r in TriggerResult] == [
        (False, False), (True, False), (False, True), (True, True)
    ]


def test_tumbling_count_windows_fire_every_n_elements_and_purge() -> None:
    parts = count_window(3)
    assert parts == (GlobalWindows.create(), PurgingTrigger.of(CountTrigger.of(3)), None)
    harness = WindowHarness(WindowConfig(assigner=parts.assigner, trigger=parts.trigger, reduce_fn=operator.add))
    for value in range(1, 8):
        harness.add("k", value)
        harness.add("other", 100)
    assert harness.take() == [WindowEmission(6, INF), WindowEmission(300, INF), WindowEmission(15, INF), WindowEmission(300, INF)]
    assert harness.advance_watermark(INF) == []  # the 7th waits for two more


def test_sliding_count_windows_fire_every_slide_with_the_last_size_elements() -> None:
    parts = count_window(3, slide=2)
    assert parts == (GlobalWindows.create(), CountTrigger.of(2), CountEvictor.of(3))
    harness = WindowHarness(WindowConfig(**parts._asdict(), process_fn=Elements()))
    for value in range(1, 7):
        harness.add("k", value)
    assert values(harness.take()) == [[1, 2], [2, 3, 4], [4, 5, 6]]
    assert harness.store.get("k", GLOBAL_WINDOW, "contents") == [(4, None), (5, None), (6, None)]


def test_count_trigger_on_time_windows_fires_early_and_the_window_still_cleans_up() -> None:
    harness = WindowHarness(WindowConfig(assigner=MINUTE, trigger=CountTrigger.of(2), reduce_fn=operator.add))
    for value, ts in ((1, 1.0), (2, 2.0), (4, 3.0)):
        harness.add("k", value, ts)
    assert values(harness.take()) == [3]  # after two elements; contents are kept (no purge)
    assert harness.advance_watermark(100.0) == []  # no firing at the end with a count trigger
    assert harness.is_empty


def test_purging_event_time_trigger_late_firings_see_only_the_late_elements() -> None:
    config = WindowConfig(assigner=MINUTE, trigger=PurgingTrigger.of(EventTimeTrigger()), allowed_lateness=30.0, reduce_fn=operator.add)
    harness = WindowHarness(config)
    harness.add("k", 1, 1.0)
    harness.add("k", 2, 2.0)
    assert values(harness.advance_watermark(60.0)) == [3]
    harness.add("k", 10, 3.0)
    assert values(harness.take()) == [10]
    harness.advance_watermark(500.0)
    assert harness.is_empty


def test_event_time_trigger_on_global_windows_fires_only_at_the_end_of_input() -> None:
    harness = WindowHarness(WindowConfig(assigner=GlobalWindows.create(), trigger=EventTimeTrigger(), reduce_fn=operator.add))
    harness.add("k", 1, 5.0)
    harness.add("k", 2, 6.0)
    assert harness.advance_watermark(1e12) == []
    assert harness.advance_watermark(INF) == [WindowEmission(3, INF)]  # the final watermark of bounded input


def test_continuous_event_time_trigger_fires_early_on_interval_boundaries_and_at_the_end() -> None:
    harness = WindowHarness(WindowConfig(assigner=MINUTE, trigger=ContinuousEventTimeTrigger.of(10.0), reduce_fn=operator.add))
    harness.add("k", 1, 3.0)
    assert harness.advance_watermark(9.0) == []
    assert harness.advance_watermark(10.0) == [WindowEmission(1, END_0)]  # early result
    harness.add("k", 2, 15.0)
    assert harness.advance_watermark(25.0) == [WindowEmission(3, END_0)]
    assert values(harness.advance_watermark(60.0)) == [3, 3, 3, 3]  # at 30, 40, 50 and the end
    assert harness.is_empty


def test_continuous_event_time_trigger_fires_late_elements_at_once() -> None:
    config = WindowConfig(assigner=MINUTE, trigger=ContinuousEventTimeTrigger.of(30.0), allowed_lateness=10.0, reduce_fn=operator.add)
    harness = WindowHarness(config)
    harness.add("k", 1, 3.0)
    assert values(harness.advance_watermark(65.0)) == [1, 1]  # at 30 and at the end
    harness.add("k", 5, 4.0)
    assert values(harness.take()) == [6]
    harness.advance_watermark(1000.0)
    assert harness.is_empty


def test_processing_time_windows_fire_when_the_clock_passes_their_end() -> None:
    harness = WindowHarness(WindowConfig(assigner=TumblingProcessingTimeWindows.of(60.0), reduce_fn=operator.add), processing_time=5.0)
    harness.add("k", 1)
    harness.clock.set(30.0)
    harness.add("k", 2)
    harness.add("k", 4, 999.0)  # the event timestamp plays no part
    assert harness.advance_processing_time(59.0) == []
    assert harness.advance_processing_time(60.0) == [WindowEmission(7, END_0)]
    harness.add("k", 8)
    assert harness.advance_processing_time(200.0) == [WindowEmission(8, 119.999999)]
    assert harness.is_empty


def test_continuous_processing_time_trigger_fires_every_interval_of_the_clock() -> None:
    config = WindowConfig(assigner=GlobalWindows.create(), trigger=ContinuousProcessingTimeTrigger.of(20.0), reduce_fn=operator.add)
    harness = WindowHarness(config, processing_time=5.0)
    harness.add("k", 1)
    assert harness.advance_processing_time(19.0) == []
    assert values(harness.advance_processing_time(25.0)) == [1]
    harness.add("k", 2)
    assert values(harness.advance_processing_time(40.0)) == [3]
    assert values(harness.advance_processing_time(100.0)) == [3, 3, 3]  # 60, 80, 100


class FireOnBig(Trigger):
    """A user trigger: fire-and-purge on a value over 100, or when the window ends; keeps
    the largest value seen in its per-window state."""

    LARGEST = ValueStateDescriptor("largest", default=0)

    def on_element(self, element: Any, timestamp: float | None, window: Window, ctx: TriggerContext) -> TriggerResult:
        largest = ctx.get_partitioned_state(self.LARGEST)
        largest.update(max(largest.value(), element))
        if element > 100:
            return TriggerResult.FIRE_AND_PURGE
        ctx.register_event_time_timer(window.max_timestamp)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: float, window: Window, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp else TriggerResult.CONTINUE

    def clear(self, window: Window, ctx: TriggerContext) -> None:
        ctx.get_partitioned_state(self.LARGEST).clear()
        ctx.delete_event_time_timer(window.max_timestamp)


def test_a_user_trigger_with_its_own_state() -> None:
    harness = WindowHarness(WindowConfig(assigner=MINUTE, trigger=FireOnBig(), process_fn=Elements()))
    harness.add("k", 5, 1.0)
    harness.add("k", 500, 2.0)
    assert values(harness.take()) == [[5, 500]]
    harness.add("k", 7, 3.0)
    assert harness.store.get("k", TimeWindow(0, 60), "trigger:largest") == 500
    assert values(harness.advance_watermark(60.0)) == [[7]]
    assert harness.is_empty


def test_time_evictor_keeps_the_elements_near_the_newest() -> None:
    harness = WindowHarness(WindowConfig(assigner=TumblingEventTimeWindows.of(100), evictor=TimeEvictor.of(10.0), process_fn=Elements()))
    for ts in (5.0, 50.0, 85.0, 95.0, 96.0):
        harness.add("k", ts, ts)
    assert values(harness.advance_watermark(100.0)) == [[95.0, 96.0]]  # 85 is exactly 10 s older: evicted


def test_evicting_after_the_function_keeps_what_later_firings_see() -> None:
    config = WindowConfig(
        assigner=MINUTE, allowed_lateness=60.0, evictor=CountEvictor.of(1, do_evict_after=True), reduce_fn=operator.add
    )
    harness = WindowHarness(config)
    for value, ts in ((1, 1.0), (2, 2.0), (3, 3.0)):
        harness.add("k", value, ts)
    assert values(harness.advance_watermark(60.0)) == [6]  # all three, then only the last is kept
    harness.add("k", 10, 4.0)
    assert values(harness.take()) == [13]  # 3 + 10


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CountTrigger.of(0), r"CountTrigger.of\(max_count\) needs an int >= 1, got 0"),
        (lambda: CountTrigger.of(2.5), "got 2.5"),
        (lambda: PurgingTrigger.of("count"), r"PurgingTrigger.of\(trigger\) needs a Trigger"),
        (lambda: ContinuousEventTimeTrigger.of(0), r"ContinuousEventTimeTrigger.of\(interval\) must be finite seconds > 0"),
        (lambda: ContinuousProcessingTimeTrigger.of(-1), "got -1"),
        (lambda: CountEvictor.of(0), r"CountEvictor.of\(max_count\) needs an int >= 1"),
        (lambda: TimeEvictor.of(0), r"TimeEvictor.of\(window_size\) must be finite seconds > 0"),
        (lambda: count_window(0), r"count_window: size must be an int >= 1, got 0"),
        (lambda: count_window(10, slide=0), r"count_window: slide must be an int >= 1, got 0"),
    ],
)
def test_bad_trigger_and_evictor_parameters_are_refused(make: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()
