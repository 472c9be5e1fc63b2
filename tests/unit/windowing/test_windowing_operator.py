"""WindowOperatorLogic over tumbling and sliding windows: out-of-order input, lateness
(dropped, late firing, side output), the window functions and their state, cleanup."""

from __future__ import annotations

import operator
from collections import defaultdict
from typing import Any, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.api.side_outputs import OutputTag
from streamflow.errors import StateError
from streamflow.state.descriptors import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from streamflow.testing.windows import WindowHarness
from streamflow.windowing import (
    AggregateFunction,
    ElementFate,
    EventTimeSessionWindows,
    ProcessWindowContext,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    WindowConfig,
    WindowEmission,
)

MINUTE = TumblingEventTimeWindows.of(60.0)
END_0 = 59.999999  # max_timestamp of [0, 60)
END_1 = 119.999999
LATE = OutputTag("late")


def summing(**options: Any) -> WindowHarness:
    return WindowHarness(WindowConfig(assigner=options.pop("assigner", MINUTE), reduce_fn=operator.add, **options))


def test_out_of_order_elements_fire_per_key_when_the_watermark_passes_the_window_end() -> None:
    harness = summing()
    assert harness.add("a", 1, 1.0) is ElementFate.ADDED
    harness.add("a", 2, 61.0)
    harness.add("a", 3, 30.0)  # out of order, same window as the first
    harness.add("b", 10, 5.0)
    assert harness.advance_watermark(END_0 - 1e-6) == []
    assert harness.advance_watermark(END_0) == [WindowEmission(4, END_0), WindowEmission(10, END_0)]
    assert harness.advance_watermark(1000.0) == [WindowEmission(2, END_1)]
    assert harness.is_empty  # contents, trigger timers and cleanup timers all gone


def test_a_late_element_without_lateness_is_dropped_and_counted() -> None:
    harness = summing()
    harness.add("a", 1, 1.0)
    harness.advance_watermark(60.0)
    assert harness.add("a", 5, 30.0) is ElementFate.LATE_DROPPED
    assert harness.logic.late_records_dropped == 1
    assert harness.take() == []
    assert harness.advance_watermark(500.0) == []
    assert harness.is_empty


def test_a_late_element_within_the_allowed_lateness_fires_the_window_again_with_all_contents() -> None:
    harness = summing(allowed_lateness=10.0)
    harness.add("a", 1, 1.0)
    harness.add("a", 3, 50.0)
    assert harness.advance_watermark(60.0) == [WindowEmission(4, END_0)]
    assert harness.add("a", 5, 30.0) is ElementFate.ADDED
    assert harness.take() == [WindowEmission(9, END_0)]  # the updated result, at once
    assert harness.advance_watermark(END_0 + 10.0) == []  # cleanup: no firing
    assert harness.is_empty
    assert harness.add("a", 6, 30.0) is ElementFate.LATE_DROPPED  # past the lateness
    assert harness.logic.late_records_dropped == 1


def test_elements_too_late_for_every_window_go_to_the_late_side_output() -> None:
    harness = summing(allowed_lateness=10.0, late_data_tag=LATE)
    harness.add("a", 1, 1.0)
    assert harness.advance_watermark(75.0) == [WindowEmission(1, END_0)]
    assert harness.add("a", 7, 59.0) is ElementFate.LATE_SIDE_OUTPUT
    assert harness.add("a", 8, 70.0) is ElementFate.ADDED  # [60, 120) is open
    assert harness.take() == [WindowEmission(7, 59.0, LATE)]  # the element itself, with its timestamp
    assert harness.logic.late_records_dropped == 0


def test_sliding_windows_each_get_the_element_and_fire_in_turn() -> None:
    harness = summing(assigner=SlidingEventTimeWindows.of(30, 10))
    harness.add("k", 1, 5.0)  # windows [-20, 10) [-10, 20) [0, 30)
    harness.add("k", 10, 15.0)  # windows [-10, 20) [0, 30) [10, 40)
    fired = harness.advance_watermark(100.0)
    assert [(e.value, e.timestamp) for e in fired] == [(1, 9.999999), (11, 19.999999), (11, 29.999999), (10, 39.999999)]
    assert harness.is_empty


class Average(AggregateFunction[float, tuple[float, int], float]):
    def create_accumulator(self) -> tuple[float, int]:
        return (0.0, 0)

    def add(self, value: float, accumulator: tuple[float, int]) -> tuple[float, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[float, int]) -> float:
        return accumulator[0] / accumulator[1]

    def merge(self, a: tuple[float, int], b: tuple[float, int]) -> tuple[float, int]:
        return (a[0] + b[0], a[1] + b[1])


def test_aggregate_keeps_one_accumulator_per_window() -> None:
    harness = WindowHarness(WindowConfig(assigner=MINUTE, aggregate_fn=Average()))
    for value, ts in ((2.0, 1.0), (4.0, 2.0), (9.0, 3.0), (100.0, 70.0)):
        harness.add("a", value, ts)
    assert harness.store.get("a", TimeWindow(0, 60), "contents") == (15.0, 3)
    assert harness.advance_watermark(200.0) == [WindowEmission(5.0, END_0), WindowEmission(100.0, END_1)]


FIRINGS = ValueStateDescriptor("firings", default=0)
WINDOWS_SEEN = ValueStateDescriptor("windows-seen", default=0)


class Describe(ProcessWindowFunction):
    """All elements plus what the context knows; counts firings per window and windows per key."""

    def __init__(self) -> None:
        self.cleared: list[Any] = []

    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Any) -> None:
        firings = context.window_state(FIRINGS)
        firings.update(firings.value() + 1)
        seen = context.global_state(WINDOWS_SEEN)
        if firings.value() == 1:
            seen.update(seen.value() + 1)
        window = context.window
        out.collect((key, window.start, sorted(elements), firings.value(), seen.value(), context.current_watermark()))  # type: ignore[attr-defined]
        if firings.value() > 1:
            context.output(OutputTag("updates"), (key, window.start))  # type: ignore[attr-defined]

    def clear(self, context: ProcessWindowContext) -> None:
        self.cleared.append(context.window)


def test_process_sees_all_elements_the_window_its_state_and_side_outputs() -> None:
    function = Describe()
    harness = WindowHarness(WindowConfig(assigner=MINUTE, process_fn=function, allowed_lateness=30.0))
    harness.add("a", 3, 10.0)
    harness.add("a", 1, 20.0)
    harness.add("a", 7, 65.0)
    assert harness.advance_watermark(60.0) == [WindowEmission(("a", 0.0, [1, 3], 1, 1, 60.0), END_0)]
    harness.add("a", 2, 30.0)  # late, within the lateness: fires again, firings = 2
    assert harness.take() == [
        WindowEmission(("a", 0.0, [1, 2, 3], 2, 1, 60.0), END_0),
        WindowEmission(("a", 0.0), END_0, OutputTag("updates")),
    ]
    assert harness.advance_watermark(120.0) == [WindowEmission(("a", 60.0, [7], 1, 2, 120.0), END_1)]
    harness.advance_watermark(1000.0)
    assert [w.start for w in function.cleared] == [0.0, 60.0]
    # only the per-key state is left: windows took their contents and per-window state along
    assert list(harness.store.data) == [("a", None)]
    assert harness.store.data[("a", None)] == {"global:windows-seen": 2}


class Label(ProcessWindowFunction):
    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Any) -> None:
        [largest] = elements
        out.collect({"key": key, "start": context.window.start, "max": largest})  # type: ignore[attr-defined]


def test_incremental_reduce_with_a_process_function_gets_the_one_reduced_value() -> None:
    harness = WindowHarness(WindowConfig(assigner=MINUTE, reduce_fn=max, process_fn=Label()))
    for value, ts in ((5, 1.0), (9, 2.0), (4, 3.0)):
        harness.add("k", value, ts)
    assert harness.store.data[("k", TimeWindow(0, 60))] == {"contents": 9}
    assert harness.advance_watermark(60.0) == [WindowEmission({"key": "k", "start": 0.0, "max": 9}, END_0)]


def test_incremental_aggregate_with_a_process_function() -> None:
    harness = WindowHarness(WindowConfig(assigner=MINUTE, aggregate_fn=Average(), process_fn=Label()))
    harness.add("k", 1.0, 1.0)
    harness.add("k", 2.0, 2.0)
    assert harness.advance_watermark(60.0) == [WindowEmission({"key": "k", "start": 0.0, "max": 1.5}, END_0)]


def test_per_window_state_of_other_kinds_is_refused_by_name() -> None:
    class UsesMap(ProcessWindowFunction):
        def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Any) -> None:
            context.window_state(MapStateDescriptor("m"))

    harness = WindowHarness(WindowConfig(assigner=MINUTE, process_fn=UsesMap()))
    harness.add("k", 1, 1.0)
    with pytest.raises(StateError, match="MapStateDescriptor is not supported here"):
        harness.advance_watermark(60.0)


def test_per_window_state_is_refused_on_session_windows() -> None:
    class UsesWindowState(ProcessWindowFunction):
        def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Any) -> None:
            context.window_state(ListStateDescriptor("l"))

    harness = WindowHarness(WindowConfig(operator="sessions", assigner=EventTimeSessionWindows.with_gap(5), process_fn=UsesWindowState()))
    harness.add("k", 1, 1.0)
    with pytest.raises(StateError, match="window operator 'sessions': per-window state .* not available with merging"):
        harness.advance_watermark(60.0)


def test_an_element_whose_reduce_raises_changes_no_window() -> None:
    def picky(a: int, b: int) -> int:
        if b < 0:
            raise ValueError("negative")
        return a + b

    harness = WindowHarness(WindowConfig(assigner=SlidingEventTimeWindows.of(20, 10), reduce_fn=picky))
    harness.add("k", 1, 15.0)  # windows [10, 30) and [0, 20)
    before = {k: dict(v) for k, v in harness.store.data.items()}
    with pytest.raises(ValueError, match="negative"):
        harness.add("k", -5, 16.0)
    assert harness.store.data == before
    harness.add("k", 2, 16.0)
    assert [e.value for e in harness.advance_watermark(100.0)] == [3, 3]


def test_an_element_in_no_window_is_neither_late_nor_counted() -> None:
    harness = summing(assigner=SlidingEventTimeWindows.of(10, 30))
    assert harness.add("k", 1, 15.0) is ElementFate.IN_NO_WINDOW
    assert harness.logic.late_records_dropped == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("e"), st.sampled_from("abc"), st.integers(0, 500)),
            st.tuples(st.just("w"), st.just(""), st.integers(0, 500)),
        ),
        max_size=60,
    )
)
def test_property_sums_equal_a_reference_of_the_elements_that_were_on_time(steps: list[tuple[str, str, int]]) -> None:
    def count(a: tuple[str, int], b: tuple[str, int]) -> tuple[str, int]:
        return (a[0], a[1] + b[1])

    harness = WindowHarness(WindowConfig(assigner=TumblingEventTimeWindows.of(100), reduce_fn=count))
    expected: dict[tuple[str, float], int] = defaultdict(int)
    watermark = float("-inf")
    late = 0
    fired: list[WindowEmission] = []
    for kind, key, at in steps:
        if kind == "w":
            watermark = max(watermark, float(at))
            fired += harness.advance_watermark(at)
            continue
        end = at - at % 100 + 100 - 1e-6
        if end <= watermark:
            late += 1
        else:
            expected[(key, end)] += 1
        harness.add(key, (key, 1), float(at))
    fired += harness.advance_watermark(float("inf"))
    got = {(e.value[0], e.timestamp): e.value[1] for e in fired}
    assert len(got) == len(fired)  # one firing per key and window
    assert got == expected
    assert harness.logic.late_records_dropped == late
    assert harness.is_empty
