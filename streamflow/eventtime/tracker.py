"""Event time of one input: timestamps for its records, its watermark and its status.

A :class:`WatermarkTracker` serves one source split, or one subtask of
``assign_timestamps_and_watermarks``. It is pure: the runtime hands it the records and
the processing time, and forwards what it answers. Calls, in any order:

1. ``stamp(records, record_timestamps, now)`` for each batch, before the batch goes
   downstream. It returns a :class:`Stamped`: the timestamp of each good record, the
   records whose timestamp could not be had (:class:`TimestampFailure`, for the
   operator's error policy, never raised from here), what to forward before the batch
   (``ACTIVE`` when the input was idle) and after it (watermarks a punctuated generator
   emitted on these records).
2. ``on_periodic_emit(now)`` every ``strategy.emit_interval`` seconds: the periodic
   watermark, or ``IDLE`` once the input had no records for the idle timeout.

Watermarks never go back: an emitted value not above the current one is dropped. A
watermark emitted on a batch follows the whole batch (Flink would put it after the
record that caused it): later records of the batch are never made late by it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Sequence

from streamflow.eventtime.generators import BoundedOutOfOrdernessWatermarks
from streamflow.eventtime.status import NO_EMISSIONS, Emission, Emissions, WatermarkStatus
from streamflow.eventtime.strategy import TimestampAssigner, WatermarkStrategy

__all__ = ["InvalidTimestampError", "Stamped", "TimestampFailure", "WatermarkTracker"]

_NEG_INF: Final = float("-inf")
_INF: Final = float("inf")
_ACTIVE_FIRST: Final[Emissions] = (WatermarkStatus.ACTIVE,)


class InvalidTimestampError(ValueError):
    """A record's timestamp is not a finite number of seconds (or there is none)."""


@dataclass(frozen=True, slots=True)
class TimestampFailure:
    """Record ``index`` of the batch got no timestamp; ``error`` says why: what the
    assigner raised, or an :class:`InvalidTimestampError` naming the bad value."""

    index: int
    error: Exception


@dataclass(frozen=True, slots=True)
class Stamped:
    """What :meth:`WatermarkTracker.stamp` found for a batch.

    ``timestamps`` has one entry per record not in ``failures``, in batch order; the
    runtime drops the failed records (and their positions) from the batch.
    """

    timestamps: list[float]
    failures: list[TimestampFailure]
    before: Emissions
    after: Emissions


def _all_finite_floats(values: Sequence[float | None]) -> bool:
    """Whether every value is a finite float: one type pass and one sum, both in C (a NaN
    or an infinity makes the sum non-finite; a sum that overflows only sends the batch
    the per-record way, which checks each value)."""
    return set(map(type, values)) == {float} and math.isfinite(sum(values))  # type: ignore[arg-type]


def _checked(value: Any) -> float:
    """``value`` as finite float seconds, or InvalidTimestampError saying what it is."""
    kind = type(value)
    if kind is float or kind is int:
        number = float(value)
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = " (use its .timestamp())" if isinstance(value, date) else ""
        raise InvalidTimestampError(
            f"the timestamp is {value!r} of type {kind.__name__}{hint}: timestamps must be float seconds since the epoch"
        )
    else:
        number = float(value)
    if number != number or number == _INF or number == _NEG_INF:
        raise InvalidTimestampError(f"the timestamp is {value!r}: timestamps must be finite float seconds")
    return number


class WatermarkTracker:
    """Timestamps, watermark and idle status of one input (see the module docstring).

    It is also the :class:`~streamflow.eventtime.generators.WatermarkOutput` its
    generator writes to.
    """

    __slots__ = (
        "strategy",
        "watermark",
        "status",
        "_generator",
        "_bounded",
        "_extract",
        "_extract_with_record_ts",
        "_idle_timeout",
        "_last_record_at",
        "_pending",
    )

    def __init__(self, strategy: WatermarkStrategy, now: float) -> None:
        self.strategy = strategy
        self.watermark = _NEG_INF
        self.status = WatermarkStatus.ACTIVE
        self._generator = strategy.create_generator()
        self._bounded: BoundedOutOfOrdernessWatermarks | None = (
            self._generator if type(self._generator) is BoundedOutOfOrdernessWatermarks else None
        )
        assigner = strategy.timestamp_assigner
        self._extract: Any = None
        self._extract_with_record_ts: Any = None
        if isinstance(assigner, TimestampAssigner):
            self._extract_with_record_ts = assigner.extract_timestamp
        elif assigner is not None:
            self._extract = assigner
        self._idle_timeout = strategy.idle_timeout
        self._last_record_at = now
        self._pending: list[Emission] = []

    # -- records ---------------------------------------------------------------------

    def stamp(
        self, records: Sequence[Any], record_timestamps: Sequence[float | None] | None, now: float
    ) -> Stamped:
        """Timestamps of a batch's records; feeds them to the generator."""
        if not records:
            return Stamped([], [], NO_EMISSIONS, NO_EMISSIONS)
        before = NO_EMISSIONS
        if self.status is WatermarkStatus.IDLE:
            self.status = WatermarkStatus.ACTIVE
            before = _ACTIVE_FIRST
        self._last_record_at = now
        bounded = self._bounded
        if (
            bounded is not None and record_timestamps is not None and self._extract is None
            and self._extract_with_record_ts is None and len(record_timestamps) == len(records)
            and _all_finite_floats(record_timestamps)
        ):  # the records' own timestamps, all valid: checked in C, no loop
            valid: list[float] = list(record_timestamps)  # type: ignore[arg-type]  # all floats
            bounded.observe(max(valid))
            return Stamped(valid, [], before, self._take())
        timestamps: list[float] = []
        failures: list[TimestampFailure] = []
        append = timestamps.append
        extract, extract2 = self._extract, self._extract_with_record_ts
        on_event = None if bounded is not None else self._generator.on_event
        for index, record in enumerate(records):
            try:
                if extract is not None:
                    raw = extract(record)
                elif extract2 is not None:
                    raw = extract2(record, None if record_timestamps is None else record_timestamps[index])
                else:
                    raw = None if record_timestamps is None else record_timestamps[index]
                    if raw is None:
                        raise InvalidTimestampError(
                            "the record has no timestamp of its own: give the WatermarkStrategy a timestamp "
                            "assigner (.with_timestamp_assigner(fn))"
                        )
                timestamp = raw if type(raw) is float and _NEG_INF < raw < _INF else _checked(raw)
            except Exception as exc:
                failures.append(TimestampFailure(index, exc))
                continue
            append(timestamp)
            if on_event is not None:
                on_event(record, timestamp, self)
        if bounded is not None and timestamps:
            bounded.observe(max(timestamps))
        return Stamped(timestamps, failures, before, self._take())

    # -- time ------------------------------------------------------------------------

    def on_periodic_emit(self, now: float) -> Emissions:
        """The periodic step: IDLE after the idle timeout, else the generator's watermark."""
        timeout = self._idle_timeout
        if timeout is not None and now - self._last_record_at >= timeout:
            self.mark_idle()
        else:
            self._generator.on_periodic_emit(self)
        return self._take()

    # -- WatermarkOutput -------------------------------------------------------------

    def emit_watermark(self, timestamp: float) -> None:
        if timestamp > self.watermark:
            if self.status is WatermarkStatus.IDLE:
                self.status = WatermarkStatus.ACTIVE
                self._pending.append(WatermarkStatus.ACTIVE)
            self.watermark = timestamp
            self._pending.append(timestamp)

    def mark_idle(self) -> None:
        if self.status is WatermarkStatus.ACTIVE:
            self.status = WatermarkStatus.IDLE
            self._pending.append(WatermarkStatus.IDLE)

    def mark_active(self) -> None:
        if self.status is WatermarkStatus.IDLE:
            self.status = WatermarkStatus.ACTIVE
            self._pending.append(WatermarkStatus.ACTIVE)

    def _take(self) -> Emissions:
        pending = self._pending
        if not pending:
            return NO_EMISSIONS
        taken = tuple(pending)
        pending.clear()
        return taken
