"""Watermark generators: how a stream's records turn into watermarks (Flink's shape).

A generator sees every record's timestamp (``on_event``) and is asked periodically
(``on_periodic_emit``, every ``WatermarkStrategy.emit_interval`` seconds) for the
watermark; it answers through a :class:`WatermarkOutput`. A periodic generator emits in
``on_periodic_emit``, a punctuated one in ``on_event`` (for instance on a marker
record). Emitting a watermark lower than one emitted before is allowed and ignored: a
stream's watermark never goes back.

One generator instance serves one split (or one subtask of
``assign_timestamps_and_watermarks``); the runtime makes one per split from the
strategy's factory, so a generator may keep plain fields. Generators are not
checkpointed, as in Flink: after a restore, event time starts again from the records
read.
"""

from __future__ import annotations

from typing import Any, Protocol

from streamflow.eventtime.resolution import RESOLUTION

__all__ = ["BoundedOutOfOrdernessWatermarks", "WatermarkGenerator", "WatermarkOutput"]

_NEG_INF = float("-inf")


class WatermarkOutput(Protocol):
    """Where a generator puts its watermarks and idleness."""

    def emit_watermark(self, timestamp: float) -> None:
        """Event time has reached ``timestamp``: no more records with a timestamp <= it."""

    def mark_idle(self) -> None:
        """This input sends nothing for now; stop holding back event time downstream."""

    def mark_active(self) -> None:
        """This input drives event time again (a record does this by itself)."""


class WatermarkGenerator:
    """Base of watermark generators; override one or both methods.

    ``on_event`` runs for every record, so keep it cheap: remember what you need and
    emit in ``on_periodic_emit``, unless the watermark depends on particular records.
    """

    def on_event(self, event: Any, timestamp: float, output: WatermarkOutput) -> None:
        """Called for every record, with the timestamp assigned to it."""
        return None

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        """Called every emit interval (processing time) while the input is not idle."""
        return None


class BoundedOutOfOrdernessWatermarks(WatermarkGenerator):
    """Records may arrive up to ``bound`` seconds behind the newest timestamp seen.

    The watermark trails the newest timestamp by ``bound`` plus one microsecond, so a
    record exactly ``bound`` late is still on time. ``bound=0`` is the monotonous case.
    Nothing is emitted before the first record.
    """

    __slots__ = ("_lag", "max_timestamp")

    def __init__(self, bound: float) -> None:
        self._lag = bound + RESOLUTION
        self.max_timestamp = _NEG_INF

    def on_event(self, event: Any, timestamp: float, output: WatermarkOutput) -> None:
        if timestamp > self.max_timestamp:
            self.max_timestamp = timestamp

    def observe(self, newest: float) -> None:
        """The highest timestamp of a batch at once (the tracker's fast path)."""
        if newest > self.max_timestamp:
            self.max_timestamp = newest

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        if self.max_timestamp != _NEG_INF:
            output.emit_watermark(self.max_timestamp - self._lag)
