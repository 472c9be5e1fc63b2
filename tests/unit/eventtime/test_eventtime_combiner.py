"""WatermarkCombiner: minimum over active inputs with Flink's WatermarkStatus rules."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.eventtime import SplitWatermarks, WatermarkCombiner, WatermarkStatus, WatermarkStrategy

ACTIVE, IDLE = WatermarkStatus.ACTIVE, WatermarkStatus.IDLE


def test_the_combined_watermark_is_the_minimum_and_only_moves_forward() -> None:
    valve = WatermarkCombiner.for_channels(2)
    assert valve.on_watermark(0, 10.0) == ()  # channel 1 still at -inf
    assert valve.on_watermark(1, 5.0) == (5.0,)
    assert valve.on_watermark(1, 12.0) == (10.0,)
    assert valve.on_watermark(1, 11.0) == ()  # lower than channel 1's own: ignored
    assert valve.on_watermark(0, 20.0) == (12.0,)
    assert valve.watermark == 12.0


def test_an_idle_input_stops_holding_back_the_others() -> None:
    valve = WatermarkCombiner.for_channels(3)
    valve.on_watermark(0, 10.0)
    valve.on_watermark(1, 20.0)
    valve.on_watermark(2, 30.0)
    assert valve.watermark == 10.0
    assert valve.on_status(0, IDLE) == (20.0,)
    assert valve.on_status(0, IDLE) == ()  # repeated: nothing
    assert valve.on_watermark(0, 50.0) == ()  # from an idle input: ignored
    assert valve.on_watermark(1, 40.0) == (30.0,)


def test_all_idle_flushes_to_the_highest_watermark_and_goes_idle_downstream() -> None:
    valve = WatermarkCombiner.for_channels(2)
    valve.on_watermark(0, 10.0)
    valve.on_watermark(1, 5.0)
    assert valve.on_status(0, IDLE) == ()  # channel 0 was not the minimum
    assert valve.on_status(1, IDLE) == (10.0, IDLE)  # the last one: flush, then IDLE
    assert valve.status is IDLE
    assert valve.on_watermark(1, 7.0) == ()  # idle input


def test_reactivation_announces_active_and_never_moves_the_watermark_back() -> None:
    valve = WatermarkCombiner.for_channels(2)
    valve.on_watermark(0, 10.0)
    valve.on_watermark(1, 20.0)
    valve.on_status(0, IDLE)  # -> 20
    valve.on_status(1, IDLE)  # -> IDLE
    assert valve.watermark == 20.0
    assert valve.on_status(0, ACTIVE) == (ACTIVE,)  # channel 0 at 10: not aligned
    assert valve.on_status(0, ACTIVE) == ()
    assert valve.on_watermark(0, 15.0) == ()  # behind the combined 20: no effect
    assert valve.on_watermark(0, 25.0) == (25.0,)  # caught up: counts again
    assert valve.on_status(1, ACTIVE) == ()  # valve already active; channel 1 at 20 < 25: unaligned
    assert valve.on_watermark(0, 40.0) == (40.0,)  # channel 1 not aligned, does not hold back
    assert valve.on_watermark(1, 45.0) == ()  # now aligned at 45, the minimum stays 40
    assert valve.on_watermark(0, 50.0) == (45.0,)


def test_an_unaligned_input_going_idle_last_does_not_flush() -> None:
    valve = WatermarkCombiner.for_channels(2)
    valve.on_watermark(0, 10.0)
    valve.on_watermark(1, 20.0)
    valve.on_status(0, IDLE)
    valve.on_status(1, IDLE)  # -> 20, IDLE
    valve.on_status(0, ACTIVE)  # at 10 < 20: unaligned
    assert valve.on_status(0, IDLE) == (IDLE,)


def test_splits_hold_when_all_idle_and_no_split_means_idle() -> None:
    splits = WatermarkCombiner.for_splits()
    assert splits.status is IDLE  # a subtask without splits holds nothing back
    assert splits.add_input("p0") == (ACTIVE,)
    assert splits.add_input("p0") == ()
    splits.add_input("p1")
    splits.on_watermark("p0", 10.0)
    assert splits.on_watermark("p1", 5.0) == (5.0,)
    splits.on_status("p0", IDLE)
    assert splits.on_status("p1", IDLE) == (IDLE,)  # no flush over splits
    assert splits.watermark == 5.0


def test_a_new_split_holds_the_watermark_until_it_catches_up() -> None:
    splits = WatermarkCombiner.for_splits(["p0"])
    assert splits.on_watermark("p0", 100.0) == (100.0,)
    splits.add_input("p1")
    assert splits.on_watermark("p0", 200.0) == ()  # p1 at -inf holds it
    assert splits.on_watermark("p1", 50.0) == ()  # behind: the watermark stays at 100
    assert splits.on_watermark("p1", 150.0) == (150.0,)


def test_removing_inputs_releases_the_watermark_and_the_last_one_makes_it_idle() -> None:
    splits = WatermarkCombiner.for_splits(["a", "b"])
    splits.on_watermark("a", 3.0)
    splits.on_watermark("b", 8.0)
    assert splits.remove_input("a") == (8.0,)
    assert splits.remove_input("a") == ()
    assert splits.remove_input("b") == (IDLE,)


@st.composite
def operations(draw: Any) -> list[tuple[str, int, float]]:
    count = draw(st.integers(min_value=1, max_value=4))
    ops = st.one_of(
        st.tuples(st.just("wm"), st.integers(0, count - 1), st.floats(-100, 100, allow_nan=False)),
        st.tuples(st.just("idle"), st.integers(0, count - 1), st.just(0.0)),
        st.tuples(st.just("active"), st.integers(0, count - 1), st.just(0.0)),
    )
    return [("size", count, 0.0)] + draw(st.lists(ops, max_size=40))


@settings(max_examples=300, deadline=None)
@given(operations())
def test_property_never_backwards_idle_iff_all_inputs_idle_never_beyond_the_inputs(ops: list[tuple[str, int, float]]) -> None:
    (_, count, _), *steps = ops
    valve = WatermarkCombiner.for_channels(count)
    watermarks = [float("-inf")] * count
    active = [True] * count
    forwarded: list[float] = []
    for op, channel, value in steps:
        before = valve.watermark
        if op == "wm":
            out = valve.on_watermark(channel, value)
            if active[channel]:
                watermarks[channel] = max(watermarks[channel], value)
        else:
            status = IDLE if op == "idle" else ACTIVE
            out = valve.on_status(channel, status)
            active[channel] = op == "active"
        forwarded.extend(e for e in out if isinstance(e, float))
        assert valve.watermark >= before
        assert (valve.status is IDLE) == (not any(active))
        assert valve.watermark == float("-inf") or valve.watermark <= max(watermarks)
    assert forwarded == sorted(set(forwarded))  # strictly increasing


def test_split_watermarks_track_each_split_and_combine_them() -> None:
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_idleness(10.0)
    source = SplitWatermarks(strategy)
    assert source.status is IDLE
    assert source.add_split("p0", now=0.0) == (ACTIVE,)
    source.add_split("p1", now=0.0)
    source.stamp("p0", ["a"], [100.0], now=1.0)
    source.stamp("p1", ["b"], [50.0], now=1.0)
    assert source.on_periodic_emit(now=1.2) == (50.0 - 1e-6,)
    source.stamp("p0", ["c"], [200.0], now=9.0)
    # p1 had no record for 10 s: idle, and p0 alone drives event time
    assert source.on_periodic_emit(now=11.0) == (200.0 - 1e-6,)
    assert source.watermark == 200.0 - 1e-6
    stamped = source.stamp("p1", ["d"], [60.0], now=12.0)
    assert stamped.before == ()  # the subtask stayed active: nothing to announce
    assert stamped.timestamps == [60.0]
    assert source.on_periodic_emit(now=19.5) == ()  # p1 is behind: no effect, no step back
    assert source.on_periodic_emit(now=22.0) == (IDLE,)  # both silent for 10 s
    again = source.stamp("p2", ["e"], [300.0], now=23.0)  # a new split, added on its first batch
    assert again.before == (ACTIVE,)
    assert source.status is ACTIVE
    assert source.finish_split("p2") == (IDLE,)
