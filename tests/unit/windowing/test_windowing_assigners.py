"""Windows and assigners: hand-computed windows, exact float boundaries, properties."""

from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.errors import ConfigError
from streamflow.eventtime import InvalidTimestampError
from streamflow.windowing import (
    GLOBAL_WINDOW,
    EventTimeSessionWindows,
    GlobalWindows,
    ProcessingTimeSessionWindows,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
)


class Now:
    def __init__(self, now: float) -> None:
        self.now = now

    def current_processing_time(self) -> float:
        return self.now


NO_CLOCK = Now(0.0)


def windows(assigner: Any, timestamp: float | None, element: Any = None, ctx: Any = NO_CLOCK) -> list[tuple[float, float]]:
    return [(w.start, w.end) for w in assigner.assign_windows(element, timestamp, ctx)]


def test_a_time_window_ends_a_microsecond_before_its_end_and_is_a_value() -> None:
    window = TimeWindow(60.0, 120.0)
    assert window.max_timestamp == 119.999999
    assert window == TimeWindow(60, 120) and hash(window) == hash(TimeWindow(60.0, 120.0))
    assert pickle.loads(pickle.dumps(window)) == window
    assert pickle.loads(pickle.dumps(window)).max_timestamp == 119.999999
    assert TimeWindow.restore(window.snapshot()) == window
    assert TimeWindow(0, 10).intersects(TimeWindow(10, 20))  # touching sessions merge
    assert not TimeWindow(0, 10).intersects(TimeWindow(10.000001, 20))
    assert TimeWindow(5, 10).cover(TimeWindow(0, 7)) == TimeWindow(0, 10)
    assert GLOBAL_WINDOW.max_timestamp == float("inf")
    assert pickle.loads(pickle.dumps(GLOBAL_WINDOW)) == GLOBAL_WINDOW


def test_tumbling_windows_with_an_offset() -> None:
    assigner = TumblingEventTimeWindows.of(60.0, offset=15.0)
    assert windows(assigner, 14.9) == [(-45.0, 15.0)]
    assert windows(assigner, 15.0) == [(15.0, 75.0)]
    assert windows(assigner, 74.999999) == [(15.0, 75.0)]
    assert windows(assigner, 75.0) == [(75.0, 135.0)]
    negative = TumblingEventTimeWindows.of(timedelta(minutes=1), offset=timedelta(seconds=-15))
    assert windows(negative, 0.0) == [(-15.0, 45.0)]
    assert windows(negative, 45.0) == [(45.0, 105.0)]


def test_boundaries_are_exact_where_float_arithmetic_is_not() -> None:
    assert 0.3 % 0.1 != 0.0  # what a float computation would get wrong
    assigner = TumblingEventTimeWindows.of(0.1)
    [window] = assigner.assign_windows(None, 0.3, NO_CLOCK)
    assert (window.start, window.end) == (0.3, 0.4)
    assert window.max_timestamp == 0.399999
    epoch = 1_700_000_000.123456
    [minute] = TumblingEventTimeWindows.of(60).assign_windows(None, epoch, NO_CLOCK)
    assert (minute.start, minute.end) == (1_699_999_980.0, 1_700_000_040.0)


def test_sliding_windows_overlap_and_shift_by_the_offset() -> None:
    assert windows(SlidingEventTimeWindows.of(30, 10), 25.0) == [(20.0, 50.0), (10.0, 40.0), (0.0, 30.0)]
    assert windows(SlidingEventTimeWindows.of(30, 10), 30.0) == [(30.0, 60.0), (20.0, 50.0), (10.0, 40.0)]
    assert windows(SlidingEventTimeWindows.of(30, 10, offset=5), 25.0) == [(25.0, 55.0), (15.0, 45.0), (5.0, 35.0)]
    sampling = SlidingEventTimeWindows.of(10, 30)  # slide > size: gaps between windows
    assert windows(sampling, 5.0) == [(0.0, 10.0)]
    assert windows(sampling, 15.0) == []


def test_session_windows_open_a_gap_after_each_element() -> None:
    assert windows(EventTimeSessionWindows.with_gap(5), 3.0) == [(3.0, 8.0)]
    dynamic = EventTimeSessionWindows.with_dynamic_gap(lambda e: e["gap"])
    assert windows(dynamic, 3.0, {"gap": 0.5}) == [(3.0, 3.5)]
    assert windows(dynamic, 3.0, {"gap": timedelta(seconds=2)}) == [(3.0, 5.0)]
    for bad in (0, -1, float("nan"), "5", None):
        with pytest.raises(ValueError, match="the gap function must return seconds > 0"):
            dynamic.assign_windows({"gap": bad}, 3.0, NO_CLOCK)


def test_processing_time_assigners_use_the_clock_not_the_timestamp() -> None:
    at = Now(125.0)
    assert windows(TumblingProcessingTimeWindows.of(60), 1.0, ctx=at) == [(120.0, 180.0)]
    assert windows(TumblingProcessingTimeWindows.of(60), None, ctx=at) == [(120.0, 180.0)]
    assert windows(SlidingProcessingTimeWindows.of(120, 60), None, ctx=at) == [(120.0, 240.0), (60.0, 180.0)]
    assert windows(ProcessingTimeSessionWindows.with_gap(10), None, ctx=at) == [(125.0, 135.0)]


def test_event_time_assigners_need_a_timestamp() -> None:
    with pytest.raises(InvalidTimestampError, match=r"TumblingEventTimeWindows\(size=60.0, offset=0.0\) places elements by event time, but this record has no timestamp"):
        TumblingEventTimeWindows.of(60).assign_windows("x", None, NO_CLOCK)


def test_global_windows_hold_everything_in_one_window() -> None:
    assert GlobalWindows.create().assign_windows("x", None, NO_CLOCK) == (GLOBAL_WINDOW,)


def test_assigners_are_equal_by_kind_and_parameters() -> None:
    assert TumblingEventTimeWindows.of(60) == TumblingEventTimeWindows.of(timedelta(minutes=1))
    assert TumblingEventTimeWindows.of(60) != TumblingProcessingTimeWindows.of(60)
    assert pickle.loads(pickle.dumps(SlidingEventTimeWindows.of(30, 10))) == SlidingEventTimeWindows.of(30, 10)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: TumblingEventTimeWindows.of(0), r"TumblingEventTimeWindows.of\(size\) must be finite seconds > 0, got 0"),
        (lambda: TumblingEventTimeWindows.of(-60), "got -60"),
        (lambda: TumblingEventTimeWindows.of(float("inf")), "got inf"),
        (lambda: TumblingEventTimeWindows.of("60"), "must be seconds"),
        (lambda: TumblingEventTimeWindows.of(1e-9), "at least a microsecond"),
        (lambda: TumblingEventTimeWindows.of(60, 60), r"TumblingEventTimeWindows.of\(size, offset\) must lie within the size"),
        (lambda: TumblingProcessingTimeWindows.of(60, -75), "must lie within the size"),
        (lambda: SlidingEventTimeWindows.of(60, 0), r"SlidingEventTimeWindows.of\(size, slide\) must be finite seconds > 0"),
        (lambda: SlidingEventTimeWindows.of(60, 10, 10), "must lie within the slide"),
        (lambda: EventTimeSessionWindows.with_gap(0), r"EventTimeSessionWindows.with_gap\(gap\) must be finite seconds > 0"),
        (lambda: ProcessingTimeSessionWindows.with_gap(-1), "got -1"),
        (lambda: EventTimeSessionWindows.with_dynamic_gap(30), r"with_dynamic_gap\(fn\) needs fn\(element\) -> seconds"),
    ],
)
def test_bad_assigner_parameters_are_refused_naming_the_assigner(make: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


@settings(max_examples=300, deadline=None)
@given(
    slide_us=st.integers(1, 10_000_000),
    multiple=st.integers(1, 12),
    offset_fraction=st.floats(-0.99, 0.99),
    timestamp=st.floats(-1e9, 3e9, allow_nan=False),
)
def test_property_every_timestamp_falls_in_exactly_size_over_slide_sliding_windows(
    slide_us: int, multiple: int, offset_fraction: float, timestamp: float
) -> None:
    slide = slide_us / 1e6
    offset = int(offset_fraction * slide_us) / 1e6
    assigner = SlidingEventTimeWindows.of(slide * multiple, slide, offset)
    found = assigner.assign_windows(None, timestamp, NO_CLOCK)
    assert len(found) == multiple
    at = round(timestamp * 1e6)
    assert len({w.start for w in found}) == multiple
    for window in found:
        start, end = round(window.start * 1e6), round(window.end * 1e6)
        assert start <= at < end
        assert end - start == slide_us * multiple
        assert (start - round(offset * 1e6)) % slide_us == 0


@settings(max_examples=300, deadline=None)
@given(size_us=st.integers(1, 10**10), timestamp=st.floats(-1e9, 3e9, allow_nan=False))
def test_property_tumbling_windows_hold_their_timestamp(size_us: int, timestamp: float) -> None:
    [window] = TumblingEventTimeWindows.of(size_us / 1e6).assign_windows(None, timestamp, NO_CLOCK)
    at = round(timestamp * 1e6)
    assert round(window.start * 1e6) <= at < round(window.end * 1e6)
    assert round(window.start * 1e6) % size_us == 0
