"""The older way to give a KafkaSource event time: ``watermarks=BoundedOutOfOrderness(...)``.

Deprecated: pass ``watermark_strategy=WatermarkStrategy.for_bounded_out_of_orderness(b)``
(``.with_idleness(t)`` for an idle timeout) to the KafkaSource or to
``env.from_source``. A :class:`BoundedOutOfOrderness` given as ``watermarks=`` is turned
into exactly that strategy (:meth:`BoundedOutOfOrderness.to_strategy`), so both spellings
behave the same: per-partition watermarks from the records' Kafka timestamps, an idle
partition no longer holding the others back, and a subtask without partitions idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from streamflow.errors import ConfigError
from streamflow.eventtime.strategy import WatermarkStrategy

__all__ = ["BoundedOutOfOrderness"]


@dataclass(frozen=True, slots=True)
class BoundedOutOfOrderness:
    """Deprecated (see the module docstring): watermarks that allow records to arrive up
    to ``max_out_of_orderness`` seconds behind the newest timestamp seen in their
    partition; ``idle_timeout`` (seconds, ``None``: never) lets a partition without
    records stop holding the watermark back after that long.
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

    def to_strategy(self) -> WatermarkStrategy:
        """The WatermarkStrategy that replaces it."""
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(self.max_out_of_orderness)
        return strategy if self.idle_timeout is None else strategy.with_idleness(self.idle_timeout)

    def describe_replacement(self) -> str:
        idle = "" if self.idle_timeout is None else f".with_idleness({self.idle_timeout!r})"
        return f"WatermarkStrategy.for_bounded_out_of_orderness({self.max_out_of_orderness!r}){idle}"
