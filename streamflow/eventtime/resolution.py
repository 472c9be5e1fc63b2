"""Event time is float seconds since the epoch, resolved to the microsecond.

Float seconds are what users hold (``time.time()``, ``datetime.timestamp()``), but
window boundaries computed with float arithmetic drift: ``0.3 % 0.1`` is
``0.09999999999999998``, so a record at 0.3 would fall into the window [0.2, 0.3) of
size 0.1. Every boundary computation therefore converts to integer microseconds
(:func:`to_micros`, rounding to the nearest), does integer arithmetic, and converts back
(:func:`from_micros`, the float nearest the exact decimal). Two boundaries computed
from the same microsecond count are the same float, so windows compare and hash
exactly; a timestamp between two microseconds counts as the nearer one.

Doubles hold every microsecond exactly up to 2**53 us (about the year 2255), far beyond
the epoch seconds streams carry.

:data:`RESOLUTION` is also the step that makes a watermark exclusive of the last
timestamp seen (a watermark ``t`` says: no more records with timestamp <= ``t``), as
Flink subtracts one millisecond.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MICROS_PER_SECOND", "RESOLUTION", "from_micros", "to_micros"]

MICROS_PER_SECOND: Final = 1_000_000
RESOLUTION: Final = 1e-6


def to_micros(seconds: float) -> int:
    """``seconds`` as whole microseconds (nearest)."""
    return round(seconds * MICROS_PER_SECOND)


def from_micros(micros: int) -> float:
    """The float seconds for ``micros`` whole microseconds."""
    return micros / MICROS_PER_SECOND
