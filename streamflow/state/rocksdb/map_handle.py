"""MapState on RocksDB: one database entry per user key (see
:mod:`streamflow.state.rocksdb.keys`), so ``get`` and ``put`` are point operations and
iteration is a prefix scan over the current key's entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from rocksdict import WriteBatch

from streamflow.state.descriptors import MapStateDescriptor
from streamflow.state.keyed import MapState
from streamflow.state.rocksdb.handles import (
    NOT_HEAP,
    RocksKeyContext,
    StateAccess,
    entry_of,
    read_single,
    touch,
    write_single,
)
from streamflow.state.rocksdb.db import scan
from streamflow.state.rocksdb.keys import decode_key, encode_key, successor
from streamflow.state.rocksdb.values import ABSENT, TS, body_offset, header, key_form, original_keys

__all__ = ["RocksMapState"]

K = TypeVar("K")
V = TypeVar("V")


class RocksMapState(MapState[K, V]):
    """MapState on RocksDB: one entry per user key, so ``get`` and ``put`` are point
    operations and iteration is a prefix scan. Iteration order is the order of the
    canonical map-key bytes (deterministic), not insertion order as in the heap backend."""

    __slots__ = ("_st",)

    def __init__(self, descriptor: MapStateDescriptor[K, V], ctx: RocksKeyContext, access: StateAccess) -> None:
        super().__init__(descriptor, ctx, NOT_HEAP)
        self._st = access

    def _map_entry(self, map_key: Any) -> tuple[bytes, bytes]:
        prefix, head = entry_of(self)
        encoded, exact = encode_key(map_key)
        if exact:
            return prefix + encoded, head
        key_original, _ = original_keys(head)
        return prefix + encoded, header(None if key_original is ABSENT else key_form(key_original), key_form(map_key))

    def _entries(self) -> Iterator[tuple[bytes, Any, bytes, int]]:
        """``(entry key, map key, raw, body offset)`` of the current key's entries."""
        prefix, _ = entry_of(self)
        size = len(prefix)
        for entry, raw in scan(self._st.db, prefix, successor(prefix)):
            offset = body_offset(raw)
            map_key = decode_key(entry[size:]) if raw[0] == 0 else _original_map_key(entry[size:], raw)
            yield entry, map_key, raw, offset

    def _visible(self) -> list[tuple[Any, bytes]]:
        """``(map key, payload)`` of every visible entry, applying TTL read rules."""
        st = self._st
        ttl = st.ttl
        if ttl is None:
            return [(map_key, raw[offset:]) for _, map_key, raw, offset in self._entries()]
        now = ttl.clock.now()
        result = []
        for entry, map_key, raw, offset in list(self._entries()):
            payload = _ttl_read(st, entry, raw, offset, now)
            if payload is not None:
                result.append((map_key, payload))
        return result

    def get(self, map_key: K, default: V | None = None) -> V | None:
        st = touch(self)
        entry, _ = self._map_entry(map_key)
        payload = read_single(st, entry)
        return default if payload is None else st.load(payload)

    def put(self, map_key: K, value: V) -> None:
        st = touch(self)
        entry, head = self._map_entry(map_key)
        write_single(st, entry, head, st.dump(value, f", map key {map_key!r}"))

    def put_all(self, mapping: Mapping[K, V]) -> None:
        st = touch(self)
        ttl = st.ttl
        entry_of(self)  # no current key: fail before anything is written
        stamp = b"" if ttl is None else TS.pack(ttl.clock.now())
        batch = WriteBatch(raw_mode=True)
        for map_key, value in mapping.items():
            entry, head = self._map_entry(map_key)
            batch.put(entry, head + stamp + st.dump(value, f", map key {map_key!r}"))
        if len(batch):
            st.db.write(batch)

    def remove(self, map_key: K) -> None:
        st = touch(self)
        st.db.delete(self._map_entry(map_key)[0])

    def contains(self, map_key: K) -> bool:
        st = touch(self)
        return read_single(st, self._map_entry(map_key)[0]) is not None

    def keys(self) -> list[K]:
        touch(self)
        return [map_key for map_key, _ in self._visible()]

    def values(self) -> list[V]:
        st = touch(self)
        return [st.load(payload) for _, payload in self._visible()]

    def items(self) -> list[tuple[K, V]]:
        st = touch(self)
        return [(map_key, st.load(payload)) for map_key, payload in self._visible()]

    def is_empty(self) -> bool:
        """Whether no entry is visible; does not refresh or remove anything."""
        st = touch(self)
        ttl = st.ttl
        now = 0.0 if ttl is None else ttl.clock.now()
        for _, _, raw, offset in self._entries():
            if ttl is None or ttl.return_expired or TS.unpack_from(raw, offset)[0] + ttl.ttl > now:
                return False
        return True

    def clear(self) -> None:
        st = touch(self)
        prefix, _ = entry_of(self)
        batch = WriteBatch(raw_mode=True)
        for entry, _ in scan(st.db, prefix, successor(prefix)):
            batch.delete(entry)
        if len(batch):
            st.db.write(batch)


def _original_map_key(encoded: bytes, raw: bytes) -> Any:
    _, original = original_keys(raw)
    return decode_key(encoded) if original is ABSENT else original


def _ttl_read(st: StateAccess, entry: bytes, raw: bytes, offset: int, now: float) -> bytes | None:
    """TTL read rules for one map entry already read: refresh, clean up, hide."""
    ttl = st.ttl
    assert ttl is not None
    stamp = TS.unpack_from(raw, offset)[0]
    payload = raw[offset + 8 :]
    if stamp + ttl.ttl > now:
        if ttl.refresh_on_read:
            st.db.put(entry, raw[:offset] + TS.pack(now) + payload)
        return payload
    if ttl.cleanup_on_read:
        st.db.delete(entry)
    return payload if ttl.return_expired else None
