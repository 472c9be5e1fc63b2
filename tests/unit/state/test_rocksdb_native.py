"""Native (incremental) snapshots of the RocksDB backend: upload into a real shared
folder, restore at the same and at other parallelisms, dedup, damage, retention."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamflow.checkpoint.shared_files import ReuseTracker, SharedFileRegistry, SharedFileStore, orphans
from streamflow.errors import CheckpointCorruptedError
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.runtime.clock import ManualClock
from streamflow.state import (
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend, RocksDBKeyedStateBackend
from streamflow.state.rocksdb.native import restore_native, upload_native

MAX_PARALLELISM = 16
VALUE = ValueStateDescriptor("value", default=0)
LIST = ListStateDescriptor[Any]("list")
MAP = MapStateDescriptor[Any, Any]("map")
SUM = ReducingStateDescriptor("sum", operator.add, ttl=StateTtlConfig(ttl=1000.0))
KEYS: list[Any] = [f"user-{i}" for i in range(300)] + [(i, "t") for i in range(40)] + [True, 2.5]


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[Any]:
    made: list[RocksDBKeyedStateBackend] = []
    state = EmbeddedRocksDBStateBackend(tmp_path / "work", memory_budget=16 << 20)

    def make(parallelism: int = 1, subtask: int = 0, clock: ManualClock | None = None) -> RocksDBKeyedStateBackend:
        backend = state.create_keyed_backend(
            operator_uid="count", subtask_index=subtask, max_parallelism=MAX_PARALLELISM,
            key_group_range=key_group_range(MAX_PARALLELISM, parallelism, subtask), clock=clock or ManualClock(),
        )  # fmt: skip
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def fill(backend: RocksDBKeyedStateBackend, keys: list[Any], round_: int = 0) -> None:
    handles = [backend.get_state(d) for d in (VALUE, LIST, MAP, SUM)]
    value, items, index, total = handles
    for n, key in enumerate(keys):
        group = key_group_for(key, MAX_PARALLELISM)
        if group not in backend.key_group_range:
            continue
        backend.set_current_key(key, group)
        value.update(n + round_)
        items.add((key, round_))
        index.put(("m", n % 3), {round_: key})
        total.add(n)


def by_key(snapshots: list[dict[str, Any]]) -> dict[str, dict[Any, Any]]:
    """Per state, every key's stored value, from canonical snapshots of any subtasks."""
    merged: dict[str, dict[Any, Any]] = {}
    for snapshot in snapshots:
        for name, state in snapshot["states"].items():
            for group in state["key_groups"].values():
                merged.setdefault(name, {}).update(group)
    return merged


async def checkpoint(backend: RocksDBKeyedStateBackend, n: int, store: SharedFileStore, tracker: ReuseTracker,
                     staging: Path) -> dict[str, Any]:  # fmt: skip
    snapshot = backend.snapshot_native(staging / f"chk-{n}")
    try:
        return await upload_native(snapshot, checkpoint_id=n, owner=f"count-{backend.subtask_index}", store=store,
                                   tracker=tracker)  # fmt: skip
    finally:
        import shutil

        shutil.rmtree(snapshot.directory)


async def test_restore_at_the_same_parallelism_reuses_the_files(factory: Any, tmp_path: Path) -> None:
    store, tracker = SharedFileStore(tmp_path / "chk"), ReuseTracker()
    original = factory()
    fill(original, KEYS)
    handle = await checkpoint(original, 1, store, tracker, tmp_path / "staging")
    assert handle["shared"] and all(name.endswith(".sst") for name in handle["shared"])
    assert set(handle["private"]) >= {"CURRENT"}

    restored = factory()
    seeded = ReuseTracker()
    await restore_native(restored, [handle], store=store, tracker=seeded)
    assert by_key([restored.snapshot()]) == by_key([original.snapshot()])
    restored.set_current_key("user-7", key_group_for("user-7", MAX_PARALLELISM))
    assert restored.get_state(VALUE).value() == 7
    assert restored.get_state(LIST).get() == [("user-7", 0)]
    # the files it restored count as uploaded: an unchanged database uploads nothing new
    again = await checkpoint(restored, 2, store, seeded, tmp_path / "staging")
    assert {ref["name"] for ref in again["shared"].values()} == {ref["name"] for ref in handle["shared"].values()}


async def test_a_second_checkpoint_uploads_only_new_files(factory: Any, tmp_path: Path) -> None:
    store, tracker = SharedFileStore(tmp_path / "chk"), ReuseTracker()
    backend = factory()
    fill(backend, KEYS)
    first = await checkpoint(backend, 1, store, tracker, tmp_path / "staging")
    fill(backend, KEYS[:10], round_=1)
    pending = await checkpoint(backend, 2, store, tracker, tmp_path / "staging")
    # checkpoint 1 never completed here: its files are not reused, all are uploaded again
    assert not set(ref["name"] for ref in pending["shared"].values()) & set(ref["name"] for ref in first["shared"].values())
    tracker.confirm(2)
    fill(backend, KEYS[:5], round_=2)
    third = await checkpoint(backend, 3, store, tracker, tmp_path / "staging")
    names = [ref["name"] for ref in third["shared"].values()]
    reused = [name for name in names if name.startswith("2-")]
    fresh = [name for name in names if name.startswith("3-")]
    assert reused and len(fresh) == 1  # the flush of the five updated keys
    assert sorted(await store.names()) == sorted(
        {ref["name"] for h in (first, pending, third) for ref in h["shared"].values()}
    )


@pytest.mark.parametrize(("old_parallelism", "new_parallelism"), [(2, 3), (3, 1), (1, 2)])
async def test_restore_at_another_parallelism_reads_key_group_ranges(
    factory: Any, tmp_path: Path, old_parallelism: int, new_parallelism: int
) -> None:
    store = SharedFileStore(tmp_path / "chk")
    old = [factory(old_parallelism, i) for i in range(old_parallelism)]
    handles = []
    for backend in old:
        fill(backend, KEYS)
        handles.append(await checkpoint(backend, 1, store, ReuseTracker(), tmp_path / f"staging-{backend.subtask_index}"))
    expected = by_key([backend.snapshot() for backend in old])

    new = [factory(new_parallelism, i) for i in range(new_parallelism)]
    for backend in new:
        await restore_native(backend, handles, store=store)
        for name in ("value", "list", "map", "sum"):
            for state in backend.snapshot()["states"].values():
                assert set(state["key_groups"]) <= set(backend.key_group_range)
    assert by_key([backend.snapshot() for backend in new]) == expected
    seen = sorted((key for backend in new for key, _ in backend.keys("value")), key=repr)
    assert seen == sorted(KEYS, key=repr)


async def test_a_damaged_or_missing_shared_file_is_a_clear_error(factory: Any, tmp_path: Path) -> None:
    store = SharedFileStore(tmp_path / "chk")
    backend = factory()
    fill(backend, KEYS)
    handle = await checkpoint(backend, 4, store, ReuseTracker(), tmp_path / "staging")
    name = next(iter(handle["shared"].values()))["name"]
    path = store.directory / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.unlink(path)  # the file may be hard-linked to the live database: never write into it
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptedError, match=f"checkpoint 4 is damaged: the shared file .*{name}.* does not "
                       "match its sha256 checksum"):  # fmt: skip
        await restore_native(factory(), [handle], store=store, checkpoint_id=4)
    path.unlink()
    with pytest.raises(CheckpointCorruptedError, match=f"{name}' is missing"):
        await store.verify([next(iter(_refs(handle)))], checkpoint_id=4)


def _refs(handle: dict[str, Any]) -> list[Any]:
    from streamflow.checkpoint.shared_files import SharedFile

    return [SharedFile.from_dict(ref) for ref in handle["shared"].values()]


async def test_fifty_checkpoints_with_three_retained_leave_only_referenced_files(factory: Any, tmp_path: Path) -> None:
    """The coordinator's side: a registry counts references, retention releases the
    oldest checkpoints, unreferenced files are deleted; the latest still restores."""
    store, tracker, registry = SharedFileStore(tmp_path / "chk"), ReuseTracker(), SharedFileRegistry()
    backend = factory()
    retained: list[int] = []
    handles: dict[int, dict[str, Any]] = {}
    for n in range(1, 51):
        fill(backend, KEYS[n % 7 :: 7], round_=n)  # a small change set per interval
        handles[n] = handle = await checkpoint(backend, n, store, tracker, tmp_path / "staging")
        names = [ref["name"] for ref in handle["shared"].values()]
        assert registry.missing(n, names) == []  # the completion check
        registry.add(n, names)
        tracker.confirm(n)  # notify_checkpoint_complete
        retained.append(n)
        while len(retained) > 3:
            await store.delete(registry.release(retained.pop(0)))
    referenced = {ref["name"] for n in retained for ref in handles[n]["shared"].values()}
    assert set(await store.names()) == referenced
    assert registry.referenced() == referenced
    assert orphans(await store.names(), registry.referenced(), 50) == []
    assert 0 < len(referenced) < sum(len(h["shared"]) for h in handles.values())

    restored = factory()
    await restore_native(restored, [handles[50]], store=store, checkpoint_id=50)
    assert by_key([restored.snapshot()]) == by_key([backend.snapshot()])


async def test_a_native_restore_keeps_the_serializer_check(factory: Any, tmp_path: Path) -> None:
    from streamflow.errors import StateError
    from streamflow.state import JsonSerializer

    store = SharedFileStore(tmp_path / "chk")
    backend = factory()
    fill(backend, KEYS)
    handle = await checkpoint(backend, 1, store, ReuseTracker(), tmp_path / "staging")
    restored = factory()
    await restore_native(restored, [handle], store=store)
    with pytest.raises(StateError, match="keyed state 'value' was saved with serializer 'pickle', but its descriptor "
                       "now uses 'json'"):  # fmt: skip
        restored.get_state(ValueStateDescriptor("value", default=0, serializer=JsonSerializer()))
