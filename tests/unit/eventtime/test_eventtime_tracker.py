"""WatermarkTracker: timestamps per record, failures as values, watermarks and idleness."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

import pytest

from streamflow.eventtime import (
    InvalidTimestampError,
    WatermarkGenerator,
    WatermarkOutput,
    WatermarkStatus,
    WatermarkStrategy,
    WatermarkTracker,
)

ACTIVE, IDLE = WatermarkStatus.ACTIVE, WatermarkStatus.IDLE
BY_TS = WatermarkStrategy.for_bounded_out_of_orderness(5.0).with_timestamp_assigner(lambda e: e["ts"])


def test_out_of_order_records_move_the_watermark_by_the_newest_only() -> None:
    tracker = WatermarkTracker(BY_TS, now=0.0)
    stamped = tracker.stamp([{"ts": 10}, {"ts": 30.5}, {"ts": 20.0}], None, now=1.0)
    assert stamped.timestamps == [10.0, 30.5, 20.0]
    assert all(type(t) is float for t in stamped.timestamps)
    assert stamped.failures == [] and stamped.before == () and stamped.after == ()
    assert tracker.on_periodic_emit(now=1.2) == (30.5 - 5.0 - 1e-6,)
    # an older record and another periodic emit: nothing new
    tracker.stamp([{"ts": 12.0}], None, now=1.3)
    assert tracker.on_periodic_emit(now=1.4) == ()
    assert tracker.watermark == 30.5 - 5.0 - 1e-6


def test_without_an_assigner_the_records_own_timestamps_are_used() -> None:
    tracker = WatermarkTracker(WatermarkStrategy.for_monotonous_timestamps(), now=0.0)
    stamped = tracker.stamp(["a", "b", "c"], [5.0, 6.0, None], now=0.0)
    assert stamped.timestamps == [5.0, 6.0]
    [failure] = stamped.failures
    assert failure.index == 2
    assert isinstance(failure.error, InvalidTimestampError)
    assert "no timestamp of its own" in str(failure.error) and "with_timestamp_assigner" in str(failure.error)


class WithKafkaTime:
    """A TimestampAssigner that prefers the event's field and falls back on the record's."""

    def extract_timestamp(self, event: Any, record_timestamp: float | None) -> float:
        return event.get("ts", record_timestamp)


def test_a_timestamp_assigner_object_sees_the_records_own_timestamp() -> None:
    tracker = WatermarkTracker(WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(WithKafkaTime()), 0.0)
    stamped = tracker.stamp([{"ts": 3.0}, {}], [100.0, 200.0], now=0.0)
    assert stamped.timestamps == [3.0, 200.0]


def _raises(event: Any) -> float:
    raise KeyError("ts")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "the timestamp is nan: timestamps must be finite"),
        (float("inf"), "the timestamp is inf"),
        (-math.inf, "the timestamp is -inf"),
        ("12.5", "the timestamp is '12.5' of type str: timestamps must be float seconds"),
        (None, "the timestamp is None of type NoneType"),
        (True, "the timestamp is True of type bool"),
        (datetime(2024, 1, 1, tzinfo=timezone.utc), r"of type datetime \(use its .timestamp\(\)\)"),
    ],
)
def test_a_bad_timestamp_is_a_failure_value_naming_it(value: Any, message: str) -> None:
    tracker = WatermarkTracker(BY_TS, now=0.0)
    stamped = tracker.stamp([{"ts": 1.0}, {"ts": value}, {"ts": 2.0}], None, now=0.0)
    assert stamped.timestamps == [1.0, 2.0]
    [failure] = stamped.failures
    assert failure.index == 1
    assert isinstance(failure.error, InvalidTimestampError)
    assert re.search(message, str(failure.error)), str(failure.error)


@pytest.mark.parametrize(
    ("own", "kept", "failed"),
    [
        ([1.0, 3.0, 2.0], [1.0, 3.0, 2.0], []),  # all finite floats: the batch at once
        ([1.0, float("nan"), 2.0], [1.0, 2.0], [1]),
        ([math.inf, 1.0], [1.0], [0]),
        ([1.0, -math.inf, math.inf], [1.0], [1, 2]),  # (their sum is nan)
        ([1.0, 7, None], [1.0, 7.0], [2]),  # an int becomes a float; None has no timestamp
        ([1e308, 1e308, 2.0], [1e308, 1e308, 2.0], []),  # finite, though their sum is not
    ],
)
def test_the_records_own_timestamps_are_checked_one_by_one_when_any_is_not_a_finite_float(
    own: list[Any], kept: list[float], failed: list[int]
) -> None:
    tracker = WatermarkTracker(WatermarkStrategy.for_bounded_out_of_orderness(1.0), now=0.0)
    stamped = tracker.stamp(["r"] * len(own), own, now=0.0)
    assert stamped.timestamps == kept
    assert all(type(t) is float for t in stamped.timestamps)
    assert [f.index for f in stamped.failures] == failed
    assert all(isinstance(f.error, InvalidTimestampError) for f in stamped.failures)
    assert tracker.on_periodic_emit(now=1.0) == (pytest.approx(max(kept) - 1.0 - 1e-6),)


def test_an_assigner_that_raises_gives_its_own_exception_back() -> None:
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(_raises)
    tracker = WatermarkTracker(strategy, now=0.0)
    stamped = tracker.stamp(["x", "y"], None, now=0.0)
    assert stamped.timestamps == []
    assert [f.index for f in stamped.failures] == [0, 1]
    assert all(isinstance(f.error, KeyError) for f in stamped.failures)
    assert tracker.on_periodic_emit(now=1.0) == ()  # failed records move nothing


def test_other_real_numbers_become_floats() -> None:
    tracker = WatermarkTracker(BY_TS, now=0.0)
    assert tracker.stamp([{"ts": Fraction(3, 2)}, {"ts": 7}], None, 0.0).timestamps == [1.5, 7.0]


def test_idle_after_the_timeout_without_records_and_active_again_with_the_next_record() -> None:
    tracker = WatermarkTracker(BY_TS.with_idleness(10.0), now=0.0)
    tracker.stamp([{"ts": 100.0}], None, now=1.0)
    assert tracker.on_periodic_emit(now=5.0) == (100.0 - 5.0 - 1e-6,)
    assert tracker.on_periodic_emit(now=10.9) == ()
    assert tracker.on_periodic_emit(now=11.0) == (IDLE,)
    assert tracker.status is IDLE
    assert tracker.on_periodic_emit(now=30.0) == ()  # idle: stays idle, no watermark
    stamped = tracker.stamp([{"ts": 120.0}], None, now=31.0)
    assert stamped.before == (ACTIVE,)  # forwarded before the records
    assert tracker.status is ACTIVE
    assert tracker.on_periodic_emit(now=31.2) == (120.0 - 5.0 - 1e-6,)
    assert tracker.on_periodic_emit(now=40.9) == ()
    assert tracker.on_periodic_emit(now=41.0) == (IDLE,)


def test_an_input_that_never_gets_a_record_turns_idle_after_the_timeout_from_its_start() -> None:
    tracker = WatermarkTracker(BY_TS.with_idleness(3.0), now=100.0)
    assert tracker.on_periodic_emit(now=102.9) == ()
    assert tracker.on_periodic_emit(now=103.0) == (IDLE,)


def test_without_idleness_an_input_never_turns_idle() -> None:
    tracker = WatermarkTracker(BY_TS, now=0.0)
    assert tracker.on_periodic_emit(now=1e9) == ()
    assert tracker.status is ACTIVE


class Punctuated(WatermarkGenerator):
    """Watermark = the timestamp of each 'flush' record; ignores lower ones by contract."""

    def on_event(self, event: Any, timestamp: float, output: WatermarkOutput) -> None:
        if event["flush"]:
            output.emit_watermark(timestamp)


def test_watermarks_emitted_on_records_follow_the_batch_and_never_go_back() -> None:
    strategy = WatermarkStrategy.for_generator(Punctuated).with_timestamp_assigner(lambda e: e["ts"])
    tracker = WatermarkTracker(strategy, now=0.0)
    batch = [{"ts": 1.0, "flush": False}, {"ts": 5.0, "flush": True}, {"ts": 3.0, "flush": True}, {"ts": 9.0, "flush": True}]
    stamped = tracker.stamp(batch, None, now=0.0)
    assert stamped.after == (5.0, 9.0)  # 3.0 would go back: dropped
    assert tracker.watermark == 9.0


class SelfIdling(WatermarkGenerator):
    """Marks itself idle periodically until a record says otherwise; emits on records."""

    def __init__(self) -> None:
        self.seen = False

    def on_event(self, event: Any, timestamp: float, output: WatermarkOutput) -> None:
        self.seen = True
        output.emit_watermark(timestamp)

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        if not self.seen:
            output.mark_idle()
        self.seen = False


def test_a_generator_may_mark_idle_itself_and_a_watermark_makes_it_active() -> None:
    strategy = WatermarkStrategy.for_generator(SelfIdling).with_timestamp_assigner(lambda e: e)
    tracker = WatermarkTracker(strategy, now=0.0)
    assert tracker.on_periodic_emit(now=1.0) == (IDLE,)
    stamped = tracker.stamp([4.0], None, now=2.0)
    assert stamped.before == (ACTIVE,)
    assert stamped.after == (4.0,)
    assert tracker.on_periodic_emit(now=3.0) == ()  # it saw a record since the last emit
    assert tracker.on_periodic_emit(now=4.0) == (IDLE,)
    tracker.emit_watermark(6.0)  # an emit while idle reactivates first
    tracker.mark_active()  # already active: nothing more
    assert tracker.on_periodic_emit(now=4.1) == (ACTIVE, 6.0, IDLE)


def test_an_empty_batch_changes_nothing() -> None:
    tracker = WatermarkTracker(BY_TS.with_idleness(1.0), now=0.0)
    assert tracker.on_periodic_emit(now=2.0) == (IDLE,)
    stamped = tracker.stamp([], None, now=3.0)
    assert (stamped.timestamps, stamped.failures, stamped.before, stamped.after) == ([], [], (), ())
    assert tracker.status is IDLE
