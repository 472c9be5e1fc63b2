"""Event time of a KafkaSource reader, from the records' Kafka timestamps.

Each partition tracks the highest timestamp it emitted; its watermark trails that by
the allowed out-of-orderness (minus 1 ms, Kafka's resolution, so a record exactly that
late is still on time). The reader's watermark is the minimum over its partitions, as
in Flink's per-partition watermarks: one slow partition holds the others back instead
of making their records late.

A partition that emitted nothing for ``idle_timeout`` seconds (processing time) stops
holding the watermark back until it emits again; a finished partition (bounded mode)
never holds it. When every partition of a reader is idle the watermark stays where it
is: the runtime has no idle status to hand downstream, so such a subtask still holds
back the operators that merge its output with others'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from streamflow.config import seconds
from streamflow.errors import ConfigError

__all__ = ["BoundedOutOfOrderness", "PartitionWatermarks"]

_NEG_INF = float("-inf")
_KAFKA_RESOLUTION = 0.001


@dataclass(frozen=True, slots=True)
class BoundedOutOfOrderness:
    """Watermarks that allow records to arrive up to ``max_out_of_orderness`` seconds
    behind the newest timestamp seen in their partition.

    ``idle_timeout`` (seconds, ``None``: never) lets a partition without records stop
    holding the watermark back after that long.
    """

    max_out_of_orderness: float | timedelta = 0.0
    idle_timeout: float | timedelta | None = None

    def __post_init__(self) -> None:
        bound = self.max_out_of_orderness
        if isinstance(bound, timedelta):
            bound = bound.total_seconds()
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound < 0:
            raise ConfigError(
                f"BoundedOutOfOrderness max_out_of_orderness must be seconds >= 0, got {self.max_out_of_orderness!r}"
            )
        object.__setattr__(self, "max_out_of_orderness", float(bound))
        idle = self.idle_timeout
        if idle is not None:
            if isinstance(idle, timedelta):
                idle = idle.total_seconds()
            if isinstance(idle, bool) or not isinstance(idle, (int, float)) or idle <= 0:
                raise ConfigError(
                    f"BoundedOutOfOrderness idle_timeout must be seconds > 0 or None, got {self.idle_timeout!r}"
                )
            object.__setattr__(self, "idle_timeout", float(idle))


class PartitionWatermarks:
    """Per-partition event time of one reader; pure logic, time passed in.

    Calls: ``track(split, now)`` when a partition is assigned, ``on_records`` after a
    partition's records were emitted, ``finish`` when a bounded partition ended,
    ``current(now)`` for the reader's watermark.
    """

    __slots__ = ("_bound", "_idle_timeout", "_max_ts", "_last_active", "_finished")

    def __init__(self, strategy: BoundedOutOfOrderness) -> None:
        self._bound = seconds(strategy.max_out_of_orderness, "max_out_of_orderness") + _KAFKA_RESOLUTION
        idle = strategy.idle_timeout
        self._idle_timeout = None if idle is None else seconds(idle, "idle_timeout")
        self._max_ts: dict[str, float] = {}
        self._last_active: dict[str, float] = {}
        self._finished: set[str] = set()

    def track(self, split: str, now: float) -> None:
        """Start tracking ``split`` (assigned now); a split already tracked is unchanged,
        so re-assigning after discovery does not wake idle partitions."""
        if split not in self._max_ts:
            self._max_ts[split] = _NEG_INF
            self._last_active[split] = now

    def on_records(self, split: str, newest_timestamp: float, now: float) -> None:
        """``newest_timestamp``: the highest timestamp (seconds) among the records emitted."""
        if newest_timestamp > self._max_ts.get(split, _NEG_INF):
            self._max_ts[split] = newest_timestamp
        self._last_active[split] = now

    def finish(self, split: str) -> None:
        self._finished.add(split)

    def current(self, now: float) -> float | None:
        """The reader's watermark, or ``None`` while every partition is idle or finished."""
        idle_timeout = self._idle_timeout
        low: float | None = None
        for split, newest in self._max_ts.items():
            if split in self._finished:
                continue
            if idle_timeout is not None and now - self._last_active[split] >= idle_timeout:
                continue
            if low is None or newest < low:
                low = newest
        return None if low is None or low == _NEG_INF else low - self._bound
