"""Session windows: merging bookkeeping, merges that join sessions with their state
(contents and trigger state), dynamic gaps, lateness, and a reference-model property."""

from __future__ import annotations

import operator
from typing import Any, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.errors import StateError
from streamflow.state.descriptors import ValueStateDescriptor
from streamflow.testing.windows import WindowHarness
from streamflow.windowing import (
    ContinuousEventTimeTrigger,
    CountTrigger,
    ElementFate,
    EventTimeSessionWindows,
    MergingWindowSet,
    ProcessWindowContext,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TimeWindow,
    WindowConfig,
    WindowEmission,
)
from streamflow.windowing.merging import Merge

GAP_10 = EventTimeSessionWindows.with_gap(10.0)


class Elements(ProcessWindowFunction):
    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, context.window.start, context.window.end, sorted(elements)))  # type: ignore[attr-defined]


def test_merging_window_set_keeps_one_state_window_per_session() -> None:
    sessions = MergingWindowSet(GAP_10)
    a, b, c = TimeWindow(0, 10), TimeWindow(30, 40), TimeWindow(15, 25)
    assert sessions.add_window(a) == (a, [])
    assert sessions.add_window(b) == (b, [])
    assert sessions.add_window(c) == (c, [])
    # [8, 18) overlaps a and c: they merge into [0, 25), a's namespace keeps the contents
    result, merges = sessions.add_window(TimeWindow(8, 18))
    assert result == TimeWindow(0, 25)
    assert merges == [Merge(TimeWindow(0, 25), (a, c), a, (c,))]
    assert sessions.state_window(TimeWindow(0, 25)) == a
    assert sessions.state_window(a) is None and sessions.state_window(c) is None
    # [22, 32) joins the two sessions [0, 25) and [30, 40)
    result, merges = sessions.add_window(TimeWindow(22, 32))
    assert result == TimeWindow(0, 40)
    assert merges == [Merge(TimeWindow(0, 40), (TimeWindow(0, 25), b), a, (b,))]
    assert sessions.windows() == [TimeWindow(0, 40)]
    # inside a session: nothing to merge, nothing changes
    assert sessions.add_window(TimeWindow(1, 11)) == (TimeWindow(0, 40), [])
    assert sessions.add_window(TimeWindow(0, 40)) == (TimeWindow(0, 40), [])
    assert sessions.state_window(TimeWindow(0, 40)) == a


def test_merging_window_set_snapshot_restores_exactly_and_knows_when_it_changed() -> None:
    sessions = MergingWindowSet(GAP_10)
    sessions.add_window(TimeWindow(0, 10))
    sessions.add_window(TimeWindow(5, 15))
    sessions.add_window(TimeWindow(100, 110))
    data = sessions.snapshot()
    assert data == [[0.0, 15.0, 0.0, 10.0], [100.0, 110.0, 100.0, 110.0]]
    restored = MergingWindowSet.restore(GAP_10, data)
    assert not restored.changed
    assert restored.snapshot() == data
    assert restored.state_window(TimeWindow(0, 15)) == TimeWindow(0, 10)
    restored.retire_window(TimeWindow(100, 110))
    assert restored.changed
    with pytest.raises(StateError, match=r"session window TimeWindow\(start=100.0, end=110.0\) is not in flight"):
        restored.retire_window(TimeWindow(100, 110))


def test_a_copy_of_a_merging_window_set_changes_apart_from_it() -> None:
    sessions = MergingWindowSet(GAP_10)
    sessions.add_window(TimeWindow(0, 10))
    sessions.mark_persisted()
    twin = sessions.copy()
    assert twin.snapshot() == sessions.snapshot() and not twin.changed
    twin.add_window(TimeWindow(5, 15))
    assert twin.windows() == [TimeWindow(0, 15)] and twin.changed
    assert sessions.windows() == [TimeWindow(0, 10)] and not sessions.changed


def sum_unless_negative(a: int, b: int) -> int:
    if b < 0:
        raise ValueError("negative")
    return a + b


@pytest.mark.parametrize("timestamp", [2.0, 12.0, 25.0], ids=["inside", "grows", "joins-two"])
def test_an_element_whose_reduce_raises_leaves_sessions_contents_and_timers_as_they_were(timestamp: float) -> None:
    harness = WindowHarness(WindowConfig(assigner=GAP_10, reduce_fn=sum_unless_negative))
    harness.add("u", 1, 0.0)
    harness.add("u", 10, 4.0)
    harness.add("u", 100, 30.0)  # sessions [0, 14) and [30, 40)
    before = harness.checkpoint()
    with pytest.raises(ValueError, match="negative"):
        harness.add("u", -1, timestamp)
    assert harness.checkpoint() == before
    assert harness.advance_watermark(100.0) == [WindowEmission(11, 13.999999), WindowEmission(100, 39.999999)]


def test_a_merge_that_joins_two_sessions_joins_their_contents() -> None:
    harness = WindowHarness(WindowConfig(assigner=GAP_10, process_fn=Elements()))
    for value, ts in (("e1", 0.0), ("e2", 30.0), ("e3", 15.0), ("e4", 8.0)):
        harness.add("u", value, ts)
    # sessions now [0, 25) with e1, e3, e4 and [30, 40) with e2
    assert harness.advance_watermark(24.0) == []
    harness.add("u", "e5", 22.0)  # [22, 32) joins both
    assert harness.advance_watermark(39.999998) == []
    assert harness.advance_watermark(39.999999) == [
        WindowEmission(("u", 0.0, 40.0, ["e1", "e2", "e3", "e4", "e5"]), 39.999999)
    ]
    assert harness.is_empty


def test_incremental_contents_merge_with_the_sessions() -> None:
    harness = WindowHarness(WindowConfig(assigner=GAP_10, reduce_fn=operator.add))
    for value, ts in ((1, 0.0), (10, 30.0), (100, 15.0), (1000, 8.0), (10000, 22.0)):
        harness.add("u", value, ts)
    assert harness.advance_watermark(100.0) == [WindowEmission(11111, 39.999999)]


def test_trigger_state_merges_with_the_sessions() -> None:
    config = WindowConfig(assigner=GAP_10, trigger=CountTrigger.of(3), process_fn=Elements())
    harness = WindowHarness(config)
    harness.add("u", "a", 0.0)
    harness.add("u", "b", 20.0)
    assert harness.take() == []  # two sessions, count 1 each
    harness.add("u", "c", 10.0)  # [10, 20) touches both: counts merge to 2, then 3 -> fire
    assert harness.take() == [WindowEmission(("u", 0.0, 30.0, ["a", "b", "c"]), 29.999999)]
    harness.add("u", "d", 25.0)
    assert harness.take() == []  # the count restarted after the firing
    assert harness.advance_watermark(1000.0) == []  # a count trigger does not fire at the end
    assert harness.is_empty  # but the session is cleaned up


def test_dynamic_gaps_merge_sessions_of_different_lengths() -> None:
    assigner = EventTimeSessionWindows.with_dynamic_gap(lambda e: e["gap"])
    harness = WindowHarness(WindowConfig(assigner=assigner, reduce_fn=lambda a, b: {"gap": 0, "n": a["n"] + b["n"]}))
    harness.add("u", {"gap": 5.0, "n": 1}, 0.0)  # [0, 5)
    harness.add("u", {"gap": 1.0, "n": 1}, 8.0)  # [8, 9)
    assert harness.advance_watermark(4.0) == []
    harness.add("u", {"gap": 10.0, "n": 1}, 4.0)  # [4, 14) swallows both
    assert [(e.value["n"], e.timestamp) for e in harness.advance_watermark(100.0)] == [(3, 13.999999)]


def test_a_late_element_that_touches_an_open_session_joins_it() -> None:
    harness = WindowHarness(WindowConfig(assigner=GAP_10, process_fn=Elements()))
    harness.add("u", "x", 0.0)
    harness.advance_watermark(50.0)
    assert harness.take() == []
    harness.add("u", "y", 45.0)  # [45, 55): open
    assert harness.add("u", "z", 35.0) is ElementFate.ADDED  # [35, 45) is late alone, but touches [45, 55)
    assert harness.add("u", "w", 20.0) is ElementFate.LATE_DROPPED  # [20, 30) alone and over
    assert harness.advance_watermark(100.0) == [WindowEmission(("u", 35.0, 55.0, ["y", "z"]), 54.999999)]
    assert harness.logic.late_records_dropped == 1
    assert harness.is_empty


def test_sessions_of_different_keys_never_mix() -> None:
    harness = WindowHarness(WindowConfig(assigner=GAP_10, reduce_fn=operator.add))
    harness.add("a", 1, 0.0)
    harness.add("b", 2, 5.0)
    harness.add("a", 3, 9.0)
    assert harness.advance_watermark(100.0) == [WindowEmission(2, 14.999999), WindowEmission(4, 18.999999)]


@settings(max_examples=200, deadline=None)
@given(
    gap=st.integers(1, 30),
    arrivals=st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 300)), max_size=40),
)
def test_property_sessions_never_overlap_and_match_a_reference(gap: int, arrivals: list[tuple[str, int]]) -> None:
    harness = WindowHarness(WindowConfig(assigner=EventTimeSessionWindows.with_gap(gap), process_fn=Elements()))
    for index, (key, at) in enumerate(arrivals):
        harness.add(key, (at, index), float(at))
        for raw in [harness.store.get(k, None, "merging-windows") for k in "ab"]:
            if isinstance(raw, list):
                spans = sorted((s, e) for s, e, _, _ in raw)
                assert all(e1 < s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))  # never touching
    fired = harness.advance_watermark(float("inf"))
    expected = []
    for key in "ab":
        times = sorted((at, i) for i, (k, at) in enumerate(arrivals) if k == key)
        group: list[tuple[int, int]] = []
        for item in times:
            if group and item[0] - group[-1][0] > gap:
                expected.append((key, float(group[0][0]), float(group[-1][0] + gap), group))
                group = []
            group.append(item)
        if group:
            expected.append((key, float(group[0][0]), float(group[-1][0] + gap), group))
    assert sorted(e.value for e in fired) == sorted(expected)
    assert harness.is_empty


CHECKPOINTED = [
    WindowConfig(assigner=GAP_10, trigger=CountTrigger.of(3), allowed_lateness=5.0, process_fn=Elements()),
    WindowConfig(
        assigner=SlidingEventTimeWindows.of(30, 10), trigger=ContinuousEventTimeTrigger.of(4), allowed_lateness=7.0,
        process_fn=Elements(),
    ),
]


@pytest.mark.parametrize("config", CHECKPOINTED, ids=["sessions-count", "sliding-continuous"])
@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("e"), st.sampled_from("ab"), st.integers(0, 200)),
            st.tuples(st.just("w"), st.just(""), st.integers(0, 200)),
        ),
        max_size=40,
    ),
    cut=st.integers(0, 40),
)
def test_property_a_restored_checkpoint_continues_exactly_like_the_run_it_came_from(
    config: WindowConfig, steps: list[tuple[str, str, int]], cut: int
) -> None:
    """Everything the window logic knows, but the watermark, is in its state and timers: a
    subtask restored from a checkpoint taken anywhere emits what the uninterrupted one emits."""
    def run(harness: WindowHarness, first_index: int, part: list[tuple[str, str, int]]) -> list[WindowEmission]:
        out: list[WindowEmission] = []
        for index, (kind, key, at) in enumerate(part, start=first_index):
            if kind == "w":
                out += harness.advance_watermark(float(at))
            else:
                harness.add(key, (at, index), float(at))
                out += harness.take()
        return out

    straight = WindowHarness(config)
    expected = run(straight, 0, steps) + straight.advance_watermark(float("inf"))
    first = WindowHarness(config)
    before = run(first, 0, steps[:cut])
    restored = WindowHarness.restored(config, first.checkpoint())
    # Event time is not in the checkpoint (as in Flink): the runtime would start from the next
    # watermark. Setting the logic's watermark without firing anything isolates the state.
    restored.logic.advance_watermark(first.logic.watermark)
    after = run(restored, len(steps[:cut]), steps[cut:]) + restored.advance_watermark(float("inf"))
    assert before + after == expected
    assert restored.is_empty


class ClearsGlobalState(Elements):
    """Counts open sessions per key in per-key state; a session's end takes it back."""

    OPEN = ValueStateDescriptor("open-sessions", default=0)

    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Any) -> None:
        super().process(key, context, elements, out)
        state = context.global_state(self.OPEN)
        state.update(state.value() + 1)

    def clear(self, context: ProcessWindowContext) -> None:
        state = context.global_state(self.OPEN)
        state.update(state.value() - 1)


def test_a_session_that_is_over_calls_the_functions_clear() -> None:
    harness = WindowHarness(WindowConfig(assigner=GAP_10, allowed_lateness=5.0, process_fn=ClearsGlobalState()))
    harness.add("u", "a", 0.0)
    harness.add("u", "b", 5.0)
    harness.advance_watermark(15.0)  # fired at 14.999999, not yet over
    assert harness.store.get("u", None, "global:open-sessions") == 1
    harness.advance_watermark(20.0)
    assert harness.store.get("u", None, "global:open-sessions") == 0
