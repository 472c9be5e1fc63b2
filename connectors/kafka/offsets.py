"""Where a KafkaSource reads: which subtask owns a partition, where a partition starts,
and the split state that the checkpoint keeps per partition.

Ownership is a pure function of (topic, partition, parallelism), so every subtask
computes the same answer alone: at a fresh start, after a restore with another
parallelism, and for a partition found while running. The partitions of one topic are
dealt round robin, starting at a subtask derived from a stable hash of the topic name
(crc32, the same in every process), so several small topics do not all pile onto
subtask 0.

A split stores the offset of the NEXT record to read, never the last one read: a
restore seeks straight to it and replays nothing.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streamflow.errors import ConfigError, StateError

__all__ = ["KafkaSplit", "OffsetKind", "OffsetReset", "StartingOffsets", "owner_of"]


def owner_of(topic: str, partition: int, parallelism: int) -> int:
    """The subtask (of ``parallelism``) that reads ``topic``'s ``partition``."""
    start = zlib.crc32(topic.encode("utf-8")) % parallelism
    return (start + partition) % parallelism


class OffsetReset(enum.Enum):
    """Where to start a partition that has no other starting point."""

    EARLIEST = "earliest"
    LATEST = "latest"


class OffsetKind(enum.Enum):
    """The kinds of :class:`StartingOffsets`."""

    EARLIEST = "earliest"
    LATEST = "latest"
    COMMITTED = "committed"
    TIMESTAMP = "timestamp"
    SPECIFIC = "specific"


@dataclass(frozen=True, slots=True)
class StartingOffsets:
    """Where a partition starts when no checkpoint covers it (a fresh job, or a
    partition that appeared since the checkpoint). Build one with a class method:

    - ``earliest()``: the first record still in the log (the default);
    - ``latest()``: only records written after the source started;
    - ``committed(reset=OffsetReset.EARLIEST)``: the consumer group's committed offset
      (needs ``group_id``), else ``reset``;
    - ``timestamp(t)``: the first record with a timestamp at or after ``t`` (float
      seconds since the epoch or a ``datetime``), else the end of the partition;
    - ``offsets({("topic", 0): 42, ...}, default=OffsetReset.EARLIEST)``: given per
      partition, ``default`` for the others.

    The choice is resolved to a number the moment a split is made, so a checkpoint
    taken before the first record arrives already pins the position.
    """

    kind: OffsetKind
    reset: OffsetReset = OffsetReset.EARLIEST
    timestamp_ms: int | None = None
    specific: Mapping[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def earliest(cls) -> StartingOffsets:
        return cls(OffsetKind.EARLIEST)

    @classmethod
    def latest(cls) -> StartingOffsets:
        return cls(OffsetKind.LATEST)

    @classmethod
    def committed(cls, reset: OffsetReset | str = OffsetReset.EARLIEST) -> StartingOffsets:
        return cls(OffsetKind.COMMITTED, reset=_reset(reset, "committed(reset=)"))

    @classmethod
    def timestamp(cls, t: float | datetime) -> StartingOffsets:
        if isinstance(t, datetime):
            if t.tzinfo is None:
                raise ConfigError(
                    f"StartingOffsets.timestamp needs an aware datetime (with tzinfo), got {t!r}; "
                    "e.g. datetime(2024, 5, 1, tzinfo=timezone.utc)"
                )
            seconds = t.timestamp()
        elif isinstance(t, (int, float)) and not isinstance(t, bool):
            seconds = float(t)
        else:
            raise ConfigError(f"StartingOffsets.timestamp needs epoch seconds or a datetime, got {t!r}")
        if seconds < 0:
            raise ConfigError(f"StartingOffsets.timestamp must not be before 1970, got {t!r}")
        return cls(OffsetKind.TIMESTAMP, timestamp_ms=int(seconds * 1000))

    @classmethod
    def offsets(
        cls, offsets: Mapping[tuple[str, int], int], default: OffsetReset | str = OffsetReset.EARLIEST
    ) -> StartingOffsets:
        checked: dict[tuple[str, int], int] = {}
        for tp, offset in dict(offsets).items():
            if (
                not isinstance(tp, tuple)
                or len(tp) != 2
                or not isinstance(tp[0], str)
                or not isinstance(tp[1], int)
                or not isinstance(offset, int)
                or offset < 0
            ):
                raise ConfigError(
                    f"StartingOffsets.offsets maps (topic, partition) to an offset >= 0, got {tp!r}: {offset!r}"
                )
            checked[(tp[0], tp[1])] = offset
        return cls(OffsetKind.SPECIFIC, reset=_reset(default, "offsets(default=)"), specific=checked)

    @property
    def needs_group(self) -> bool:
        return self.kind is OffsetKind.COMMITTED

    def describe(self) -> str:
        if self.kind is OffsetKind.COMMITTED:
            return f"committed group offsets, else {self.reset.value}"
        if self.kind is OffsetKind.TIMESTAMP:
            return f"timestamp {self.timestamp_ms} ms"
        if self.kind is OffsetKind.SPECIFIC:
            return f"given offsets, else {self.reset.value}"
        return str(self.kind.value)


def _reset(value: OffsetReset | str, what: str) -> OffsetReset:
    try:
        return OffsetReset(value)
    except ValueError:
        raise ConfigError(f"StartingOffsets.{what} must be 'earliest' or 'latest', got {value!r}") from None


@dataclass(slots=True)
class KafkaSplit:
    """Read progress in one partition: ``offset`` is the NEXT record to read.

    ``stop`` (bounded mode) is the offset the partition ends at, exclusive: the end
    offset seen when the split was made, kept in the checkpoint so a restored bounded
    job stops where the first attempt would have.
    """

    topic: str
    partition: int
    offset: int
    stop: int | None = None

    @property
    def name(self) -> str:
        """``topic-partition``, as Kafka tools print it; the split of error positions."""
        return f"{self.topic}-{self.partition}"

    @property
    def finished(self) -> bool:
        return self.stop is not None and self.offset >= self.stop

    def state(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "stop": self.stop}

    @classmethod
    def restore(cls, state: Any, source_uid: str) -> KafkaSplit:
        try:
            topic, partition, offset = state["topic"], state["partition"], state["offset"]
            stop = state.get("stop")
            valid = (
                isinstance(topic, str)
                and isinstance(partition, int)
                and isinstance(offset, int)
                and offset >= 0
                and (stop is None or isinstance(stop, int))
            )
        except (TypeError, KeyError, AttributeError):
            valid = False
        if not valid:
            raise StateError(
                f"KafkaSource {source_uid!r}: restored split {state!r} is not a Kafka split "
                "({'topic', 'partition', 'offset', 'stop'}); was this uid used by another kind of source?",
                operator=source_uid,
                split=repr(state),
            )
        return cls(topic, partition, offset, stop)
