"""Window join / co-group on the window logic, and the interval join logic."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.api.side_outputs import OutputTag
from streamflow.errors import ConfigError
from streamflow.joins import (
    FlatJoinFunction,
    IntervalJoinConfig,
    IntervalJoinLogic,
    ProcessJoinFunction,
    WindowCoGroup,
    WindowJoin,
    tag_left,
    tag_right,
    window_join_config,
)
from streamflow.testing.windows import WindowHarness
from streamflow.windowing import ElementFate, InMemoryWindowStore, TumblingEventTimeWindows, WindowEmission, WindowTimers

TEN = TumblingEventTimeWindows.of(10.0)


def joined(function: WindowJoin | WindowCoGroup) -> WindowHarness:
    return WindowHarness(window_join_config(operator="orders-payments", assigner=TEN, function=function))


def test_window_join_pairs_every_left_with_every_right_of_the_same_key_and_window() -> None:
    harness = joined(WindowJoin(lambda order, payment: (order, payment)))
    harness.add("u1", tag_left("o1"), 1.0)
    harness.add("u1", tag_right("p1"), 2.0)
    harness.add("u1", tag_left("o2"), 3.0)
    harness.add("u1", tag_right("p2"), 9.0)
    harness.add("u1", tag_right("p3"), 11.0)  # next window: no order there
    harness.add("u2", tag_left("o3"), 4.0)  # no payment of u2: an inner join emits nothing
    fired = harness.advance_watermark(100.0)
    assert sorted(e.value for e in fired) == [("o1", "p1"), ("o1", "p2"), ("o2", "p1"), ("o2", "p2")]
    assert {e.timestamp for e in fired} == {9.999999}
    assert harness.is_empty


class Repeat(FlatJoinFunction):
    def join(self, left: Any, right: Any, out: Any) -> None:
        for _ in range(right):
            out.collect(left)


def test_a_flat_join_function_emits_any_number_per_pair() -> None:
    harness = joined(WindowJoin(Repeat()))
    harness.add("k", tag_left("x"), 1.0)
    harness.add("k", tag_right(2), 1.0)
    harness.add("k", tag_right(0), 1.0)
    assert [e.value for e in harness.advance_watermark(10.0)] == ["x", "x"]


def test_co_group_sees_both_sides_even_when_one_is_empty() -> None:
    def outer(lefts: list[Any], rights: list[Any], out: Any) -> None:
        out.collect((sorted(lefts), sorted(rights)))

    harness = joined(WindowCoGroup(outer))
    harness.add("a", tag_left(1), 1.0)
    harness.add("a", tag_left(2), 2.0)
    harness.add("b", tag_right(3), 3.0)
    assert [e.value for e in harness.advance_watermark(10.0)] == [([1, 2], []), ([], [3])]


def test_join_functions_are_checked_when_built() -> None:
    with pytest.raises(ConfigError, match="window join apply"):
        WindowJoin("pair")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="co_group apply"):
        WindowCoGroup(None)  # type: ignore[arg-type]


class Pair(ProcessJoinFunction):
    def process_element(self, left: Any, right: Any, ctx: Any, out: Any) -> None:
        out.collect((left, right, ctx.left_timestamp, ctx.right_timestamp, ctx.timestamp))
        if right == "r5":
            ctx.output(OutputTag("after"), left)


def interval(lower: float, upper: float, function: Any = None, **tags: Any) -> tuple[IntervalJoinLogic, WindowTimers, InMemoryWindowStore]:
    store, timers = InMemoryWindowStore(), WindowTimers()
    config = IntervalJoinConfig(lower=lower, upper=upper, function=function or Pair(), **tags)
    return IntervalJoinLogic(config, store, timers), timers, store


def advance(logic: IntervalJoinLogic, timers: WindowTimers, watermark: float) -> None:
    logic.advance_watermark(watermark)
    while (due := timers.pop_event_time(watermark)) is not None:
        time, key, namespace = due
        logic.on_event_time(key, namespace, time)


def test_interval_join_emits_pairs_within_the_bounds_inclusive() -> None:
    logic, timers, store = interval(-2.0, 1.0)
    for name, ts in (("r1", 7.0), ("r2", 8.0), ("r3", 11.0), ("r4", 11.000001)):
        logic.process_right("k", name, ts)
    logic.process_left("k", "a", 10.0)
    assert logic.take_output() == [
        WindowEmission(("a", "r2", 10.0, 8.0, 10.0), 10.0),
        WindowEmission(("a", "r3", 10.0, 11.0, 11.0), 11.0),
    ]
    logic.process_right("k", "r5", 9.0)
    assert logic.take_output() == [
        WindowEmission(("a", "r5", 10.0, 9.0, 10.0), 10.0),
        WindowEmission("a", 10.0, OutputTag("after")),
    ]
    logic.process_left("other", "b", 10.0)
    assert logic.take_output() == []  # keys never meet


def test_interval_join_buffers_are_cleaned_as_the_watermark_passes() -> None:
    logic, timers, store = interval(-2.0, 1.0)
    for name, ts in (("r1", 7.0), ("r2", 8.0), ("r3", 11.0), ("r4", 11.000001), ("r5", 9.0)):
        logic.process_right("k", name, ts)
    logic.process_left("k", "a", 10.0)
    logic.take_output()
    advance(logic, timers, 10.0)  # right elements up to 8 can match no left element >= 10 any more
    assert sorted(store.get("k", None, "right")) == [9_000_000, 11_000_000, 11_000_001]
    logic.process_left("k", "a2", 10.5)
    assert [e.value[1] for e in logic.take_output() if e.tag is None] == ["r3", "r4", "r5"]
    advance(logic, timers, 100.0)
    assert store.data == {}
    assert len(timers.event_time) == 0


def test_late_elements_go_to_their_sides_output_or_are_counted() -> None:
    logic, timers, _ = interval(0.0, 5.0, right_late_tag=OutputTag("late-payments"))
    advance(logic, timers, 50.0)
    assert logic.process_left("k", "old order", 49.0) is ElementFate.LATE_DROPPED
    assert logic.process_right("k", "old payment", 10.0) is ElementFate.LATE_SIDE_OUTPUT
    assert logic.late_records_dropped == 1
    assert logic.take_output() == [WindowEmission("old payment", 10.0, OutputTag("late-payments"))]


def test_a_plain_function_serves_as_the_join_function() -> None:
    logic, _, _ = interval(0.0, 0.0, function=lambda a, b: a + b)
    logic.process_left("k", 1, 5.0)
    logic.process_right("k", 10, 5.0)
    logic.process_right("k", 100, 5.000001)
    assert logic.take_output() == [WindowEmission(11, 5.0)]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lower": 5.0, "upper": -5.0}, r"between\(5.0, -5.0\) needs lower <= upper"),
        ({"lower": float("nan"), "upper": 1.0}, "lower must be finite seconds"),
        ({"lower": 0.0, "upper": "1"}, "upper must be finite seconds"),
        ({"lower": 0.0, "upper": 1.0, "function": 3}, "needs a ProcessJoinFunction or fn"),
        ({"lower": 0.0, "upper": 1.0, "left_late_tag": "late"}, "late-data outputs need an OutputTag"),
    ],
)
def test_interval_join_configuration_is_checked_when_built(options: dict[str, Any], match: str) -> None:
    options.setdefault("function", Pair())
    with pytest.raises(ConfigError, match=match):
        IntervalJoinConfig(operator="orders-payments", **options)


@settings(max_examples=200, deadline=None)
@given(
    lower=st.integers(-5, 3),
    width=st.integers(0, 6),
    steps=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["left", "right"]), st.sampled_from("ab"), st.integers(0, 40)),
            st.tuples(st.just("wm"), st.just(""), st.integers(0, 40)),
        ),
        max_size=50,
    ),
)
def test_property_interval_join_matches_brute_force_over_on_time_elements(
    lower: int, width: int, steps: list[tuple[str, str, int]]
) -> None:
    upper = lower + width
    logic, timers, store = interval(float(lower), float(upper), function=lambda l, r: (l, r))
    watermark = float("-inf")
    on_time: dict[str, list[tuple[str, int, int]]] = {"left": [], "right": []}
    for index, (kind, key, at) in enumerate(steps):
        if kind == "wm":
            watermark = max(watermark, at + 0.5)  # between timestamps: never equal to one
            advance(logic, timers, watermark)
            continue
        if at > watermark:
            on_time[kind].append((key, at, index))
        process = logic.process_left if kind == "left" else logic.process_right
        process(key, index, float(at))
    got = sorted(e.value for e in logic.take_output())
    expected = sorted(
        (li, ri)
        for lk, lt, li in on_time["left"]
        for rk, rt, ri in on_time["right"]
        if lk == rk and lower <= rt - lt <= upper
    )
    assert got == expected
    advance(logic, timers, float("inf"))
    assert store.data == {}
