"""The tumbling fast path finds a record's window by comparing its timestamp with the
window's float bounds: those bounds must hold exactly the timestamps whose microsecond
(``round(t * 10**6)``, as every window computation rounds) falls in the window."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from streamflow.eventtime.resolution import to_micros
from streamflow.runtime.operators.window_fast import _bounds_of

SIZE = 60_000_000  # one minute, in µs


@given(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False))
def test_a_timestamp_is_within_the_bounds_exactly_when_its_microsecond_is_in_the_window(timestamp: float) -> None:
    at = to_micros(timestamp)
    start = at - at % SIZE
    low, high = _bounds_of(start, start + SIZE)
    assert low <= timestamp < high
    for neighbour in (math.nextafter(low, -math.inf), math.nextafter(high, -math.inf), high):
        assert (low <= neighbour < high) == (start <= to_micros(neighbour) < start + SIZE)


@given(st.integers(min_value=-10**15, max_value=4 * 10**15))
def test_the_bounds_are_the_first_floats_of_their_microsecond(micros: int) -> None:
    low, _ = _bounds_of(micros, micros + 1)
    assert to_micros(low) >= micros and to_micros(math.nextafter(low, -math.inf)) < micros
