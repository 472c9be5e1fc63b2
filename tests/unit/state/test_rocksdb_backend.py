"""What the RocksDB backend adds to the keyed-state contract the shared tests check:
handles that cannot fall back to heap code, the background TTL sweep, working
directories, the memory budget, serializer refusals at write time, and savepoints that
move state between the heap and RocksDB backends in both directions, rescaled."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamflow.checkpoint import serde
from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.errors import ConfigError, StateError, StateSerializationError
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.core.clock import ManualClock
from streamflow.core.ids import CheckpointId
from streamflow.savepoint.location import locate_snapshot
from streamflow.savepoint.restore import read_snapshot_state
from streamflow.savepoint.writer import write_savepoint
from streamflow.state import (
    AggregatingState,
    HashMapStateBackend,
    JsonSerializer,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    ReducingState,
    StateTtlConfig,
    TtlVisibility,
    ValueState,
    ValueStateDescriptor,
)
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend
from streamflow.state.rocksdb.backend import HANDLES

MAX_PARALLELISM = 24


def rocks(tmp_path: Path, parallelism: int = 1, subtask: int = 0, clock: ManualClock | None = None, **options: Any
          ) -> Any:  # fmt: skip
    return EmbeddedRocksDBStateBackend(tmp_path / "work", memory_budget=16 << 20, **options).create_keyed_backend(
        operator_uid="count", subtask_index=subtask, max_parallelism=MAX_PARALLELISM,
        key_group_range=key_group_range(MAX_PARALLELISM, parallelism, subtask), clock=clock or ManualClock(),
    )  # fmt: skip


def heap(parallelism: int = 1, subtask: int = 0) -> Any:
    return HashMapStateBackend().create_keyed_backend(
        operator_uid="count", subtask_index=subtask, max_parallelism=MAX_PARALLELISM,
        key_group_range=key_group_range(MAX_PARALLELISM, parallelism, subtask), clock=ManualClock(),
    )  # fmt: skip


def use(backend: Any, key: Any) -> None:
    backend.set_current_key(key, key_group_for(key, MAX_PARALLELISM))


@pytest.mark.parametrize("kind", sorted(HANDLES))
def test_every_public_method_of_the_heap_handle_is_overridden(kind: str) -> None:
    """A method added to a heap handle and not to its RocksDB twin would read the
    heap's (poisoned) table: this test names it first."""
    rocks_class = HANDLES[kind]
    heap_class = next(base for base in rocks_class.__mro__[1:] if base.__module__ == "streamflow.state.keyed")
    assert heap_class in (ValueState, ListState, MapState, ReducingState, AggregatingState)
    public = {name for name, _ in inspect.getmembers(heap_class, inspect.isfunction) if not name.startswith("_")}
    heap_classes = set(heap_class.__mro__)
    defined_by = {name: next(c for c in rocks_class.__mro__ if name in c.__dict__) for name in public}
    assert sorted(name for name, owner in defined_by.items() if owner in heap_classes) == []


def test_the_background_sweep_removes_expired_entries_nobody_reads(tmp_path: Path) -> None:
    clock = ManualClock(100.0)
    backend = rocks(tmp_path, clock=clock, ttl_sweep_every=5, ttl_sweep_entries=100)
    try:
        keep = StateTtlConfig(ttl=10.0, visibility=TtlVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP, cleanup_on_read=False)
        value = backend.get_state(ValueStateDescriptor[int]("v", ttl=keep))
        items = backend.get_state(ListStateDescriptor[int]("l", ttl=keep))
        plain = backend.get_state(ValueStateDescriptor[int]("p"))
        for n in range(30):
            use(backend, n)
            value.update(n)
            items.add(n)
            plain.update(n)
        clock.advance(5)
        use(backend, 0)
        items.add(99)  # one element of key 0 stays live
        clock.advance(6)  # the first writes expired, the last add did not
        for _ in range(4):
            backend.on_record()
        assert len(list(backend.keys("v"))) == 30  # not yet: every 5th record
        backend.on_record()
        assert list(backend.keys("v")) == []
        assert list(backend.keys("l")) == [(0, key_group_for(0, MAX_PARALLELISM))]
        use(backend, 0)
        assert items.get() == [99]
        assert len(list(backend.keys("p"))) == 30  # no TTL: never swept
        assert backend.sweep_expired(1000) == 0
    finally:
        backend.close()


def test_the_working_directory_is_removed_at_close(tmp_path: Path) -> None:
    backend = rocks(tmp_path)
    state = backend.get_state(ValueStateDescriptor[int]("v"))
    use(backend, "a")
    state.update(1)
    directory = backend.directory
    assert directory.parent == tmp_path / "work" and (directory / "db").is_dir()
    backend.close()
    assert not directory.exists()
    backend.close()  # idempotent


def test_a_working_directory_that_is_not_writable_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="the RocksDB working directory .*a-file.* is not writable .*pass "
                       r"EmbeddedRocksDBStateBackend\(directory=...\)"):  # fmt: skip
        EmbeddedRocksDBStateBackend(blocker / "state")
    backend = EmbeddedRocksDBStateBackend(tmp_path / "later")
    (tmp_path / "later").write_text("taken after the job was built")
    with pytest.raises(ConfigError, match="the RocksDB working directory .*later.* is not writable"):
        backend.create_keyed_backend(operator_uid="op", subtask_index=0, max_parallelism=4,
                                     key_group_range=range(4), clock=ManualClock())  # fmt: skip


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="memory_budget must be an int of at least 4194304 bytes"):
        EmbeddedRocksDBStateBackend(memory_budget=1 << 20)
    with pytest.raises(ConfigError, match="ttl_sweep_every must be an int >= 1, got 0"):
        EmbeddedRocksDBStateBackend(ttl_sweep_every=0)
    with pytest.raises(ConfigError, match="incremental must be True or False"):
        EmbeddedRocksDBStateBackend(incremental="yes")  # type: ignore[arg-type]


def test_a_serializer_refuses_a_value_when_it_is_written(tmp_path: Path) -> None:
    backend = rocks(tmp_path)
    try:
        state = backend.get_state(ValueStateDescriptor[Any]("totals", serializer=JsonSerializer()))
        use(backend, "alice")
        with pytest.raises(StateSerializationError, match=r"keyed state 'totals' \(key 'alice'\) cannot be written "
                           "to the snapshot by its serializer 'json' \\(a value of type tuple\\)"):  # fmt: skip
            state.update((1, 2))
        state.update([1, 2])
        assert state.value() == [1, 2]
    finally:
        backend.close()


def _rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_memory_stays_within_the_budget_with_state_ten_times_larger(tmp_path: Path) -> None:
    """A quick check (the RSS benchmark is in bench/): 80 MB of state under an 8 MiB
    budget; RocksDB's cache and write buffers stay within it, the process grows by less
    than the budget plus a fixed allowance."""
    budget = 8 << 20
    state_backend = EmbeddedRocksDBStateBackend(tmp_path / "work", memory_budget=budget)
    backend = state_backend.create_keyed_backend(operator_uid="big", subtask_index=0, max_parallelism=8,
                                                 key_group_range=range(8), clock=ManualClock())  # fmt: skip
    try:
        state = backend.get_state(ValueStateDescriptor[bytes]("blob"))
        payload = os.urandom(1000)  # incompressible
        before = _rss()
        for n in range(80_000):
            backend.set_current_key(n, n % 8)
            state.update(payload)
        grown = _rss() - before
        assert state_backend.budget.cache.get_usage() <= budget
        assert state_backend.budget.write_buffers.get_usage() <= state_backend.budget.write_buffers.get_buffer_size()
        assert grown < budget + (48 << 20), f"RSS grew by {grown >> 20} MiB"
        backend.set_current_key(12_345, 12_345 % 8)
        assert state.value() == payload
    finally:
        backend.close()


# -- savepoints move state between the backends -------------------------------------

KEYS: list[Any] = [f"user-{i}" for i in range(120)] + [(i, "x") for i in range(30)] + [7.5, b"raw"]
VALUE = ValueStateDescriptor[Any]("value")
LIST = ListStateDescriptor[Any]("list", ttl=StateTtlConfig(ttl=1e6))
MAP = MapStateDescriptor[Any, Any]("map", serializer=JsonSerializer())


def fill(backend: Any) -> None:
    value, items, index = (backend.get_state(d) for d in (VALUE, LIST, MAP))
    for n, key in enumerate(KEYS):
        if key_group_for(key, MAX_PARALLELISM) in backend.key_group_range:
            use(backend, key)
            value.update((n, {"nested": (key,)}))
            items.add_all([n, (n,)])
            index.put(str(n), {"n": [n]})


def contents(backends: list[Any]) -> dict[Any, tuple[Any, Any, Any]]:
    found = {}
    for backend in backends:
        value, items, index = (backend.get_state(d) for d in (VALUE, LIST, MAP))
        for key, group in backend.keys("value"):
            backend.set_current_key(key, group)
            found[key] = (value.value(), items.get(), sorted(index.items()))
    return found


async def through_savepoint(backends: list[Any], directory: Path) -> list[dict[str, Any]]:
    """Each backend's canonical snapshot written as a checkpoint, published as a
    savepoint by the real writer, read back by the real reader."""
    storage = CheckpointStorage(directory / "chk")
    subtasks = {}
    for backend in backends:
        data = serde.encode({"keyed": backend.snapshot()}, operator="count", subtask=backend.subtask_index)
        subtasks[backend.subtask_index] = await storage.write_state(1, f"count-{backend.subtask_index}", data)
    meta = OperatorStateMeta(parallelism=len(backends), max_parallelism=MAX_PARALLELISM, subtasks=subtasks)
    metadata = CheckpointMetadata(job_name="move", checkpoint_id=CheckpointId(1), timestamp=0.0,
                                  operators={"count": meta})  # fmt: skip
    savepoint = await write_savepoint(storage, 1, metadata, directory / "savepoints")
    located = await locate_snapshot(savepoint)
    restored = await read_snapshot_state(located.storage, located.completed)
    return [snapshot.keyed or {} for snapshot in restored["count"]]


@pytest.mark.parametrize(("source", "target", "old", "new"), [("heap", "rocksdb", 2, 3), ("rocksdb", "heap", 3, 2),
                                                              ("rocksdb", "rocksdb", 1, 2)])  # fmt: skip
def test_a_savepoint_moves_state_between_backends_and_parallelisms(
    tmp_path: Path, source: str, target: str, old: int, new: int
) -> None:
    make = {"heap": lambda p, i: heap(p, i), "rocksdb": lambda p, i: rocks(tmp_path / f"{p}-{i}", p, i)}
    before = [make[source](old, i) for i in range(old)]
    after = [make[target](new, i) for i in range(new)]
    try:
        for backend in before:
            fill(backend)
        expected = contents(before)
        assert len(expected) == len(KEYS)
        snapshots = asyncio.run(through_savepoint(before, tmp_path / "storage"))
        for backend in after:
            backend.restore(snapshots)
            assert all(group in backend.key_group_range for _, group in backend.keys("value"))
        restored = contents(after)
        assert restored == expected
        for key, (value, items, _) in restored.items():
            assert type(value) is tuple and type(value[1]["nested"]) is tuple and type(items[1]) is tuple, key
    finally:
        for backend in before + after:
            backend.close()


class Reversed:
    name = "reversed"

    def dumps(self, value: Any) -> bytes:
        return repr(value).encode()[::-1]

    def loads(self, data: bytes) -> Any:
        raise ValueError("cannot read")


def test_bytes_that_do_not_load_are_an_error_naming_state_key_and_serializer(tmp_path: Path) -> None:
    """The RocksDB backend decodes a value when it is read (the heap backend decodes a
    restored state's values when get_state registers it)."""
    backend = rocks(tmp_path)
    try:
        state = backend.get_state(ValueStateDescriptor[Any]("v", serializer=Reversed()))
        use(backend, "alice")
        state.update({"a": 1})
        with pytest.raises(StateError, match=r"operator 'count': the value of key 'alice' in keyed state 'v' does not "
                           r"load with serializer 'reversed' \(ValueError: cannot read\)"):  # fmt: skip
            state.value()
    finally:
        backend.close()


def test_working_directories_of_dead_processes_are_removed_when_a_job_starts(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    root = tmp_path / "work"
    stale = root / f"count-0-p{int(dead.stdout)}-abc123"
    (stale / "db").mkdir(parents=True)
    mine = root / f"count-1-p{os.getpid()}-def456"
    mine.mkdir()
    unrelated = root / "notes"
    unrelated.mkdir()
    backend = rocks(tmp_path)
    try:
        assert not stale.exists() and mine.exists() and unrelated.exists()
        assert f"-p{os.getpid()}-" in backend.directory.name
    finally:
        backend.close()


def test_window_state_keyed_by_windows_finds_equal_windows_and_restores_their_type(tmp_path: Path) -> None:
    """Window contents are keyed state whose namespace is a window (a window state store
    over keyed handles keeps ``(namespace, name)`` map keys): a window built again from
    the same instants must find its entry, and come back a TimeWindow after a restore."""
    from streamflow.eventtime.windows import GLOBAL_WINDOW, TimeWindow

    backend = rocks(tmp_path)
    store = backend.get_state(MapStateDescriptor[Any, Any]("window-state"))
    use(backend, "user-1")
    store.put((TimeWindow(0, 60), "contents"), [1, 2])
    store.put((TimeWindow(60.0, 120.0), "contents"), [3])
    store.put((None, "merging-windows"), [[0.0, 60.0, 0.0, 60.0]])
    store.put((GLOBAL_WINDOW, "trigger:0"), 2)
    assert store.get((TimeWindow(0.0, 60.0), "contents")) == [1, 2]  # an equal window, built anew
    assert store.get((TimeWindow.of_micros(60_000_000, 120_000_000), "contents")) == [3]
    store.remove((TimeWindow(60, 120), "contents"))
    restored = rocks(tmp_path)
    restored.restore([serde.decode(serde.encode(backend.snapshot()))])
    use(restored, "user-1")
    items = dict(restored.get_state(MapStateDescriptor[Any, Any]("window-state")).items())
    assert items == {(TimeWindow(0.0, 60.0), "contents"): [1, 2], (None, "merging-windows"): [[0.0, 60.0, 0.0, 60.0]],
                     (GLOBAL_WINDOW, "trigger:0"): 2}  # fmt: skip
    assert {type(key[0]) for key in items} == {TimeWindow, type(None), type(GLOBAL_WINDOW)}
    backend.close()
    restored.close()


def test_equal_keys_of_other_types_share_one_value_beside_the_remembered_entry_keys(tmp_path: Path) -> None:
    """ValueState remembers the entry key of str, int and bytes keys per state; a key
    equal to one of them but of another type (True, 1.0) must reach the same entry, as in
    a dict, and the key comes back in the form of the last write."""
    backend = rocks(tmp_path)
    count = backend.get_state(ValueStateDescriptor[int]("count"))
    other = backend.get_state(ValueStateDescriptor[str]("other"))
    backend.set_current_key(1, 5)
    count.update(10)
    other.update("one")
    backend.set_current_key(True, 5)
    assert (count.value(), other.value()) == (10, "one")
    count.update(11)
    backend.set_current_key(1.0, 5)
    assert count.value() == 11
    backend.set_current_key(1, 5)
    assert count.value() == 11
    assert [(key, type(key)) for key, _ in backend.keys("count")] == [(True, bool)]
    count.update(12)
    assert [(key, type(key)) for key, _ in backend.keys("count")] == [(1, int)]
    backend.set_current_key(b"raw", 3)
    count.update(1)
    backend.set_current_key("raw", 3)  # equal bytes in another key type: another key
    assert count.value() is None
    backend.close()
