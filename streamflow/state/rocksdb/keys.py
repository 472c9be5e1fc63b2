"""RocksDB key layout and the canonical encoding of state keys and map keys.

Every entry of the keyed state of one subtask lives in one RocksDB database under::

    key group (2 bytes, big-endian) | state id (2 bytes) | varint(len(K)) | K | [M]

``K`` is the canonical encoding of the record's key, ``M`` that of a MapState user key
(map state only; it is last, so it needs no length). The key group comes first, so a
range of key groups is one contiguous range of the database (a rescale reads ranges,
iteration is deterministic); the state id next, so a state's entries in a key group are
one contiguous run; the length prefix keeps key ``"ab"`` from being a prefix of key
``"abc"``, so a map's entries are exactly the keys that start with its prefix.
The two highest state ids are the operator's timers (processing and event time; see
:mod:`streamflow.state.rocksdb.timers`), whose entries hold a timestamp before the key.

A RocksDB lookup matches bytes, while a Python dict matches ``==``: equal keys must
encode to the same bytes. Hence the canonical encoding (a tag byte, then the payload):

- ``None`` -> ``N``; numbers by value: ints, bools, int subclasses (IntEnum) and every
  integral float, Decimal or Fraction -> ``I`` + two's-complement bytes; other floats and
  Decimals / Fractions equal to a float -> ``F`` + IEEE 754 (all NaNs are one key here,
  where a dict would tell NaN objects apart); other rationals -> ``Q`` + numerator and
  denominator; complex numbers with an imaginary part -> ``C``, without one as the real;
- str and str subclasses (str enums) -> ``S`` + UTF-8; bytes -> ``B``;
- tuples (NamedTuples too) -> ``T`` + each item's encoding, length-prefixed;
  frozensets -> ``Z`` + the sorted encodings of their members;
- window namespaces: a :class:`~streamflow.windowing.TimeWindow` -> ``W`` + its start and
  end as two IEEE 754 doubles (16 bytes: a window operator encodes one in every state
  entry and timer, so it is neither pickled nor checked against the by-value cases);
- datetimes -> ``D`` (aware ones as the same instant in UTC: equal instants in other
  zones are equal keys), dates -> ``E``, UUIDs -> ``U`` + 16 bytes;
- anything else -> ``P`` + its pickle. Caveat: two equal objects of such a type whose
  pickles differ (a dataclass holding ``1`` and one holding ``1.0``, a set-valued field
  built in another order) are two keys here, where a dict would see one.

Decoding gives back the canonical representative (``1`` for ``True`` and ``1.0``, a
tuple for a NamedTuple). Where that is not exactly the key the user wrote (its type
differs somewhere inside), the encoder says so and the backend keeps the original
object (pickled) beside the value, so keys come back with exactly their types; of equal
keys written with different types, the last write's form is kept (a dict keeps the
first).
"""

from __future__ import annotations

import datetime
import math
import pickle
import struct
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

from streamflow.errors import StateError
from streamflow.state.serializers import type_name
from streamflow.eventtime.windows import TimeWindow

__all__ = [
    "decode_key",
    "encode_key",
    "entry_key",
    "group_prefix",
    "key_group_bounds",
    "key_part",
    "read_varint",
    "split_entry_key",
    "successor",
    "varint",
]

_DOUBLE = struct.Struct(">d")
_WINDOW = struct.Struct(">dd")
_UTC = datetime.timezone.utc


def varint(n: int) -> bytes:
    """``n >= 0`` as LEB128 (7 bits a byte, low first, high bit = more follows)."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """``(value, offset after it)`` of the varint at ``offset``."""
    byte = data[offset]
    if byte < 0x80:
        return byte, offset + 1
    value = 0
    shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def encode_key(key: Any) -> tuple[bytes, bool]:
    """``(canonical bytes, exact)``: equal keys give equal bytes; ``exact`` is True when
    :func:`decode_key` gives back an object of exactly the key's type (recursively)."""
    kind = type(key)
    if kind is str:
        return b"S" + key.encode("utf-8", "surrogatepass"), True
    if kind is int:
        return _int(key), True
    if kind is bytes:
        return b"B" + key, True
    if kind is tuple:
        return _tuple(key, True)
    if kind is TimeWindow:
        return _window(key)
    if key is None:
        return b"N", True
    if kind in _PICKLED:
        return _pickled(key)
    return _other(key)


_PICKLED: set[type] = set()
"""Types found to be encoded by their pickle (no case of :func:`_other` matched them,
which depends on the type alone): later keys of these types skip the checks (a custom
window type, in every state entry and timer of its operator)."""


def _int(value: int) -> bytes:
    return b"I" + value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)


def _tuple(items: tuple[Any, ...], exact: bool) -> tuple[bytes, bool]:
    parts = [b"T"]
    for item in items:
        data, item_exact = encode_key(item)
        exact = exact and item_exact
        parts.append(varint(len(data)))
        parts.append(data)
    return b"".join(parts), exact


def _window(window: TimeWindow) -> tuple[bytes, bool]:
    """A window's bounds (+ 0.0: the equal -0.0 and 0.0 give one key, and only -0.0 does
    not come back as itself)."""
    start, end = window.start, window.end
    exact = (start != 0.0 or math.copysign(1.0, start) > 0) and (end != 0.0 or math.copysign(1.0, end) > 0)
    return b"W" + _WINDOW.pack(start + 0.0, end + 0.0), exact


def _number(value: Any) -> tuple[bytes, bool]:
    """A rational number (float, Decimal, Fraction) by value: as the int or float it
    equals if any; exact when that gives back the value's own type."""
    kind = type(value)
    if isinstance(value, float) and not math.isfinite(value):
        return b"F" + _DOUBLE.pack(value), kind is float
    if isinstance(value, Decimal) and not value.is_finite():
        if value.is_nan():
            return b"P" + pickle.dumps(value, protocol=5), True  # NaN Decimals equal nothing
        return b"F" + _DOUBLE.pack(float(value)), False
    if value == int(value):
        return _int(int(value)), False
    as_float = float(value)
    if as_float == value:
        return b"F" + _DOUBLE.pack(as_float), kind is float
    ratio = Fraction(value)
    num, den = _int(ratio.numerator), _int(ratio.denominator)
    return b"Q" + varint(len(num)) + num + den, kind is Fraction


def _other(key: Any) -> tuple[bytes, bool]:
    kind = type(key)
    if kind is float:
        return _number(key)
    if isinstance(key, int):  # bool, IntEnum and other int subclasses: as the equal int
        return _int(int.__index__(key)), False
    if isinstance(key, str):
        return b"S" + str.__str__(key).encode("utf-8", "surrogatepass"), False
    if isinstance(key, bytes):
        return b"B" + bytes(key), False
    if isinstance(key, tuple):
        return _tuple(key, False)
    if isinstance(key, (float, Decimal, Fraction)):
        return _number(key)
    if isinstance(key, complex):
        if key.imag == 0:
            data, _ = _other(key.real)
            return data, False
        return b"C" + _DOUBLE.pack(key.real + 0.0) + _DOUBLE.pack(key.imag + 0.0), kind is complex
    if isinstance(key, frozenset):
        members = sorted(encode_key(member) for member in key)
        data = b"Z" + b"".join(varint(len(m)) + m for m, _ in members)
        return data, kind is frozenset and all(exact for _, exact in members)
    if isinstance(key, datetime.datetime):
        return _datetime(key)
    if isinstance(key, datetime.date):
        return b"E" + key.isoformat().encode(), kind is datetime.date
    if isinstance(key, uuid.UUID):
        return b"U" + key.bytes, kind is uuid.UUID
    return _pickled(key)


def _pickled(key: Any) -> tuple[bytes, bool]:
    try:
        data = b"P" + pickle.dumps(key, protocol=5)
    except Exception as exc:  # noqa: BLE001 - pickle raises TypeError, AttributeError, PicklingError...
        raise StateError(
            f"key {key!r} of type {type_name(key)} cannot be stored in RocksDB state: it is not one of the types "
            f"encoded by value (str, bytes, numbers, None, tuples, frozensets, datetimes, UUIDs) and it does not "
            f"pickle ({type(exc).__name__}: {exc}); key by a plain value, or make the type picklable"
        ) from exc
    _PICKLED.add(type(key))
    return data, True


def _datetime(key: datetime.datetime) -> tuple[bytes, bool]:
    offset = key.utcoffset()
    if offset is None:  # naive: fold does not take part in ==
        return b"D" + key.replace(fold=0).isoformat().encode(), type(key) is datetime.datetime and key.fold == 0
    utc = (key.replace(tzinfo=None) - offset).replace(fold=0, tzinfo=_UTC)
    exact = type(key) is datetime.datetime and key.tzinfo is _UTC and key.fold == 0
    return b"D" + utc.isoformat().encode(), exact


def decode_key(data: bytes) -> Any:
    """The canonical key that :func:`encode_key` turned into ``data``."""
    tag = data[:1]
    if tag == b"S":
        return data[1:].decode("utf-8", "surrogatepass")
    if tag == b"I":
        return int.from_bytes(data[1:], "big", signed=True)
    if tag == b"B":
        return data[1:]
    if tag == b"T":
        return tuple(_items(data))
    if tag == b"N":
        return None
    if tag == b"W":
        return TimeWindow(*_WINDOW.unpack(data[1:]))
    if tag == b"F":
        return _DOUBLE.unpack(data[1:])[0]
    if tag == b"Q":
        size, offset = read_varint(data, 1)
        num = int.from_bytes(data[offset + 1 : offset + size], "big", signed=True)
        den = int.from_bytes(data[offset + size + 1 :], "big", signed=True)
        return Fraction(num, den)
    if tag == b"C":
        return complex(_DOUBLE.unpack(data[1:9])[0], _DOUBLE.unpack(data[9:17])[0])
    if tag == b"Z":
        return frozenset(_items(data))
    if tag == b"D":
        return datetime.datetime.fromisoformat(data[1:].decode())
    if tag == b"E":
        return datetime.date.fromisoformat(data[1:].decode())
    if tag == b"U":
        return uuid.UUID(bytes=data[1:])
    if tag == b"P":
        return pickle.loads(data[1:])
    raise ValueError(f"unknown key tag {tag!r} in {data!r}")


def _items(data: bytes) -> list[Any]:
    items = []
    offset = 1
    end = len(data)
    while offset < end:
        size, offset = read_varint(data, offset)
        items.append(decode_key(data[offset : offset + size]))
        offset += size
    return items


# -- composite keys -----------------------------------------------------------------


def key_part(encoded_key: bytes) -> bytes:
    """The state-key part of an entry key: length prefix and canonical bytes."""
    return varint(len(encoded_key)) + encoded_key


def group_prefix(key_group: int, state_id: int) -> bytes:
    """The first bytes of every entry of one state in one key group."""
    return key_group.to_bytes(2, "big") + state_id.to_bytes(2, "big")


def entry_key(key_group: int, state_id: int, encoded_key: bytes) -> bytes:
    return group_prefix(key_group, state_id) + key_part(encoded_key)


def split_entry_key(entry: bytes) -> tuple[int, int, bytes, bytes]:
    """``(key group, state id, canonical state key, canonical map key or b"")``."""
    size, offset = read_varint(entry, 4)
    end = offset + size
    return int.from_bytes(entry[:2], "big"), int.from_bytes(entry[2:4], "big"), entry[offset:end], entry[end:]


def successor(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string that starts with ``prefix``
    (an exclusive upper bound for a prefix scan); ``prefix`` must not be all 0xFF."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


def key_group_bounds(key_groups: range) -> tuple[bytes, bytes]:
    """``[lower, upper)`` entry-key bounds holding exactly the key groups of ``key_groups``."""
    return key_groups.start.to_bytes(2, "big"), key_groups.stop.to_bytes(2, "big")
