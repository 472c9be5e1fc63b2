"""Stable key -> key group -> subtask assignment.

A key's key group is ``stable_hash(key) % max_parallelism``; subtask ``i`` of ``p``
owns the contiguous range of key groups Flink assigns it, so rescaling moves whole key
groups. ``stable_hash`` is the same in every process and every run: Python's ``hash()``
is salted per process for ``str`` and ``bytes`` and is never used here.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, NewType

import orjson

from streamflow.errors import ConfigError

KeyGroup = NewType("KeyGroup", int)

_MIX = 0x9E3779B1  # golden-ratio multiplier: spreads crc32's low bits over the range
_JSON_INT_MIN, _JSON_INT_MAX = -(1 << 63), (1 << 64) - 1  # what orjson writes


def stable_hash(key: Any) -> int:
    """A 32-bit hash of ``key`` that is identical across processes and runs, and equal for
    keys that are equal as dict keys.

    ``1``, ``1.0`` and ``True`` are one dict key (equal, with equal ``hash()``), so they
    must land in one key group, or a keyed state could hold the same key in two places
    and a record would miss the state of an equal key. Hence the canonical bytes:

    - str: its UTF-8 bytes; int: 16 bytes little-endian (digits beyond 128 bits); bytes:
      as they are. These are the common keys and keep the bytes they always had, so
      checkpoints and savepoints written before keep every such key in its key group.
    - bool, int subclasses (IntEnum) and integral floats hash as the equal int; other
      floats as their IEEE 754 bytes; str and bytes subclasses as the equal str/bytes.
    - tuples and lists, NamedTuples too, hash as the orjson array of their items, the
      items normalised the same way (``(1, "a")``, ``(1.0, "a")`` and ``(True, "a")``
      agree; a tuple of str and int keeps its old bytes); bytes items and ints beyond 64
      bits (which orjson cannot write) as a marked str.
    - anything else hashes its orjson encoding with sorted keys (datetimes, UUIDs,
      enums by value, dicts).

    The normalisation changed the key group of bools, integral floats, str/int
    subclasses and tuples holding them; snapshots written before exact state types are
    restored with their key groups recomputed (``streamflow.state.heap_snapshot``).
    """
    kind = type(key)
    if kind is str:
        data = key.encode()
    elif kind is int:
        data = _int_bytes(key)
    elif kind is bytes:
        data = key
    else:
        data = _canonical_bytes(key)
    return (zlib.crc32(data) * _MIX) & 0xFFFFFFFF


def _int_bytes(value: int) -> bytes:
    if -(1 << 127) <= value < (1 << 127):
        return value.to_bytes(16, "little", signed=True)
    return str(value).encode()


def _canonical_bytes(key: Any) -> bytes:
    """The bytes of a key that is not exactly str, int or bytes (see :func:`stable_hash`)."""
    if isinstance(key, float):
        return _int_bytes(int(key)) if key.is_integer() else struct.pack("<d", key)
    if isinstance(key, int):  # bool, IntEnum and other subclasses: as the equal int
        return _int_bytes(int.__index__(key))
    if isinstance(key, str):
        return str.__str__(key).encode()
    if isinstance(key, bytes):
        return bytes(key)
    encoded = key
    if isinstance(key, (tuple, list)):
        # the common case, str and (64-bit) int items, keeps the encoding it always had
        encoded = list(key) if all(map(_is_json_plain, key)) else _plain(key)
    try:
        return orjson.dumps(encoded, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise ConfigError(
            f"key {key!r} of type {type(key).__name__} cannot be hashed stably; key_by must return str, bytes, "
            "int, float, bool, datetimes, UUIDs, enums, or tuples of them"
        ) from exc


def _is_json_plain(item: Any) -> bool:
    kind = type(item)
    return kind is str or (kind is int and _JSON_INT_MIN <= item <= _JSON_INT_MAX)


def _plain(value: Any) -> Any:
    """``value`` with numbers as the int they equal and subclasses as their base, inside
    tuples and lists too: equal keys then encode alike."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if isinstance(value, float):
        if not value.is_integer():
            return float(value)
        value = int(value)
    if isinstance(value, int):
        number = int.__index__(value)
        # JSON ints end at 64 bits here; a wider one is a str that says what it is
        return number if _JSON_INT_MIN <= number <= _JSON_INT_MAX else f"\x00int:{number}"
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):  # JSON has no bytes; a str that says what they are
        return "\x00bytes:" + value.hex()
    return value


def key_group_for(key: Any, max_parallelism: int) -> KeyGroup:
    """The key group ``key`` belongs to."""
    return KeyGroup(stable_hash(key) % max_parallelism)


# Key types whose key group is cached: stable_hash agrees with equality for them, so a
# cache keyed by the key itself (where 1, 1.0 and True are one entry) is exact.
_CACHED_TYPES = frozenset({int, tuple, float, bool, bytes})
_LOOKUP_TYPES = _CACHED_TYPES | {str}


# A full cache that took fewer than this many lookups per entry to fill missed at least
# 1 / _EFFECTIVE of the time: the key set is larger than the cache.
_EFFECTIVE = 4
# Then key groups are computed without the cache for this many keys per cache entry,
# before the cache is tried again (the key set may have shrunk).
_BYPASS_SPAN = 16


class KeyGroupAssigner:
    """``key_group_for`` with a bounded cache, for the hot path (the same users, words,
    ids recur). str keys and the types in ``_CACHED_TYPES`` are cached; equal keys share
    an entry, which is right since they share a key group. (A tuple holding a value
    ``stable_hash`` refuses, such as a Decimal, is accepted when an equal tuple was seen
    first: it is the same dict key, so it shares that key's state anyway.)

    Why the cache is bounded and steps aside: a hit (about 50 ns per key in a batch) beats
    ``stable_hash`` (about 150 ns for a short str) only while the cache stays in the CPU's
    caches; at a million keys a lookup in a million-entry dict costs as much as the hash,
    and a cache of ``limit`` entries over a larger key set mostly misses, paying lookup,
    hash and insert (about 450 ns). So when the cache fills with mostly misses, it is
    cleared and bypassed for ``_BYPASS_SPAN * limit`` keys, then tried again.
    """

    __slots__ = ("max_parallelism", "_cache", "_limit", "_lookups", "_bypass")

    def __init__(self, max_parallelism: int, limit: int = 1 << 18) -> None:
        self.max_parallelism = max_parallelism
        self._cache: dict[Any, int] = {}
        self._limit = limit
        self._lookups = 0  # since the cache was last empty
        self._bypass = 0  # keys still to compute without the cache

    def __call__(self, key: Any) -> int:
        kind = type(key)
        if kind is not str and kind not in _CACHED_TYPES:
            return stable_hash(key) % self.max_parallelism
        if self._bypass:
            self._bypass -= 1
            return stable_hash(key) % self.max_parallelism
        self._lookups += 1
        cache = self._cache
        try:
            group = cache.get(key)
        except TypeError:  # a tuple holding a list: not a dict key, never cached
            return stable_hash(key) % self.max_parallelism
        if group is None:
            group = stable_hash(key) % self.max_parallelism
            if len(cache) >= self._limit:
                self._full()
                if self._bypass:
                    return group
            cache[key] = group
        return group

    def _full(self) -> None:
        """The cache is full: start over, and step aside if it mostly missed."""
        self._cache.clear()
        if self._lookups < _EFFECTIVE * self._limit:
            self._bypass = _BYPASS_SPAN * self._limit
        self._lookups = 0

    def of_all(self, keys: list[Any]) -> list[int]:
        """The key group of each of ``keys``: passes in C when all are of cached types
        and cached (the steady state of a hot path), hashes each while the cache is
        bypassed, else :meth:`__call__` per key. The
        type check keeps an uncached type that equals a cached key (``Decimal(1) == 1``)
        out of the cache lookup, so it is hashed (or refused) exactly as one by one."""
        if self._bypass >= len(keys):
            self._bypass -= len(keys)
            max_parallelism = self.max_parallelism
            return [stable_hash(key) % max_parallelism for key in keys]
        if set(map(type, keys)) <= _LOOKUP_TYPES:
            cache = self._cache
            try:
                groups = list(map(cache.__getitem__, keys))
            except (KeyError, TypeError):
                pass
            else:
                self._lookups += len(groups)
                return groups
        return [self(key) for key in keys]


def key_group_range(max_parallelism: int, parallelism: int, subtask: int) -> range:
    """The contiguous key groups subtask ``subtask`` of ``parallelism`` owns (Flink's split)."""
    start = (subtask * max_parallelism + parallelism - 1) // parallelism
    end = ((subtask + 1) * max_parallelism + parallelism - 1) // parallelism
    return range(start, end)


def subtask_for_key_group(key_group: int, max_parallelism: int, parallelism: int) -> int:
    """The subtask that owns ``key_group``: the inverse of :func:`key_group_range`."""
    return key_group * parallelism // max_parallelism


def subtask_table(max_parallelism: int, parallelism: int) -> list[int]:
    """``table[key_group]`` is its owning subtask: one list index on the hot path."""
    return [subtask_for_key_group(kg, max_parallelism, parallelism) for kg in range(max_parallelism)]


def validate_parallelism(parallelism: int, max_parallelism: int) -> None:
    """Refuse parallelism values the key-group scheme cannot serve."""
    if parallelism < 1:
        raise ConfigError(f"parallelism must be at least 1, got {parallelism!r}")
    if not 1 <= max_parallelism <= 32768:
        raise ConfigError(f"max_parallelism must be in 1..32768, got {max_parallelism!r}")
    if parallelism > max_parallelism:
        raise ConfigError(
            f"parallelism {parallelism!r} exceeds max_parallelism {max_parallelism!r}; "
            "raise max_parallelism (it fixes the number of key groups) or lower parallelism"
        )
