"""TimeWindow through pickle (checkpoints pickle every open window): exact round trip,
and windows pickled by the earlier form (a slots dataclass's state) still load; the
fast paths' constructor from microseconds builds the window the checked one does."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from streamflow.eventtime.windows import GLOBAL_WINDOW, TimeWindow

# pickle.dumps(TimeWindow(60.0, 120.0), protocol=5) before TimeWindow had __reduce__
EARLIER_FORM = (
    b"\x80\x05\x95\\\x00\x00\x00\x00\x00\x00\x00\x8c\x1cstreamflow.eventtime.windows\x94\x8c\nTimeWindow\x94\x93"
    b"\x94)\x81\x94]\x94(G@N\x00\x00\x00\x00\x00\x00G@^\x00\x00\x00\x00\x00\x00G@]\xff\xff\xfb\xceB\x18\x8a\x08\x89a"
    b"\x94\xce\x98$\x8aMeb."
)


def test_a_window_pickles_to_an_equal_window_with_the_same_derived_fields() -> None:
    window = TimeWindow(60.0, 120.0)
    again = pickle.loads(pickle.dumps({window: [1, 2]}, protocol=5))
    (restored,) = again
    assert type(restored) is TimeWindow and restored == window and hash(restored) == hash(window)
    assert (restored.start, restored.end, restored.max_timestamp) == (60.0, 120.0, window.max_timestamp)
    assert again[window] == [1, 2]


def test_a_window_pickled_in_the_earlier_form_still_loads() -> None:
    restored = pickle.loads(EARLIER_FORM)
    assert type(restored) is TimeWindow and restored == TimeWindow(60.0, 120.0)
    assert restored.max_timestamp == TimeWindow(60.0, 120.0).max_timestamp
    assert hash(restored) == hash(TimeWindow(60.0, 120.0))


@given(st.integers(-(2**50), 2**50), st.integers(1, 10**12))
def test_a_window_from_microseconds_is_the_window_from_seconds(start: int, length: int) -> None:
    fast, checked = TimeWindow.of_micros(start, start + length), TimeWindow(start / 10**6, (start + length) / 10**6)
    assert type(fast) is TimeWindow and fast == checked and hash(fast) == hash(checked)
    assert (fast.start, fast.end, fast.max_timestamp) == (checked.start, checked.end, checked.max_timestamp)
    assert type(fast.start) is float and type(fast.max_timestamp) is float


def test_a_window_pickled_when_it_lived_in_windowing_still_loads() -> None:
    """Checkpoints written before the window values moved to eventtime name the old module."""
    window = TimeWindow(0.0, 60.0)
    old = pickle.dumps(window).replace(b"streamflow.eventtime.windows", b"streamflow.windowing.windows")
    assert b"streamflow.windowing.windows" in old
    restored = pickle.loads(old)
    assert type(restored) is TimeWindow and restored == window
    assert pickle.loads(pickle.dumps(GLOBAL_WINDOW).replace(b".eventtime.", b".windowing.")) == GLOBAL_WINDOW
