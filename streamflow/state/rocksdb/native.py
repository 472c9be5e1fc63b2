"""Native, incremental snapshots of the RocksDB backend, and their restore.

At a barrier, :func:`take_native_snapshot` flushes the memtables and takes a RocksDB
checkpoint: hard links of the database's files in a staging directory, a consistent
copy at the cost of a flush (the short synchronous part). :func:`upload_native` then,
asynchronously, writes into checkpoint storage's ``shared/`` the SST files no
completed checkpoint holds yet (see :mod:`streamflow.checkpoint.shared_files`), keeps
the few small other files (MANIFEST, CURRENT, OPTIONS) inline, and returns the handle
that goes into the subtask's state file::

    {"format": "rocksdb-native-1", "max_parallelism": 128, "key_groups": [0, 64],
     "states": [{"name", "id", "kind", "ttl", "serializer", "recorded"}, ...],
     "shared": {"000042.sst": {"name": "12-count-0-000042.sst", "size": .., "sha256": ..}},
     "private": {"MANIFEST-000005": b"...", "CURRENT": b"...", ...}}

:func:`restore_native` restores handles of any number of old subtasks: when one old
subtask's key groups cover all of this subtask's (the same parallelism, or a scale-up),
its files become this subtask's database as they are (hard links) and the key groups
outside this subtask's range are deleted; otherwise each old subtask's files are opened
read-only and the key-group ranges this subtask owns are copied over.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rocksdict import Rdict, WriteBatch

from streamflow.checkpoint.shared_files import ReuseTracker, SharedFile, SharedFileStore
from streamflow.errors import StateError
from streamflow.state.rocksdb import db as rdb
from streamflow.state.rocksdb.canonical import StateInfo
from streamflow.state.rocksdb.keys import group_prefix, successor

if TYPE_CHECKING:
    from streamflow.state.rocksdb.backend import RocksDBKeyedStateBackend

__all__ = ["NATIVE_FORMAT", "NativeSnapshot", "is_native", "restore_native", "take_native_snapshot", "upload_native"]

NATIVE_FORMAT = "rocksdb-native-1"
_BATCH = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class NativeSnapshot:
    """A RocksDB checkpoint in ``directory`` (hard links, consistent), the size of each
    of its files, and what a restore needs to read it (``meta``)."""

    directory: Path
    files: Mapping[str, int]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sst_files(self) -> dict[str, int]:
        return {name: size for name, size in self.files.items() if name.endswith(".sst")}

    @property
    def size(self) -> int:
        return sum(self.files.values())


def is_native(snapshot: Any) -> bool:
    """Whether a keyed snapshot is a native handle rather than a canonical format."""
    return isinstance(snapshot, dict) and snapshot.get("format") == NATIVE_FORMAT


def take_native_snapshot(backend: RocksDBKeyedStateBackend, directory: Path) -> NativeSnapshot:
    """Flush and hard-link the backend's database into ``directory`` (must not exist)."""
    rdb.create_checkpoint(backend.database, directory)
    files = {entry.name: entry.stat().st_size for entry in os.scandir(directory) if entry.is_file()}
    meta = {
        "format": NATIVE_FORMAT,
        "operator": backend.operator_uid,
        "max_parallelism": backend.max_parallelism,
        "key_groups": [backend.key_group_range.start, backend.key_group_range.stop],
        "states": [info.meta() for info in backend.state_infos()],
    }
    return NativeSnapshot(directory=directory, files=files, meta=meta)


async def upload_native(
    snapshot: NativeSnapshot, *, checkpoint_id: int, owner: str, store: SharedFileStore, tracker: ReuseTracker
) -> dict[str, Any]:
    """Write the snapshot's new SST files to shared storage and return its handle.

    Files the tracker knows from a completed checkpoint are referenced, not written;
    the tracker records this checkpoint's files (:meth:`ReuseTracker.confirm` makes
    them reusable once the checkpoint completes). Reads only the staging directory.
    """
    ssts = snapshot.sst_files
    shared: dict[str, SharedFile] = tracker.reusable(ssts)
    for local in sorted(set(ssts) - set(shared)):
        shared[local] = await store.upload(checkpoint_id, owner, snapshot.directory / local)
    private = {
        name: await asyncio.to_thread((snapshot.directory / name).read_bytes)
        for name in sorted(snapshot.files)
        if name not in ssts
    }
    tracker.record(checkpoint_id, shared)
    return {**snapshot.meta, "shared": {local: ref.to_dict() for local, ref in sorted(shared.items())},
            "private": private}  # fmt: skip


def shared_files_of(handle: Mapping[str, Any]) -> dict[str, SharedFile]:
    """Local name -> shared file of a native handle."""
    return {local: SharedFile.from_dict(ref) for local, ref in handle["shared"].items()}


async def restore_native(
    backend: RocksDBKeyedStateBackend,
    handles: Iterable[Mapping[str, Any]],
    *,
    store: SharedFileStore,
    tracker: ReuseTracker | None = None,
    checkpoint_id: int | None = None,
) -> None:
    """Load this subtask's key groups from native handles of old subtasks.

    Raises:
        CheckpointCorruptedError: a shared file is missing or damaged.
        StateError: a handle is of another format or max parallelism, or its states
            conflict with states registered already.
    """
    own = backend.key_group_range
    relevant = []
    for handle in handles:
        if not is_native(handle):
            raise StateError(f"not a native RocksDB snapshot handle: format {handle.get('format')!r}")
        if handle["max_parallelism"] != backend.max_parallelism:
            raise StateError(
                f"a native snapshot of {handle.get('operator')!r} has max_parallelism {handle['max_parallelism']}, "
                f"this backend {backend.max_parallelism}; restore with the max_parallelism it was taken with",
                operator=backend.operator_uid,
            )
        start, stop = handle["key_groups"]
        if start < own.stop and own.start < stop:
            relevant.append(handle)
    scratch = backend.directory / "restore"
    for index, handle in enumerate(relevant):
        start, stop = handle["key_groups"]
        directory = scratch / str(index)
        await _materialize(handle, directory, store, checkpoint_id)
        if len(relevant) == 1 and start <= own.start and own.stop <= stop and not backend.has_states():
            backend.adopt_database(directory, [_info(meta) for meta in handle["states"]])
            if tracker is not None and (start, stop) == (own.start, own.stop):
                tracker.seed(shared_files_of(handle))  # the same files: reusable as they are
            return
        ids = {meta["id"]: backend.state_for_restore(_info(meta)).state_id for meta in handle["states"]}
        groups = range(max(start, own.start), min(stop, own.stop))
        await asyncio.to_thread(_copy_ranges, backend.database, backend.budget, directory, ids, groups)
        await asyncio.to_thread(rdb.remove_directory, directory)


async def _materialize(handle: Mapping[str, Any], directory: Path, store: SharedFileStore,
                       checkpoint_id: int | None) -> None:  # fmt: skip
    await store.materialize(shared_files_of(handle), directory, checkpoint_id=checkpoint_id)
    for name, data in handle["private"].items():
        await asyncio.to_thread((directory / name).write_bytes, data)


def _info(meta: Mapping[str, Any]) -> StateInfo:
    info = StateInfo(meta["name"], meta["kind"], meta["id"], meta["ttl"], meta["serializer"])
    info.recorded = meta["serializer"]  # what the bytes are: a descriptor naming another serializer is refused
    return info


def _copy_ranges(db: Rdict, budget: rdb.MemoryBudget, directory: Path, ids: Mapping[int, int], groups: range) -> None:
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
