"""The layout of a RocksDB entry's value: a header, then the state's bytes.

::

    flags (1 byte) | [varint len | pickled state key]  (flags & 1)
                   | [varint len | pickled map key]    (flags & 2)
                   | body

The optional parts hold the original key objects where the canonical key encoding
would not give them back with exactly their types (see
:mod:`streamflow.state.rocksdb.keys`); almost always ``flags`` is 0 and the header is
one byte. The body is the serializer's bytes of the value (value, reducing and
aggregating state, one map entry), or for list state a run of elements
``varint len | bytes``. With TTL every value, map entry and list element carries its
last-update time first, as an 8-byte big-endian double (``(value, ts)`` in the heap
backend): TTL is a codec of the stored bytes, not a parallel class tree.

Appending to a list is a concatenation of bytes: no element is decoded on ``add``.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from streamflow.state.rocksdb.keys import read_varint, varint

__all__ = ["PLAIN", "TS", "body_offset", "header", "original_keys", "pack_elements", "unpack_elements"]

PLAIN = b"\x00"
KEY_FLAG = 1
MAP_KEY_FLAG = 2
TS = struct.Struct(">d")


def header(key_form: bytes | None, map_key_form: bytes | None = None) -> bytes:
    """The header for an entry whose state key (map key) needs its pickled original form
    kept; None where the canonical encoding gives the key back exactly."""
    if key_form is None and map_key_form is None:
        return PLAIN
    flags = (KEY_FLAG if key_form is not None else 0) | (MAP_KEY_FLAG if map_key_form is not None else 0)
    parts = [bytes((flags,))]
    for form in (key_form, map_key_form):
        if form is not None:
            parts.append(varint(len(form)))
            parts.append(form)
    return b"".join(parts)


def key_form(key: Any) -> bytes:
    """The pickled original of a key the canonical encoding does not give back exactly."""
    return pickle.dumps(key, protocol=5)


def body_offset(raw: bytes) -> int:
    """Where the body starts (after the header)."""
    flags = raw[0]
    if flags == 0:
        return 1
    offset = 1
    for flag in (KEY_FLAG, MAP_KEY_FLAG):
        if flags & flag:
            size, offset = read_varint(raw, offset)
            offset += size
    return offset


def original_keys(raw: bytes) -> tuple[Any, Any]:
    """``(state key, map key)`` whose originals the header keeps; :data:`ABSENT` for a
    key whose canonical encoding gives it back exactly."""
    flags = raw[0]
    found: list[Any] = [_ABSENT, _ABSENT]
    offset = 1
    for index, flag in enumerate((KEY_FLAG, MAP_KEY_FLAG)):
        if flags & flag:
            size, offset = read_varint(raw, offset)
            found[index] = pickle.loads(raw[offset : offset + size])
            offset += size
    return found[0], found[1]


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<not kept>"


_ABSENT: Any = _Absent()
ABSENT = _ABSENT
"""What :func:`original_keys` returns for a key whose original form is not kept."""


def pack_elements(payloads: list[bytes], now: float | None) -> bytes:
    """List elements as a body run; with ``now`` each is stamped with it (TTL)."""
    if now is None:
        return b"".join(varint(len(p)) + p for p in payloads)
    stamp = TS.pack(now)
    return b"".join(stamp + varint(len(p)) + p for p in payloads)


def unpack_elements(raw: bytes, offset: int, ttl: bool) -> list[tuple[bytes, float]]:
    """``(payload, ts)`` of every element of a list body from ``offset`` (ts 0.0 without TTL)."""
    out: list[tuple[bytes, float]] = []
    end = len(raw)
    ts = 0.0
    while offset < end:
        if ttl:
            ts = TS.unpack_from(raw, offset)[0]
            offset += 8
        size, offset = read_varint(raw, offset)
        out.append((raw[offset : offset + size], ts))
        offset += size
    return out


def pack_stamped(payload: bytes, ts: float) -> bytes:
    return TS.pack(ts) + varint(len(payload)) + payload
