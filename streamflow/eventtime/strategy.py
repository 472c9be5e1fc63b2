"""WatermarkStrategy: where a stream's timestamps come from and how its event time moves.

Built from one of the class methods and refined by the ``with_*`` methods, each
returning a new frozen strategy::

    WatermarkStrategy.for_bounded_out_of_orderness(5.0)
        .with_timestamp_assigner(lambda order: order["ts"])
        .with_idleness(60.0)

Used in a source (one watermark generator per split, as Kafka keeps one per partition)
or on any stream (``assign_timestamps_and_watermarks``). Everything is validated here,
when the pipeline is built: a bad value is a :class:`ConfigError` saying what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Callable, Protocol, runtime_checkable

from streamflow.errors import ConfigError
from streamflow.eventtime.durations import non_negative_seconds, positive_seconds
from streamflow.eventtime.generators import BoundedOutOfOrdernessWatermarks, WatermarkGenerator

__all__ = ["TimestampAssigner", "WatermarkStrategy"]

DEFAULT_EMIT_INTERVAL = 0.2
"""Seconds between periodic watermark emits, Flink's ``auto-watermark-interval``."""


@runtime_checkable
class TimestampAssigner(Protocol):
    """Flink's assigner shape, for when the record's own timestamp matters.

    ``record_timestamp`` is the timestamp the record arrived with (a Kafka record's
    timestamp), or ``None``. A plain callable ``fn(event) -> float`` also serves as an
    assigner.
    """

    def extract_timestamp(self, event: Any, record_timestamp: float | None) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WatermarkStrategy:
    """How records get timestamps and how watermarks follow them.

    Attributes:
        generator_factory: makes one :class:`WatermarkGenerator` per split or subtask.
        timestamp_assigner: ``fn(event) -> float`` or a :class:`TimestampAssigner`;
            ``None`` keeps the timestamp the record arrived with (a Kafka record's).
        idle_timeout: seconds without records after which an input is idle, or
            ``None`` (never idle).
        emit_interval: seconds between periodic watermark emits.
        description: how the strategy was made, for messages.
    """

    generator_factory: Callable[[], WatermarkGenerator]
    timestamp_assigner: Callable[[Any], float] | TimestampAssigner | None = None
    idle_timeout: float | None = None
    emit_interval: float = DEFAULT_EMIT_INTERVAL
    description: str = "WatermarkStrategy"

    # -- how to make one -------------------------------------------------------------

    @classmethod
    def for_monotonous_timestamps(cls) -> WatermarkStrategy:
        """Timestamps never decrease within a split: the watermark is the newest timestamp
        (less one microsecond, so records at that same timestamp are still on time)."""
        return cls(
            generator_factory=_BoundedFactory(0.0),
            description="WatermarkStrategy.for_monotonous_timestamps()",
        )

    @classmethod
    def for_bounded_out_of_orderness(cls, bound: float | timedelta) -> WatermarkStrategy:
        """Records may arrive up to ``bound`` seconds behind the newest one seen; later ones
        are late. ``bound`` 0 is :meth:`for_monotonous_timestamps`."""
        what = "WatermarkStrategy.for_bounded_out_of_orderness(bound)"
        number = non_negative_seconds(bound, what, "pass how many seconds records may arrive out of order, e.g. 5.0")
        return cls(
            generator_factory=_BoundedFactory(number),
            description=f"WatermarkStrategy.for_bounded_out_of_orderness({number!r})",
        )

    @classmethod
    def for_generator(cls, factory: Callable[[], WatermarkGenerator]) -> WatermarkStrategy:
        """Your own :class:`WatermarkGenerator`; ``factory()`` makes one per split. It is
        called once here to check that it returns a generator."""
        what = "WatermarkStrategy.for_generator(factory)"
        if not callable(factory):
            raise ConfigError(
                f"{what} needs a callable that returns a WatermarkGenerator, got {factory!r}; "
                "pass the class itself or a lambda, e.g. for_generator(MyGenerator)"
            )
        sample = factory()
        if not (callable(getattr(sample, "on_event", None)) and callable(getattr(sample, "on_periodic_emit", None))):
            raise ConfigError(
                f"{what}: factory() returned {sample!r}, which lacks on_event(event, timestamp, output) "
                "and on_periodic_emit(output); subclass streamflow.eventtime.WatermarkGenerator"
            )
        return cls(generator_factory=factory, description=f"WatermarkStrategy.for_generator({factory!r})")

    # -- refinements -----------------------------------------------------------------

    def with_timestamp_assigner(
        self, assigner: Callable[[Any], float] | TimestampAssigner
    ) -> WatermarkStrategy:
        """Take each record's timestamp (float seconds) from ``assigner``."""
        if not (isinstance(assigner, TimestampAssigner) or callable(assigner)):
            raise ConfigError(
                f"{self.description}.with_timestamp_assigner needs fn(event) -> float seconds or an object "
                f"with extract_timestamp(event, record_timestamp), got {assigner!r}"
            )
        return replace(self, timestamp_assigner=assigner)

    def with_idleness(self, timeout: float | timedelta) -> WatermarkStrategy:
        """Mark a split (or input) idle after ``timeout`` seconds without records, so it no
        longer holds back event time downstream; its next record makes it active again."""
        number = positive_seconds(
            timeout,
            f"{self.description}.with_idleness(timeout)",
            "pass how many seconds without records make an input idle, e.g. 60.0",
        )
        return replace(self, idle_timeout=number)

    def with_emit_interval(self, interval: float | timedelta) -> WatermarkStrategy:
        """Ask the generator for the watermark every ``interval`` seconds (default 0.2)."""
        number = positive_seconds(
            interval, f"{self.description}.with_emit_interval(interval)", "pass seconds between periodic watermarks, e.g. 0.2"
        )
        return replace(self, emit_interval=number)

    def create_generator(self) -> WatermarkGenerator:
        return self.generator_factory()


class _BoundedFactory:
    """Picklable factory of :class:`BoundedOutOfOrdernessWatermarks` (a lambda is not)."""

    __slots__ = ("bound",)

    def __init__(self, bound: float) -> None:
        self.bound = bound

    def __call__(self) -> BoundedOutOfOrdernessWatermarks:
        return BoundedOutOfOrdernessWatermarks(self.bound)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _BoundedFactory) and other.bound == self.bound

    def __hash__(self) -> int:
        return hash(self.bound)

    def __repr__(self) -> str:
        return f"BoundedOutOfOrdernessWatermarks({self.bound!r})"
