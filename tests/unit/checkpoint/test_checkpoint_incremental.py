"""Incremental checkpoints of the RocksDB backend, below the runtime: native snapshots
planned and uploaded into a real shared folder by KeyedCheckpoints, read back as a
restore reads them, restored at the same and at other parallelisms (into RocksDB and
into the heap), reuse of files, damage, retention by reference counts."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.native_parts import upload_native
from streamflow.checkpoint.incremental import KeyedCheckpoints
from streamflow.checkpoint.shared_files import SharedFile, SharedFileStore, orphans
from streamflow.checkpoint.snapshot import SnapshotType
from streamflow.core.clock import ManualClock
from streamflow.errors import CheckpointCorruptedError, StateError
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.state import (
    HashMapStateBackend,
    JsonSerializer,
    KeyedStateBackend,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend, keys
from streamflow.state.rocksdb.native import NATIVE_FORMAT
from streamflow.windowing import TimeWindow

MAX_PARALLELISM = 16
VALUE = ValueStateDescriptor("value", default=0)
LIST = ListStateDescriptor[Any]("list")
MAP = MapStateDescriptor[Any, Any]("map")
SUM = ReducingStateDescriptor("sum", operator.add, ttl=StateTtlConfig(ttl=1000.0))
KEYS: list[Any] = [f"user-{i}" for i in range(300)] + [(i, "t") for i in range(40)] + [True, 2.5]


class Subtasks:
    """Keyed backends (RocksDB or heap) with their KeyedCheckpoints, closed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.rocks = EmbeddedRocksDBStateBackend(tmp_path / "work", memory_budget=16 << 20)
        self.chk = tmp_path / "chk"
        self.made: list[KeyedStateBackend] = []

    def make(self, parallelism: int = 1, subtask: int = 0, heap: bool = False) -> KeyedCheckpoints:
        state = HashMapStateBackend() if heap else self.rocks
        backend = state.create_keyed_backend(
            operator_uid="count", subtask_index=subtask, max_parallelism=MAX_PARALLELISM,
            key_group_range=key_group_range(MAX_PARALLELISM, parallelism, subtask), clock=ManualClock(),
        )  # fmt: skip
        self.made.append(backend)
        return KeyedCheckpoints(backend, owner=f"count-{subtask}", checkpoint_directory=self.chk)


@pytest.fixture
def subtasks(tmp_path: Path) -> Iterator[Subtasks]:
    made = Subtasks(tmp_path)
    yield made
    for backend in made.made:
        backend.close()


def fill(backend: KeyedStateBackend, keys: list[Any], round_: int = 0) -> None:
    value, items, index, total = (backend.get_state(d) for d in (VALUE, LIST, MAP, SUM))
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


async def checkpoint(keyed: KeyedCheckpoints, n: int, store: SharedFileStore) -> dict[str, Any]:
    """What a task and a restore do: snapshot at the barrier, upload in the background,
    the keyed part as a restore reads it back (its files located, with checksums)."""
    part, pending = await keyed.snapshot(n, SnapshotType.CHECKPOINT)
    assert part is not None and pending is not None
    return await upload_native(part, pending, store, n, "count")


def names(part: dict[str, Any]) -> set[str]:
    return {ref["name"] for ref in part["files"].values()}


async def test_restore_at_the_same_parallelism_reuses_the_files(subtasks: Subtasks) -> None:
    store = SharedFileStore(subtasks.chk)
    original = subtasks.make()
    fill(original.backend, KEYS)
    part = await checkpoint(original, 1, store)
    assert any(name.endswith(".sst") for name in part["files"]) and "CURRENT" in part["files"]
    assert set(part["immutable"]) == {name for name in part["files"] if name.endswith(".sst") or "OPTIONS" in name}

    restored = subtasks.make()
    await restored.restore([part])
    assert by_key([restored.backend.snapshot()]) == by_key([original.backend.snapshot()])
    restored.backend.set_current_key("user-7", key_group_for("user-7", MAX_PARALLELISM))
    assert restored.backend.get_state(VALUE).value() == 7
    assert restored.backend.get_state(LIST).get() == [("user-7", 0)]
    # the SST files it restored count as uploaded: an unchanged database writes no SST file anew
    again = await checkpoint(restored, 2, store)
    ssts = {ref["name"] for local, ref in part["files"].items() if local.endswith(".sst")}
    assert ssts <= names(again)
    assert [name for name in names(again) - ssts if name.endswith(".sst")] == []


async def test_a_second_checkpoint_uploads_only_new_files(subtasks: Subtasks) -> None:
    store = SharedFileStore(subtasks.chk)
    keyed = subtasks.make()
    fill(keyed.backend, KEYS)
    first = await checkpoint(keyed, 1, store)
    fill(keyed.backend, KEYS[:10], round_=1)
    pending = await checkpoint(keyed, 2, store)
    # checkpoint 1 never completed here: its files are not reused, all are uploaded again
    assert not names(first) & names(pending)
    keyed.completed(2)
    fill(keyed.backend, KEYS[:5], round_=2)
    third = await checkpoint(keyed, 3, store)
    ssts = [ref["name"] for local, ref in third["files"].items() if local in third["immutable"]]
    reused = [name for name in ssts if name.startswith("2-")]
    fresh = [name for name in ssts if name.startswith("3-")]
    assert reused and len(fresh) == 1  # the flush of the five updated keys
    assert all(ref["name"].startswith("3-") for local, ref in third["files"].items() if local not in third["immutable"])
    assert sorted(await store.names()) == sorted(names(first) | names(pending) | names(third))


@pytest.mark.parametrize(("old_parallelism", "new_parallelism"), [(2, 3), (3, 1), (1, 2)])
@pytest.mark.parametrize("into", ["rocksdb", "heap"])
async def test_restore_at_another_parallelism_reads_key_group_ranges(
    subtasks: Subtasks, old_parallelism: int, new_parallelism: int, into: str
) -> None:
    store = SharedFileStore(subtasks.chk)
    old = [subtasks.make(old_parallelism, i) for i in range(old_parallelism)]
    parts = []
    for keyed in old:
        fill(keyed.backend, KEYS)
        parts.append(await checkpoint(keyed, 1, store))
    expected = by_key([keyed.backend.snapshot() for keyed in old])

    new = [subtasks.make(new_parallelism, i, heap=into == "heap") for i in range(new_parallelism)]
    for keyed in new:
        await keyed.restore(parts)
        for state in keyed.backend.snapshot()["states"].values():
            assert set(state["key_groups"]) <= set(keyed.backend.key_group_range)
    assert by_key([keyed.backend.snapshot() for keyed in new]) == expected
    seen = sorted((key for keyed in new for key, _ in keyed.backend.keys("value")), key=repr)
    assert seen == sorted(KEYS, key=repr)


async def test_a_damaged_or_missing_shared_file_is_a_clear_error(subtasks: Subtasks) -> None:
    store = SharedFileStore(subtasks.chk)
    keyed = subtasks.make()
    fill(keyed.backend, KEYS)
    part = await checkpoint(keyed, 4, store)
    ref = next(ref for local, ref in part["files"].items() if local in part["immutable"])
    path = store.directory / ref["name"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.unlink(path)  # the file is hard-linked to the live database: never write into it
    path.write_bytes(bytes(data))
    shared = SharedFile.from_dict(ref)
    with pytest.raises(CheckpointCorruptedError, match=f"checkpoint 4 is damaged: the shared file .*{ref['name']}.* does "
                       "not match its sha256 checksum"):  # fmt: skip
        await store.verify([shared], checkpoint_id=4)
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(CheckpointCorruptedError, match=f"{ref['name']}' holds {len(data) - 1} bytes, the checkpoint says"):
        await subtasks.make().restore([part])
    path.unlink()
    with pytest.raises(CheckpointCorruptedError, match=f"{ref['name']}' is missing"):
        await store.verify([shared], checkpoint_id=4)


async def test_fifty_checkpoints_with_three_retained_leave_only_referenced_files(subtasks: Subtasks) -> None:
    """The coordinator's side by hand: references counted, retention releases the oldest
    checkpoints, unreferenced files deleted; the latest still restores."""
    store = SharedFileStore(subtasks.chk)
    keyed = subtasks.make()
    retained: list[int] = []
    parts: dict[int, dict[str, Any]] = {}
    for n in range(1, 51):
        fill(keyed.backend, KEYS[n % 7 :: 7], round_=n)  # a small change set per interval
        parts[n] = part = await checkpoint(keyed, n, store)
        assert store.references.missing(n, names(part)) == []  # the completion check
        store.references.add(n, names(part))
        keyed.completed(n)  # notify_checkpoint_complete
        retained.append(n)
        while len(retained) > 3:
            await store.release(retained.pop(0))
    referenced = set().union(*(names(parts[n]) for n in retained))
    assert set(await store.names()) == referenced == store.references.referenced()
    assert orphans(await store.names(), store.references.referenced(), 50) == []
    assert 0 < len(referenced) < sum(len(part["files"]) for part in parts.values())

    restored = subtasks.make()
    await restored.restore([parts[50]])
    assert by_key([restored.backend.snapshot()]) == by_key([keyed.backend.snapshot()])


async def test_a_savepoint_of_rocksdb_is_canonical_and_read_in_the_background(subtasks: Subtasks) -> None:
    keyed = subtasks.make()
    fill(keyed.backend, KEYS)
    part, pending = await keyed.snapshot(1, SnapshotType.SAVEPOINT)
    assert part is None and pending is not None
    fill(keyed.backend, KEYS, round_=5)  # the backend goes on while the canonical snapshot is read
    try:
        finished = await pending.finish(SharedFileStore(subtasks.chk))
    finally:
        await pending.discard()
    assert finished.shared == () and finished.keyed is not None
    heap = subtasks.make(heap=True)
    heap.backend.restore([finished.keyed])
    heap.backend.set_current_key("user-7", key_group_for("user-7", MAX_PARALLELISM))
    assert heap.backend.get_state(VALUE).value() == 7  # as at the barrier, not round 5


async def test_a_native_restore_keeps_the_serializer_check(subtasks: Subtasks) -> None:
    store = SharedFileStore(subtasks.chk)
    keyed = subtasks.make()
    fill(keyed.backend, KEYS)
    part = await checkpoint(keyed, 1, store)
    restored = subtasks.make()
    await restored.restore([part])
    with pytest.raises(StateError, match="keyed state 'value' was saved with serializer 'pickle', but its descriptor "
                       "now uses 'json'"):  # fmt: skip
        restored.backend.get_state(ValueStateDescriptor("value", default=0, serializer=JsonSerializer()))


async def test_a_format_1_snapshot_with_pickled_windows_is_restored_by_decoding_its_entries(
    subtasks: Subtasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SharedFileStore(subtasks.chk)
    original = subtasks.make()
    key = ("user-1", TimeWindow(0.0, 60.0))
    group = key_group_for(key, MAX_PARALLELISM)
    monkeypatch.setattr(keys, "TimeWindow", type("NotAWindow", (), {}))  # windows pickled, as format 1 wrote them
    original.backend.set_current_key(key, group)
    original.backend.get_state(VALUE).update(5)
    original.backend.timer_store("event").register(59.999999, key, group)  # type: ignore[attr-defined]
    part = await checkpoint(original, 1, store)
    monkeypatch.undo()
    part["format"] = "rocksdb-native-1"

    adopted = subtasks.make()  # what adopting the files as they are would give: the entry is not found
    await adopted.restore([{**part, "format": NATIVE_FORMAT}])
    adopted.backend.set_current_key(key, group)
    assert adopted.backend.get_state(VALUE).value() == 0

    restored = subtasks.make()
    held = await restored.restore([part])
    restored.backend.set_current_key(key, group)
    assert restored.backend.get_state(VALUE).value() == 5
    assert [timers.event for timers in held] == [[(59.999999, group, key)]]
    assert type(held[0].event[0][2][1]) is TimeWindow
