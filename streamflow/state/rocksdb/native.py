"""Native snapshots of the RocksDB backend: its own files, and their restore.

At a barrier, :func:`take_native_snapshot` flushes the memtables and takes a RocksDB
checkpoint: hard links of the database's SST files (immutable, as are its OPTIONS
files) and copies of the small others (MANIFEST, CURRENT) in a staging directory, a consistent copy at
the cost of a flush. The checkpoint layer then puts the files into shared storage
(:mod:`streamflow.checkpoint.incremental`), and the snapshot's ``meta`` goes into the
subtask's state file::

    {"format": "rocksdb-native-2", "operator": "count", "max_parallelism": 128,
     "key_groups": [0, 64], "taken_at": 1.7e9,
     "states": [{"name", "id", "kind", "ttl", "serializer", "recorded", "cut"}, ...],
     "timers": True}

(Format 2 encodes a window namespace as 16 bytes where format 1 pickled it, see
:mod:`~streamflow.state.rocksdb.keys`: the files of a format 1 snapshot are restored by
decoding them, :data:`LEGACY_FORMATS`, never adopted as they are. ``cut``: the TTL after
which a full snapshot leaves a value out, or None. ``timers``:
the files hold the operator's timers (:mod:`streamflow.state.rocksdb.timers`); native
snapshots written before timers moved into the database lack it and have their timers
in the operator snapshot's ``timers`` part.)

:func:`restore_native` restores the files of any number of old subtasks, put back into
local directories: when one old subtask's key groups cover all of this subtask's (the
same parallelism, or a scale-up), its files become this subtask's database as they are
and the key groups outside this subtask's range are deleted; otherwise each old
subtask's files are opened read-only and the key-group ranges this subtask owns are
copied over, the timers' ranges with them. :func:`canonical_from_native` and
:func:`canonical_from_parts` read native files into the canonical snapshot (a savepoint
of a RocksDB job; a restore of a native checkpoint into the heap backend), and
:func:`timers_from_parts` their timers (the latter).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from rocksdict import WriteBatch

from streamflow.errors import StateError
from streamflow.state.backend import NativeSnapshot, RestoredNative
from streamflow.state.rocksdb import db as rdb
from streamflow.state.rocksdb.canonical import StateInfo, write_canonical
from streamflow.state.rocksdb.keys import group_prefix, successor
from streamflow.state.rocksdb.timers import TIMER_IDS, read_timers
from streamflow.state.timers import TimerDomain

__all__ = [
    "LEGACY_FORMATS", "NATIVE_FORMAT", "NativeSource", "canonical_from_native", "canonical_from_parts", "is_native",
    "restore_native", "take_native_snapshot", "timer_counts", "timers_from_parts",
]

NATIVE_FORMAT = "rocksdb-native-2"
LEGACY_FORMATS = frozenset({"rocksdb-native-1"})
"""Native formats whose key encoding differs from today's (windows pickled): readable
entry by entry (canonical_from_parts, timers_from_parts), not adoptable as a database."""
_BATCH = 4096


class NativeSource(Protocol):
    """What native snapshots and restores use of a
    :class:`~streamflow.state.rocksdb.backend.RocksDBKeyedStateBackend`."""

    operator_uid: str
    max_parallelism: int
    key_group_range: range

    @property
    def database(self) -> rdb.CachedDatabase: ...

    @property
    def budget(self) -> rdb.MemoryBudget: ...

    def state_infos(self) -> list[StateInfo]: ...

    def has_states(self) -> bool: ...

    def adopt_database(self, directory: Path, states: Iterable[StateInfo]) -> None: ...

    def state_for_restore(self, saved: StateInfo) -> StateInfo: ...


def is_native(snapshot: Any) -> bool:
    """Whether a keyed snapshot is a native RocksDB one rather than a canonical one."""
    return isinstance(snapshot, Mapping) and snapshot.get("format") == NATIVE_FORMAT


def take_native_snapshot(
    backend: NativeSource, directory: Path, *, now: float, cut: Callable[[StateInfo], float | None]
) -> NativeSnapshot:
    """Flush and hard-link the backend's database into ``directory`` (must not exist);
    ``cut(info)`` is the TTL a full snapshot applies to a state (None: keep all)."""
    rdb.create_checkpoint(backend.database, directory)
    files = {entry.name: entry.stat().st_size for entry in os.scandir(directory) if entry.is_file()}
    meta = {
        "format": NATIVE_FORMAT,
        "operator": backend.operator_uid,
        "max_parallelism": backend.max_parallelism,
        "key_groups": [backend.key_group_range.start, backend.key_group_range.stop],
        "taken_at": now,
        "states": [{**info.meta(), "cut": cut(info)} for info in backend.state_infos()],
        "timers": True,
    }
    # SST files never change; RocksDB writes options to a new OPTIONS-<n> file each time
    # (MANIFEST and CURRENT do change: they are stored anew with every snapshot)
    immutable = frozenset(name for name in files if name.endswith(".sst") or name.startswith("OPTIONS-"))
    return NativeSnapshot(directory=directory, files=files, immutable=immutable, meta=meta)


def canonical_from_native(snapshot: NativeSnapshot, budget: rdb.MemoryBudget) -> dict[str, Any]:
    """The canonical snapshot of a native one (its files opened read-only), with the
    full-snapshot TTL cleanup it recorded. Touches no live backend: runs in a thread."""
    meta = snapshot.meta
    start, stop = meta["key_groups"]
    cuts = {state["name"]: state.get("cut") for state in meta["states"]}
    db = rdb.open_read_only(snapshot.directory, budget)
    try:
        infos = [_info(state) for state in meta["states"]]
        return write_canonical(db, infos, range(start, stop), float(meta["taken_at"]), lambda info: cuts[info.name])
    finally:
        db.close()


def canonical_from_parts(parts: Sequence[RestoredNative], key_groups: range) -> list[dict[str, Any]]:
    """Canonical snapshots of the key groups of ``key_groups`` held by native parts (a
    native checkpoint restored into another backend). Runs in a thread."""
    budget = rdb.MemoryBudget(rdb.MIN_BUDGET)
    out = []
    for part in parts:
        start, stop = part.meta["key_groups"]
        groups = range(max(start, key_groups.start), min(stop, key_groups.stop))
        if not groups:
            continue
        db = rdb.open_read_only(part.directory, budget)
        try:
            infos = [_info(state) for state in part.meta["states"]]
            out.append(write_canonical(db, infos, groups, 0.0, lambda _info: None))
        finally:
            db.close()
    return out


def timers_from_parts(parts: Sequence[RestoredNative], key_groups: range) -> dict[TimerDomain, list[Any]]:
    """The timers of the key groups of ``key_groups`` held by native parts, as
    ``(timestamp, key_group, key)`` entries per domain (a native checkpoint restored
    into a backend that keeps timers in memory). Runs in a thread."""
    budget = rdb.MemoryBudget(rdb.MIN_BUDGET)
    out: dict[TimerDomain, list[Any]] = {domain: [] for domain in TIMER_IDS}
    for part in parts:
        start, stop = part.meta["key_groups"]
        groups = range(max(start, key_groups.start), min(stop, key_groups.stop))
        if not groups or not part.meta.get("timers"):
            continue
        db = rdb.open_read_only(part.directory, budget)
        try:
            for domain, timer_id in TIMER_IDS.items():
                for key_group in groups:
                    out[domain].extend(read_timers(db, key_group, timer_id))
        finally:
            db.close()
    for entries in out.values():
        entries.sort(key=lambda entry: entry[0])
    return out


def timer_counts(part: RestoredNative) -> dict[TimerDomain, int]:
    """How many timers of each domain a native part's files hold (``streamflow inspect``:
    counted, not decoded). Runs in a thread."""
    counts: dict[TimerDomain, int] = {domain: 0 for domain in TIMER_IDS}
    if not part.meta.get("timers"):
        return counts
    start, stop = part.meta["key_groups"]
    db = rdb.open_read_only(part.directory, rdb.MemoryBudget(rdb.MIN_BUDGET))
    try:
        for domain, timer_id in TIMER_IDS.items():
            for key_group in range(start, stop):
                prefix = group_prefix(key_group, timer_id)
                counts[domain] += sum(1 for _ in rdb.scan(db, prefix, successor(prefix)))
    finally:
        db.close()
    return counts


def check_parts(parts: Sequence[RestoredNative], max_parallelism: int, operator: str) -> None:
    """Refuse parts of another format or max parallelism.

    Raises:
        StateError: naming the operator and what differs.
    """
    for part in parts:
        if not is_native(part.meta):
            raise StateError(
                f"operator {operator!r}: not a native RocksDB snapshot (format {part.meta.get('format')!r})",
                operator=operator,
            )
        if part.meta["max_parallelism"] != max_parallelism:
            raise StateError(
                f"a native snapshot of {part.meta.get('operator')!r} has max_parallelism "
                f"{part.meta['max_parallelism']}, this backend {max_parallelism}; restore with the "
                "max_parallelism it was taken with",
                operator=operator,
            )


async def restore_native(backend: NativeSource, parts: Sequence[RestoredNative]) -> bool:
    """Load this subtask's key groups from old subtasks' native files (see the module
    docstring); returns True when the files of one old subtask with exactly this
    subtask's key groups became its database (its files are then shared as they are).

    Raises:
        StateError: a part is of another format or max parallelism, or its states
            conflict with states registered already.
    """
    own = backend.key_group_range
    check_parts(parts, backend.max_parallelism, backend.operator_uid)
    relevant = [part for part in parts if _overlaps(part.meta["key_groups"], own)]
    for part in relevant:
        start, stop = part.meta["key_groups"]
        if len(relevant) == 1 and start <= own.start and own.stop <= stop and not backend.has_states():
            backend.adopt_database(part.directory, [_info(state) for state in part.meta["states"]])
            return (start, stop) == (own.start, own.stop)
        ids = {state["id"]: backend.state_for_restore(_info(state)).state_id for state in part.meta["states"]}
        if part.meta.get("timers"):
            ids.update({timer_id: timer_id for timer_id in TIMER_IDS.values()})
        groups = range(max(start, own.start), min(stop, own.stop))
        await asyncio.to_thread(_copy_ranges, backend.database, backend.budget, part.directory, ids, groups)
        await asyncio.to_thread(rdb.remove_directory, part.directory)
    return False


def _overlaps(key_groups: Sequence[int], own: range) -> bool:
    start, stop = key_groups
    return start < own.stop and own.start < stop


def _info(meta: Mapping[str, Any]) -> StateInfo:
    info = StateInfo(meta["name"], meta["kind"], meta["id"], meta["ttl"], meta["serializer"])
    info.recorded = meta["serializer"]  # what the bytes are: a descriptor naming another serializer is refused
    return info


def _copy_ranges(db: rdb.CachedDatabase, budget: rdb.MemoryBudget, directory: Path, ids: Mapping[int, int], groups: range) -> None:
    """Copy the entries of ``groups`` from an old subtask's database into ``db``, its
    state ids mapped by ``ids`` (old id -> id here). Runs in a thread: reads the old
    files, writes batches, touches no Python state of the backend."""
    old = rdb.open_read_only(directory, budget)
    try:
        for old_id, new_id in ids.items():
            new_id_bytes = new_id.to_bytes(2, "big")
            batch = WriteBatch(raw_mode=True)
            for key_group in groups:
                prefix = group_prefix(key_group, old_id)
                for entry, raw in rdb.scan(old, prefix, successor(prefix)):
                    batch.put(entry[:2] + new_id_bytes + entry[4:], raw)
                    if len(batch) >= _BATCH:
                        db.write(batch)
                        batch = WriteBatch(raw_mode=True)
            if len(batch):
                db.write(batch)
    finally:
        old.close()
