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


def stable_hash(key: Any) -> int:
    """A 32-bit hash of ``key`` that is identical across processes and runs.

    str, bytes, int, float and bool hash their canonical bytes; anything else hashes its
    orjson encoding (tuples and lists of the same items hash alike).
    """
    kind = type(key)
    if kind is str:
        data = key.encode()
    elif kind is bytes:
        data = key
    elif kind is int:
        data = key.to_bytes(16, "little", signed=True) if -(1 << 127) <= key < (1 << 127) else str(key).encode()
    elif kind is float:
        data = struct.pack("<d", key)
    elif kind is bool:
        data = b"\x01" if key else b"\x00"
    else:
        try:
            data = orjson.dumps(key, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            raise ConfigError(
                f"key {key!r} of type {kind.__name__} cannot be hashed stably; "
                "key_by must return str, bytes, int, float, bool, or tuples/lists/dicts of them"
            ) from exc
    return (zlib.crc32(data) * _MIX) & 0xFFFFFFFF


def key_group_for(key: Any, max_parallelism: int) -> KeyGroup:
    """The key group ``key`` belongs to."""
    return KeyGroup(stable_hash(key) % max_parallelism)


class KeyGroupAssigner:
    """``key_group_for`` with a bounded cache for str keys, the common case on the hot
    path (the same users, words, ids recur). Only str keys are cached: ``1``, ``1.0`` and
    ``True`` are equal dict keys but hash to different key groups."""

    __slots__ = ("max_parallelism", "_cache", "_limit")

    def __init__(self, max_parallelism: int, limit: int = 1 << 16) -> None:
        self.max_parallelism = max_parallelism
        self._cache: dict[str, int] = {}
        self._limit = limit

    def __call__(self, key: Any) -> int:
        if type(key) is not str:
            return stable_hash(key) % self.max_parallelism
        cache = self._cache
        group = cache.get(key)
        if group is None:
            group = stable_hash(key) % self.max_parallelism
            if len(cache) >= self._limit:
                cache.clear()
            cache[key] = group
        return group


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
