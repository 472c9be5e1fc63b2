"""What a KafkaSource hands the pipeline: the deserialized value, or the whole record."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, cast

__all__ = ["KafkaOutput", "KafkaRecord", "new_record"]


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


class _UnfrozenRecord:
    """Builds a :class:`KafkaRecord` at a third of the cost of ``KafkaRecord(...)``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (about
    0.5 us for seven fields, per record read); this class has the same slots, sets them
    plainly, then becomes a KafkaRecord (``__class__`` may change between classes of the
    same slot layout). The result is an ordinary KafkaRecord: frozen, equal, hashing and
    pickling as one built by its constructor.
    """

    __slots__ = KafkaRecord.__slots__

    def __init__(
        self, topic: str, partition: int, offset: int, timestamp: float, key: Any, value: Any,
        headers: tuple[tuple[str, bytes], ...],
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
        self.__class__ = KafkaRecord  # type: ignore[assignment]


def _fast_constructor() -> Callable[[str, int, int, float, Any, Any, tuple[tuple[str, bytes], ...]], KafkaRecord]:
    """:class:`_UnfrozenRecord` if it builds exactly what KafkaRecord's constructor builds
    (the same fields in the same order), else KafkaRecord itself."""
    names = tuple(f.name for f in fields(KafkaRecord))
    if names != tuple(_UnfrozenRecord.__slots__):
        return KafkaRecord
    probe_args: tuple[Any, ...] = ("t", 0, 1, 1.5, b"k", b"v", (("h", b"x"),))
    try:
        probe: Any = _UnfrozenRecord(*probe_args)
    except TypeError:  # the slot layouts differ after all
        return KafkaRecord
    if type(probe) is not KafkaRecord or probe != KafkaRecord(*probe_args):
        return KafkaRecord
    return cast("Callable[[str, int, int, float, Any, Any, tuple[tuple[str, bytes], ...]], KafkaRecord]",
                _UnfrozenRecord)


new_record = _fast_constructor()
"""``new_record(topic, partition, offset, timestamp, key, value, headers)``: a KafkaRecord,
all seven fields positional, built without the frozen dataclass's ``__init__``."""
