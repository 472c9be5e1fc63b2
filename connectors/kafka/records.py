"""What a KafkaSource hands the pipeline: the deserialized value, or the whole record."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["KafkaOutput", "KafkaRecord"]


class KafkaOutput(enum.Enum):
    """What each pipeline record of a KafkaSource is."""

    VALUE = "value"
    """The deserialized value alone (the default, and the cheapest)."""
    RECORD = "record"
    """A :class:`KafkaRecord`: key, value, headers, timestamp and position."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One Kafka record with its key and value deserialized.

    ``timestamp`` is the record's Kafka timestamp (create or log-append time) in float
    seconds since the epoch, the unit of watermarks and event-time timers. ``headers``
    are ``(name, bytes)`` pairs in record order. A missing key or value (a tombstone)
    is ``None`` and is not passed through the built-in deserializers.

    A record that failed to deserialize reaches the dead-letter sink as a KafkaRecord
    holding the raw ``bytes`` key and value.
    """

    topic: str
    partition: int
    offset: int
    timestamp: float
    key: Any
    value: Any
    headers: tuple[tuple[str, bytes], ...] = ()
