"""The records of an exchange topic: packs of pipeline records and control records.

Records cross workers with exactly their Python types, as state does: a batch of
records bound for one partition is pickled, with the records' event timestamps (or
``None`` when none has one), into one Kafka record (a *pack*), which
costs one Kafka record per partition per written batch instead of one per pipeline
record. A pack above :data:`MAX_PACK_BYTES` is split in halves (a single huge record
travels alone). Pickle runs code when loading: exchange topics must be writable by the
job alone (Kafka ACLs), as its checkpoint directory must.

Every exchange record's Kafka key says what it is and who wrote it::

    byte 0       format version (2: packs carry timestamps; 1 had none)
    byte 1       kind: DATA, WATERMARK, IDLE, ACTIVE or END
    bytes 2-5    writer: the global subtask index of the writing subtask (big-endian)
    bytes 6-9    writers: the writing side's global parallelism
    bytes 10-    generation (UTF-8): the deployment that wrote it

The value is the pack (DATA: the pickled pair ``(records, timestamps)``), the watermark
as a big-endian double (WATERMARK), or empty. Control records go to every partition, in
the same transaction as the data around them, so a reader sees them in order with the
data and only once committed.
"""

from __future__ import annotations

import enum
import pickle
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_PACK_BYTES",
    "Envelope",
    "ExchangeKey",
    "RecordKind",
    "decode_key",
    "decode_watermark",
    "encode_key",
    "encode_watermark",
    "pack_records",
    "unpack_records",
]

FORMAT = 2
MAX_PACK_BYTES = 512 * 1024
"""Packs stay below this size (Kafka's default message limit is 1 MiB)."""

_HEADER = struct.Struct(">BBII")
_WATERMARK = struct.Struct(">d")


class RecordKind(enum.IntEnum):
    DATA = 0
    """A pack of pipeline records."""
    WATERMARK = 1
    """The writer's event time reached the value."""
    IDLE = 2
    """The writer has nothing to say for now: it stops holding event time back."""
    ACTIVE = 3
    """The writer holds event time back again (records follow)."""
    END = 4
    """The writer's input ended: it writes nothing more."""


@dataclass(frozen=True, slots=True)
class ExchangeKey:
    kind: RecordKind
    writer: int
    writers: int
    generation: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """One Kafka record the exchange sink hands to the transactional writer."""

    partition: int
    key: bytes
    value: bytes


def encode_key(kind: RecordKind, writer: int, writers: int, generation: str) -> bytes:
    return _HEADER.pack(FORMAT, kind, writer, writers) + generation.encode("utf-8")


def decode_key(key: bytes | None) -> ExchangeKey:
    """Raises ValueError if ``key`` is not the key of an exchange record of this format."""
    if key is None or len(key) < _HEADER.size:
        raise ValueError(f"not an exchange record: its key {key!r} is shorter than {_HEADER.size} bytes")
    version, kind, writer, writers = _HEADER.unpack_from(key)
    if version != FORMAT:
        raise ValueError(
            f"exchange record of format {version}; this streamflow reads format {FORMAT} only: the topic was "
            "written by another streamflow version. Let the jobs of one version drain their exchange topics "
            "(stop with a savepoint) before upgrading, or run the job under a new name (new exchange topics)"
        )
    try:
        return ExchangeKey(RecordKind(kind), writer, writers, key[_HEADER.size:].decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an exchange record key: {key!r} ({exc})") from exc


def encode_watermark(timestamp: float) -> bytes:
    return _WATERMARK.pack(timestamp)


def decode_watermark(value: bytes | None) -> float:
    if value is None or len(value) != _WATERMARK.size:
        raise ValueError(f"an exchange watermark is {_WATERMARK.size} bytes, got {value!r}")
    timestamp: float = _WATERMARK.unpack(value)[0]
    return timestamp


def pack_records(
    records: list[Any], timestamps: list[float | None] | None = None, limit: int = MAX_PACK_BYTES
) -> list[bytes]:
    """``records`` with their ``timestamps`` (a parallel list, or None when no record has
    one) pickled into packs of at most ``limit`` bytes (a lone record may be larger).
    Raises what pickle raises for a record it cannot pickle."""
    blob = pickle.dumps((records, timestamps), protocol=pickle.HIGHEST_PROTOCOL)
    if len(blob) <= limit or len(records) == 1:
        return [blob]
    half = len(records) // 2
    if timestamps is None:
        return pack_records(records[:half], None, limit) + pack_records(records[half:], None, limit)
    return pack_records(records[:half], timestamps[:half], limit) + pack_records(
        records[half:], timestamps[half:], limit
    )


def unpack_records(value: bytes | None) -> tuple[list[Any], list[float | None] | None]:
    """The records of a pack and their timestamps (None when no record had one); raises
    ValueError (or what unpickling raises) if it is none."""
    if value is None:
        raise ValueError("an exchange pack has no value")
    pack = pickle.loads(value)
    if not (isinstance(pack, tuple) and len(pack) == 2 and isinstance(pack[0], list)):
        raise ValueError(f"an exchange pack holds a pair (records, timestamps), this one a {type(pack).__name__}")
    records, timestamps = pack
    if timestamps is not None and (not isinstance(timestamps, list) or len(timestamps) != len(records)):
        raise ValueError(
            f"an exchange pack of {len(records)} records holds {timestamps!r:.80} as their timestamps, not a list "
            "of as many"
        )
    return records, timestamps
