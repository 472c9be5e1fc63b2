"""Turning records into Kafka keys, values and partitions.

A serializer is a name (``"bytes"``, ``"str"``, ``"json"``) or any callable
``value -> bytes``. The default partitioner is Kafka's own: murmur2 of the serialized key,
as the Java client and aiokafka compute it, so a key lands in the partition any other
Kafka producer would pick; records without a key stick to one partition per written batch
and rotate over the partitions from batch to batch (Kafka's sticky partitioning), which
keeps produce batches large.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import orjson
from aiokafka.partitioner import murmur2

from streamflow.errors import ConfigError

__all__ = [
    "Partitioner",
    "Serializer",
    "SerializerName",
    "KeyHashPartitioner",
    "as_bytes",
    "resolve_serializer",
]

SerializerName: TypeAlias = Literal["bytes", "str", "json"]
Serializer: TypeAlias = "SerializerName | Callable[[Any], bytes]"
Partitioner: TypeAlias = Callable[[Any, "bytes | None", int], int]
"""``partitioner(record, key_bytes, partition_count) -> partition`` in ``[0, count)``."""


def as_bytes(value: Any) -> bytes:
    """The ``"bytes"`` serializer: bytes as they are, bytearray and memoryview copied,
    anything else a TypeError saying which serializer to choose."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(
        f"expected bytes, got {type(value).__name__}; pass serializer 'str', 'json' or a "
        "callable that returns bytes"
    )


def _utf8(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(
            f"expected str, got {type(value).__name__}; pass serializer 'bytes', 'json' or a "
            "callable that returns bytes"
        )
    return value.encode("utf-8")


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


_BUILT_IN: dict[str, Callable[[Any], bytes]] = {"bytes": as_bytes, "str": _utf8, "json": _json}


def resolve_serializer(serializer: Any, what: str) -> Callable[[Any], bytes]:
    """The callable behind ``serializer``; ``what`` names the setting in errors."""
    if isinstance(serializer, str):
        try:
            return _BUILT_IN[serializer]
        except KeyError:
            raise ConfigError(
                f"KafkaSink {what}={serializer!r} is not a serializer; use one of "
                f"{sorted(_BUILT_IN)!r} or a callable value -> bytes",
                value=serializer,
            ) from None
    if callable(serializer):
        return serializer  # type: ignore[no-any-return]
    raise ConfigError(
        f"KafkaSink {what} must be 'bytes', 'str', 'json' or a callable value -> bytes, "
        f"got {serializer!r}",
        value=repr(serializer),
    )


class KeyHashPartitioner:
    """Kafka's default partitioner: ``murmur2(key) & 0x7fffffff % count`` for keyed records;
    unkeyed records go to the partition :meth:`sticky` picks for the current batch.

    murmur2 is pure Python in aiokafka (microseconds per key), so hashes of recent keys
    are cached: streams usually repeat keys. A hot loop may read :attr:`hashes` itself
    and call :meth:`hash_of` only for a key not in it.
    """

    __slots__ = ("hashes", "_next_sticky")

    _CACHE_LIMIT = 65_536

    def __init__(self, start: int = 0) -> None:
        self.hashes: dict[bytes, int] = {}
        """``key -> murmur2(key) & 0x7fffffff`` of recent keys."""
        self._next_sticky = start

    def __call__(self, record: Any, key: bytes | None, count: int) -> int:
        if key is None:
            raise ValueError("KeyHashPartitioner needs a key; ask sticky() for unkeyed records")
        h = self.hashes.get(key)
        if h is None:
            h = self.hash_of(key)
        return h % count

    def hash_of(self, key: bytes) -> int:
        """The key's positive murmur2 hash, kept in :attr:`hashes` (emptied when full)."""
        hashes = self.hashes
        if len(hashes) >= self._CACHE_LIMIT:
            hashes.clear()
        h: int = murmur2(key) & 0x7FFFFFFF
        hashes[key] = h
        return h

    def sticky(self, count: int) -> int:
        """The partition for unkeyed records of the next batch (rotates per call)."""
        self._next_sticky += 1
        return self._next_sticky % count
