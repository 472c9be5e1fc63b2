"""Durations given by users (float seconds or ``timedelta``), checked at build time.

Event-time configuration (bounds, gaps, window sizes, lateness, intervals) must be a
finite number of seconds; anything else is a :class:`ConfigError` that names the setting
and says what to pass instead.
"""

from __future__ import annotations

import math
from datetime import timedelta

from streamflow.errors import ConfigError

__all__ = ["non_negative_seconds", "positive_seconds"]


def _finite_seconds(value: object, what: str, fix: str, bound: str) -> float:
    if isinstance(value, timedelta):
        number = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ConfigError(f"{what} must be seconds (a float or a timedelta), got {value!r}; {fix}")
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be finite seconds {bound}, got {value!r}; {fix}")
    return number


def positive_seconds(value: object, what: str, fix: str) -> float:
    """``value`` in seconds, refused unless > 0."""
    number = _finite_seconds(value, what, fix, "> 0")
    if number <= 0:
        raise ConfigError(f"{what} must be finite seconds > 0, got {value!r}; {fix}")
    return number


def non_negative_seconds(value: object, what: str, fix: str) -> float:
    """``value`` in seconds, refused when < 0."""
    number = _finite_seconds(value, what, fix, ">= 0")
    if number < 0:
        raise ConfigError(f"{what} must be finite seconds >= 0, got {value!r}; {fix}")
    return number
