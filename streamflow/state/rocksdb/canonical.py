"""RocksDB state to and from the canonical snapshot (the heap backend's format 2).

A savepoint (and a full checkpoint, ``incremental=False``) holds keyed state in one
backend-independent form, so state saved by either backend restores into the other.
:func:`write_canonical` reads every entry of this subtask and builds exactly the
structure :mod:`streamflow.state.heap_snapshot` documents: per state its kind, TTL flag,
serializer name and ``{key group: {key: stored}}``, where ``stored`` is the heap shape
(values of states with the default pickle serializer as objects, other serializers'
values as their bytes, TTL values as ``(value, ts)``). :func:`load_canonical` goes the
other way: it lets the heap's reader parse format 1 or 2 snapshots (all the format
rules, serializer checks and TTL conversions live there) into scratch tables, then
writes them into the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rocksdict import WriteBatch

from streamflow.state.heap_snapshot import SNAPSHOT_FORMAT, StoredState, read_snapshot
from streamflow.state.rocksdb.db import CachedDatabase, Database, scan
from streamflow.state.rocksdb.keys import decode_key, encode_key, group_prefix, key_part, split_entry_key, successor
from streamflow.state.rocksdb.values import (
    ABSENT,
    PLAIN,
    TS,
    body_offset,
    header,
    key_form,
    original_keys,
    pack_elements,
    pack_stamped,
    unpack_elements,
)
from streamflow.state.serializers import PickleSerializer
from streamflow.state.shapes import SHAPES

__all__ = [
    "StateInfo", "decode_body", "encode_body", "load_canonical", "read_entries", "state_keys", "write_canonical",
]

_PICKLER = PickleSerializer()
_PICKLE = _PICKLER.name
_BATCH = 4096


class StateInfo:
    """One state name of a RocksDB keyed backend: what the database holds for it, and,
    once ``get_state`` registered it, its descriptor and handle.

    ``written_with`` names the serializer whose bytes the database holds; ``recorded``
    the serializer name a restored snapshot gave (None: none restored, or format 1).
    """

    __slots__ = (
        "name", "kind", "state_id", "has_ttl", "written_with", "recorded", "descriptor", "serializer", "access",
        "handle",
    )  # fmt: skip

    def __init__(self, name: str, kind: str, state_id: int, has_ttl: bool, written_with: str) -> None:
        self.name = name
        self.kind = kind
        self.state_id = state_id
        self.has_ttl = has_ttl
        self.written_with = written_with
        self.recorded: str | None = None
        self.descriptor: Any = None
        self.serializer: Any = None
        self.access: Any = None
        self.handle: Any = None

    def meta(self) -> dict[str, Any]:
        """What a native snapshot records of this state (plain data)."""
        return {
            "name": self.name, "id": self.state_id, "kind": self.kind, "ttl": self.has_ttl,
            "serializer": self.written_with, "recorded": self.recorded,
        }  # fmt: skip


# -- one entry's body -------------------------------------------------------------------


def decode_body(kind: str, ttl: bool, raw: bytes, offset: int) -> list[tuple[bytes, float]]:
    """``(payload, ts)`` of each value in an entry (one, except for list state)."""
    if kind == "list":
        return unpack_elements(raw, offset, ttl)
    if ttl:
        return [(raw[offset + 8 :], TS.unpack_from(raw, offset)[0])]
    return [(raw[offset:], 0.0)]


def encode_body(kind: str, ttl: bool, values: list[tuple[bytes, float]]) -> bytes:
    if kind == "list":
        if not ttl:
            return pack_elements([payload for payload, _ in values], None)
        return b"".join(pack_stamped(payload, ts) for payload, ts in values)
    payload, ts = values[0]
    return TS.pack(ts) + payload if ttl else payload


def read_entries(db: Database, key_group: int, state_id: int) -> Iterator[tuple[bytes, bytes]]:
    prefix = group_prefix(key_group, state_id)
    return scan(db, prefix, successor(prefix))


def _keys_of(entry: bytes, raw: bytes) -> tuple[int, Any, Any]:
    """``(key group, state key, map key or ABSENT)`` of an entry, as the user wrote them."""
    key_group, _, key_bytes, map_bytes = split_entry_key(entry)
    key_original, map_original = original_keys(raw) if raw[0] != 0 else (ABSENT, ABSENT)
    key = decode_key(key_bytes) if key_original is ABSENT else key_original
    if not map_bytes:
        return key_group, key, ABSENT
    return key_group, key, decode_key(map_bytes) if map_original is ABSENT else map_original


def state_keys(db: Database, info: StateInfo, key_groups: range, visible: Callable[[bytes, int], bool] | None
               ) -> Iterator[tuple[Any, int]]:  # fmt: skip
    """``(key, key group)`` of each key with an entry in the state (map keys once), those
    with no ``visible`` entry left out. Each key group is read before its keys are yielded."""
    for key_group in key_groups:
        found: list[tuple[Any, int]] = []
        last: bytes | None = None
        seen = False
        for entry, raw in read_entries(db, key_group, info.state_id):
            key_bytes = split_entry_key(entry)[2]
            if key_bytes != last:
                last, seen = key_bytes, False
            if seen or (visible is not None and not visible(raw, body_offset(raw))):
                continue
            found.append((_keys_of(entry, raw)[1], key_group))
            seen = True
        yield from found


# -- database -> format 2 ---------------------------------------------------------------


def write_canonical(db: Database, states: Iterable[StateInfo], key_groups: range, now: float,
                    full_snapshot_ttl: Callable[[StateInfo], float | None]) -> dict[str, Any]:  # fmt: skip
    """The format-2 snapshot of every state (see the module docstring)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "states": {info.name: _write_state(db, info, key_groups, now, full_snapshot_ttl(info)) for info in states},
    }


def _write_state(db: Database, info: StateInfo, key_groups: range, now: float, cut: float | None) -> dict[str, Any]:
    kind, ttl = info.kind, info.has_ttl
    load: Callable[[bytes], Any] | None = _PICKLER.loads if info.written_with == _PICKLE else None
    live = SHAPES[kind].live
    out: dict[int, dict[Any, Any]] = {}
    for key_group in key_groups:
        entries: dict[Any, Any] = {}
        for entry, raw in read_entries(db, key_group, info.state_id):
            _, key, map_key = _keys_of(entry, raw)
            values = [
                ((payload if load is None else load(payload)), ts) if ttl else (payload if load is None else load(payload))
                for payload, ts in decode_body(kind, ttl, raw, body_offset(raw))
            ]
            if kind == "map":
                entries.setdefault(key, {})[map_key] = values[0]
            else:
                entries[key] = values if kind == "list" else values[0]
        if cut is not None:
            entries = {key: kept for key, stored in entries.items() if (kept := live(stored, now, cut)) is not None}
        if entries:
            out[key_group] = entries
    return {"kind": kind, "ttl": ttl, "serializer": info.written_with, "key_groups": out}


# -- format 1 or 2 -> database ----------------------------------------------------------


def load_canonical(
    db: CachedDatabase,
    snapshots: Iterable[dict[str, Any]],
    *,
    states: dict[str, StateInfo],
    new_state: Callable[[str, str, bool], StateInfo],
    check_kind: Callable[[str, Any], None],
    key_groups: range,
    max_parallelism: int,
    now: float,
    operator: str,
) -> None:
    """Write the key groups of ``key_groups`` of old subtasks' snapshots into ``db``.

    The heap reader parses each snapshot into scratch tables (one per state name, shared
    by all snapshots so that inconsistent serializers across old subtasks are caught);
    registered states get their values decoded and checked against their serializer,
    TTL switched on or off as registered. ``new_state(name, kind, has_ttl)`` makes the
    StateInfo of a state not known yet; ``check_kind`` refuses a kind conflict.
    """
    scratch: dict[str, StoredState] = {}

    def target(name: str, kind: Any, had_ttl: bool) -> StoredState:
        check_kind(name, kind)
        stored = scratch.get(name)
        if stored is None:
            info = states.get(name)
            stored = scratch[name] = StoredState(name, kind, had_ttl if info is None else info.has_ttl)
            if info is not None:
                stored.serializer = info.serializer
                stored.recorded = info.recorded
        return stored

    for snapshot in snapshots:
        if snapshot == {}:
            continue  # an old subtask that held no keyed state
        read_snapshot(snapshot, target=target, key_groups=key_groups, max_parallelism=max_parallelism, now=now,
                      operator=operator)  # fmt: skip
        for name, stored in scratch.items():
            info = states.get(name)
            if info is None:
                info = new_state(name, stored.kind, stored.has_ttl)
            _store(db, info, stored)
            stored.table.clear()


def _store(db: CachedDatabase, info: StateInfo, stored: StoredState) -> None:
    """Write one scratch table into the database and record its serializer."""
    if info.serializer is not None:  # registered: the reader decoded every value
        dumps = info.serializer.dumps
        written = info.serializer.name
    elif stored.encoded:  # the bytes of the recorded serializer, kept as they are
        dumps = None
        written = stored.recorded or _PICKLE
    else:  # objects: saved with pickle in place, or format 1
        dumps = _PICKLER.dumps
        written = _PICKLE
    if info.serializer is None:
        info.recorded = stored.recorded
        info.written_with = written
    kind, ttl = info.kind, info.has_ttl
    batch = WriteBatch(raw_mode=True)
    for key_group, group in stored.table.items():
        prefix = group_prefix(key_group, info.state_id)
        for key, value in group.items():
            encoded, exact = encode_key(key)
            head_form = None if exact else key_form(key)
            entry = prefix + key_part(encoded)
            if kind == "map":
                for map_key, map_value in value.items():
                    map_encoded, map_exact = encode_key(map_key)
                    head = header(head_form, None if map_exact else key_form(map_key))
                    batch.put(entry + map_encoded, head + encode_body(kind, ttl, [_payload(map_value, ttl, dumps)]))
            else:
                values = [_payload(item, ttl, dumps) for item in value] if kind == "list" else [_payload(value, ttl, dumps)]
                if values:
                    batch.put(entry, (PLAIN if head_form is None else header(head_form)) + encode_body(kind, ttl, values))
            if len(batch) >= _BATCH:
                db.write(batch)
                batch = WriteBatch(raw_mode=True)
    if len(batch):
        db.write(batch)


def _payload(stored: Any, ttl: bool, dumps: Callable[[Any], bytes] | None) -> tuple[bytes, float]:
    value, ts = stored if ttl else (stored, 0.0)
    return (value if dumps is None else dumps(value)), float(ts)
