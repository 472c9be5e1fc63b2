"""Timers held in RocksDB (RocksTimerStore) against the in-memory TimerQueue: the same
TimerStore contract over both (time order, duplicates, deletion, timers registered while
firing, exact types, snapshot and restore by key group, across the two); the
order-preserving timestamp bytes; the bounded head cache (timers beyond it, refills);
memory that stays O(key groups) with 200k timers; and native (incremental) checkpoints
in a real shared folder that carry the timers, restored at the same and at other
parallelisms, into RocksDB and into the heap."""

from __future__ import annotations

import datetime
import random
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from contract.native_parts import upload_native
from streamflow.checkpoint.incremental import KeyedCheckpoints
from streamflow.checkpoint.shared_files import SharedFileStore
from streamflow.checkpoint.snapshot import SnapshotType
from streamflow.core.clock import ManualClock
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.runtime.timers import TimerQueue
from streamflow.state import HashMapStateBackend, KeyedStateBackend, ValueStateDescriptor
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend, RocksDBKeyedStateBackend
from streamflow.state.rocksdb.timers import HEAD_SIZE, RECENT_LIMIT, RocksTimerStore, decode_time, encode_time
from streamflow.state.timers import TimerStore, TimerStoreBackend
from streamflow.windowing import TimeWindow

MAX_PARALLELISM = 16


class Point(NamedTuple):
    x: int
    y: int


class Backends:
    """RocksDB keyed backends in a test's directory, closed at the end."""

    def __init__(self, tmp_path: Path, max_parallelism: int = MAX_PARALLELISM) -> None:
        self.state = EmbeddedRocksDBStateBackend(tmp_path / "work", memory_budget=16 << 20)
        self.max_parallelism = max_parallelism
        self.made: list[KeyedStateBackend] = []

    def make(self, parallelism: int = 1, subtask: int = 0, heap: bool = False) -> KeyedStateBackend:
        state = HashMapStateBackend() if heap else self.state
        backend = state.create_keyed_backend(
            operator_uid="timed", subtask_index=subtask, max_parallelism=self.max_parallelism,
            key_group_range=key_group_range(self.max_parallelism, parallelism, subtask), clock=ManualClock(),
        )  # fmt: skip
        self.made.append(backend)
        return backend

    def rocks(self, parallelism: int = 1, subtask: int = 0) -> RocksDBKeyedStateBackend:
        backend = self.make(parallelism, subtask)
        assert isinstance(backend, RocksDBKeyedStateBackend)
        return backend


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    made = Backends(tmp_path)
    yield made
    for backend in made.made:
        backend.close()


StoreFactory = Callable[[], TimerStore]


@pytest.fixture(params=["heap", "rocksdb"])
def new_store(request: pytest.FixtureRequest, backends: Backends) -> StoreFactory:
    """Fresh empty timer stores of one kind (a new backend each for RocksDB)."""
    if request.param == "heap":
        return TimerQueue
    return lambda: backends.rocks().timer_store("event")


def group(key: Any) -> int:
    """A key group for any key (the stores take it as given; the job's hash refuses some
    of the keys here, which a window operator's ``(key, window)`` timer key is not hashed)."""
    return zlib.crc32(repr(key).encode()) % MAX_PARALLELISM


def test_timestamp_bytes_sort_as_the_timestamps_do() -> None:
    times = [float("-inf"), -1e300, -2.5, -1.0, -5e-324, 0.0, 5e-324, 1e-9, 1.0, 2.5, 1.7e9, 1e300, float("inf")]
    shuffled = random.Random(3).sample(times, len(times))
    assert sorted(shuffled, key=encode_time) == times
    assert [decode_time(encode_time(t)) for t in times] == times
    assert encode_time(-0.0) == encode_time(0.0)  # equal timestamps, one timer


def test_timers_fire_in_time_order_across_key_groups_with_negative_times(new_store: StoreFactory) -> None:
    timers = new_store()
    entries = [(5.0, "a"), (-3.0, "b"), (2.0, "c"), (-7.5, "d"), (2.0, "e"), (100.0, "f")]
    for timestamp, key in entries:
        timers.register(timestamp, key, group(key))
    assert timers.next_time() == -7.5
    fired = timers.pop_due(2.0)
    # of one timestamp, the heap's come in registration order, RocksDB's by key group and key bytes
    assert [(t, k) for t, _, k in fired[:2]] == [(-7.5, "d"), (-3.0, "b")]
    assert sorted((t, k) for t, _, k in fired[2:]) == [(2.0, "c"), (2.0, "e")]
    assert all(kg == group(k) for _, kg, k in fired)
    assert timers.next_time() == 5.0 and len(timers) == 2


def test_registering_twice_keeps_one_and_a_deleted_timer_never_fires(new_store: StoreFactory) -> None:
    timers = new_store()
    timers.register(1.0, "a", group("a"))
    timers.register(1.0, "a", group("a"))
    timers.register(2.0, "b", group("b"))
    timers.delete(2.0, "b", group("b"))
    timers.delete(9.0, "never-registered", group("never-registered"))
    assert timers.pop_due(5.0) == [(1.0, group("a"), "a")]
    assert timers.next_time() is None and len(timers) == 0
    timers.register(2.0, "b", group("b"))  # fired or deleted timers may come back
    assert timers.pop_due(5.0) == [(2.0, group("b"), "b")]


def test_pop_next_hands_out_timers_registered_while_firing(new_store: StoreFactory) -> None:
    timers = new_store()
    timers.register(5.0, "a", group("a"))
    fired = []
    while (due := timers.pop_next(10.0)) is not None:
        fired.append(due)
        if due == (5.0, group("a"), "a"):
            timers.register(7.0, "b", group("b"))  # due too: fires in the same pass
            timers.register(11.0, "c", group("c"))  # not yet
            timers.register(6.0, "a", group("a"))  # the same key again, due
    assert fired == [(5.0, group("a"), "a"), (6.0, group("a"), "a"), (7.0, group("b"), "b")]
    assert timers.next_time() == 11.0 and len(timers) == 1


KEYS_OF_EVERY_TYPE: list[Any] = [
    ("user-1", TimeWindow(0.0, 10.0)),
    Point(1, 2),
    (Point(3, 4), TimeWindow(-10.0, 0.0)),
    True,
    frozenset({1, 2}),
    datetime.datetime(2026, 1, 2, 3, 4, 5),
    b"raw",
    None,
    2.5,
]


def test_timestamps_and_keys_come_back_with_their_exact_types(new_store: StoreFactory) -> None:
    timers = new_store()
    stamps: list[float] = [7, 7.5, 8, 9.0, 10, 11.0, 12, 13.0, 14]  # ints registered as ints stay ints
    for timestamp, key in zip(stamps, KEYS_OF_EVERY_TYPE):
        timers.register(timestamp, key, group(key))
    fired = timers.pop_due(100.0)
    assert [(t, k) for t, _, k in fired] == list(zip(stamps, KEYS_OF_EVERY_TYPE))
    for (timestamp, _, key), want_time, want_key in zip(fired, stamps, KEYS_OF_EVERY_TYPE):
        assert type(timestamp) is type(want_time)
        assert type(key) is type(want_key) and repr(key) == repr(want_key)


@pytest.mark.parametrize("into", ["heap", "rocksdb"])
def test_a_snapshot_restores_by_key_group_into_either_store(new_store: StoreFactory, backends: Backends, into: str) -> None:
    timers = new_store()
    keys = [f"k{i}" for i in range(40)] + KEYS_OF_EVERY_TYPE
    for n, key in enumerate(keys):
        timers.register(float(n % 7), key, group(key))
        timers.register(100.0 + n, key, group(key))
    timers.delete(100.0, keys[0], group(keys[0]))
    snapshot = timers.snapshot()
    assert len(snapshot) == 2 * len(keys) - 1
    assert [t for t, _, _ in snapshot] == sorted(t for t, _, _ in snapshot)
    halves = []
    for subtask in range(2):
        owned = key_group_range(MAX_PARALLELISM, 2, subtask)
        restored: TimerStore = TimerQueue() if into == "heap" else backends.rocks(2, subtask).timer_store("event")
        restored.restore(snapshot, owned, MAX_PARALLELISM)
        halves.append(restored.pop_due(float("inf")))
        assert all(kg in owned for _, kg, _ in halves[-1])
    union = sorted(halves[0] + halves[1], key=repr)
    assert union == sorted(snapshot, key=repr)
    assert [repr(k) for _, _, k in union] == [repr(k) for _, _, k in sorted(snapshot, key=repr)]


def test_timers_beyond_the_head_cache_come_out_in_order(backends: Backends) -> None:
    """Many timers in one key group, registered and deleted in random order: the head
    holds HEAD_SIZE of them, the rest are read from the database as the head runs out."""
    timers = backends.rocks().timer_store("event")
    rng = random.Random(7)
    live: set[tuple[float, str]] = set()
    for n in rng.sample(range(HEAD_SIZE * 10), HEAD_SIZE * 10):
        timers.register(float(n), "key", group("key"))
        live.add((float(n), "key"))
    for n in range(0, HEAD_SIZE * 10, 3):  # the earliest ones too, so heads are refilled
        timers.delete(float(n), "key", group("key"))
        live.discard((float(n), "key"))
    fired = []
    while (due := timers.pop_next(float(HEAD_SIZE * 5))) is not None:
        fired.append((due[0], due[2]))
        if len(fired) % 10 == 0:  # registered while firing: earlier than the head's end, and later
            for extra in (due[0] + 0.5, HEAD_SIZE * 9 + 0.5):
                timers.register(extra, "key", group("key"))
                live.add((extra, "key"))
    expected_first = sorted(t for t in live if t[0] <= HEAD_SIZE * 5)
    assert fired == expected_first
    rest = timers.pop_due(float("inf"))
    assert [(t, k) for t, _, k in rest] == sorted(live - set(fired))


def test_two_hundred_thousand_timers_are_not_held_in_python_memory(tmp_path: Path) -> None:
    made = Backends(tmp_path, max_parallelism=128)
    backend = made.rocks()
    try:
        timers = backend.timer_store("event")
        assert isinstance(timers, RocksTimerStore)
        count = 200_000
        keys = [f"user-{n}" for n in range(count // 4)]
        groups = [key_group_for(key, 128) for key in keys]

        def register(numbers: range) -> None:
            for n in numbers:
                index = n % len(keys)
                timers.register(float(count - n), keys[index], groups[index])  # latest first: each a new head

        register(range(150_000))
        tracemalloc.start()  # (traced, registering runs ~4x slower: only the last quarter is)
        try:
            before = tracemalloc.get_traced_memory()[0]
            register(range(150_000, count))
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        heads = timers._heads  # the in-memory part: bounded by the key groups
        assert len(heads) <= 128 and all(len(head) <= HEAD_SIZE for head in heads.values())
        assert len(timers._queue) <= 2 * 128 + 65 and len(timers._recent) <= RECENT_LIMIT
        # a TimerQueue holds ~230 bytes a timer (11 MB for these 50k); here what may grow
        # is the cache of the database's recent entries (1/16 of the budget) and the
        # memory of recently registered timers (at most ~3.5 MB), whatever the count
        assert held < backend.budget.cache_bytes() + (5 << 20), held
        assert len(timers) == count
        first = timers.pop_due(100.0)
        assert [t for t, _, _ in first] == [float(t) for t in range(1, 101)]
    finally:
        backend.close()


def test_the_rocksdb_backend_hands_out_one_store_per_domain(backends: Backends) -> None:
    backend = backends.rocks()
    assert isinstance(backend, TimerStoreBackend)
    assert not isinstance(backends.make(heap=True), TimerStoreBackend)
    assert backend.timer_store("event") is backend.timer_store("event")
    event, processing = backend.timer_store("event"), backend.timer_store("processing")
    event.register(1.0, "a", group("a"))
    assert processing.next_time() is None and len(processing) == 0 and event.next_time() == 1.0


# -- native (incremental) checkpoints ---------------------------------------------------

VALUE = ValueStateDescriptor("value", default=0)
TIMED_KEYS: list[Any] = [f"user-{i}" for i in range(60)] + [(i, "t") for i in range(10)] + [Point(5, 6)]


def fill(backend: KeyedStateBackend, keys: list[Any]) -> None:
    """A value per key, an event-time timer per key and window, a processing-time timer."""
    value = backend.get_state(VALUE)
    assert isinstance(backend, TimerStoreBackend)
    event, processing = backend.timer_store("event"), backend.timer_store("processing")
    for n, key in enumerate(keys):
        kg = group(key)
        if kg not in backend.key_group_range:
            continue
        backend.set_current_key(key, kg)
        value.update(n)
        event.register(float(n % 9) - 4.0, (key, TimeWindow(float(n), n + 10.0)), kg)
        processing.register(1000 + n, key, kg)


def all_timers(entries: list[tuple[float, int, Any]]) -> list[tuple[Any, int, str]]:
    """Entries comparable across stores: exact types by repr."""
    return sorted((repr(t), kg, repr(k)) for t, kg, k in entries)


async def checkpoint(keyed: KeyedCheckpoints, n: int, store: SharedFileStore) -> dict[str, Any]:
    part, pending = await keyed.snapshot(n, SnapshotType.CHECKPOINT)
    assert part is not None and pending is not None
    return await upload_native(part, pending, store, n, "timed")


def checkpoints(backend: KeyedStateBackend, chk: Path, subtask: int) -> KeyedCheckpoints:
    return KeyedCheckpoints(backend, owner=f"timed-{subtask}", checkpoint_directory=chk)


async def test_an_incremental_checkpoint_carries_the_timers_in_its_files(backends: Backends, tmp_path: Path) -> None:
    store = SharedFileStore(tmp_path / "chk")
    original = backends.rocks()
    fill(original, TIMED_KEYS)
    due_before = original.timer_store("event").pop_due(-4.0)  # fired before the barrier: not in the checkpoint
    assert due_before
    part = await checkpoint(checkpoints(original, tmp_path / "chk", 0), 1, store)
    assert part["timers"] is True
    expected = {d: all_timers(original.timer_store(d).snapshot()) for d in ("event", "processing")}
    original.timer_store("event").register(-100.0, "after the barrier", group("after the barrier"))

    restored = backends.rocks()
    held = await checkpoints(restored, tmp_path / "chk", 0).restore([part])
    assert held == [] and restored.reused_files
    for domain in ("event", "processing"):
        assert all_timers(restored.timer_store(domain).snapshot()) == expected[domain]
    fired = restored.timer_store("event").pop_due(float("inf"))
    assert [t for t, _, _ in fired] == sorted(t for t, _, _ in fired)
    assert all_timers(fired) == expected["event"]
    assert type(restored.timer_store("processing").pop_due(2000.0)[0][0]) is int


@pytest.mark.parametrize(("old_parallelism", "new_parallelism"), [(2, 3), (3, 1), (1, 2)])
@pytest.mark.parametrize("into", ["rocksdb", "heap"])
async def test_timers_rescale_by_key_group_ranges_from_native_checkpoints(
    backends: Backends, tmp_path: Path, old_parallelism: int, new_parallelism: int, into: str
) -> None:
    chk = tmp_path / "chk"
    store = SharedFileStore(chk)
    parts, expected = [], {"event": [], "processing": []}  # type: dict[str, list[Any]]
    for subtask in range(old_parallelism):
        old = backends.rocks(old_parallelism, subtask)
        fill(old, TIMED_KEYS)
        parts.append(await checkpoint(checkpoints(old, chk, subtask), 1, store))
        for domain in expected:
            expected[domain] += old.timer_store(domain).snapshot()  # type: ignore[arg-type]

    seen: dict[str, list[Any]] = {"event": [], "processing": []}
    for subtask in range(new_parallelism):
        backend = backends.make(new_parallelism, subtask, heap=into == "heap")
        held = await checkpoints(backend, chk, subtask).restore(parts)
        own = backend.key_group_range
        if into == "heap":  # the heap backend's operator gets the timers the files hold
            assert len(held) == 1
            stores = {"event": TimerQueue(), "processing": TimerQueue()}
            stores["event"].restore(held[0].event, own, MAX_PARALLELISM)
            stores["processing"].restore(held[0].processing, own, MAX_PARALLELISM)
        else:
            assert held == [] and isinstance(backend, RocksDBKeyedStateBackend)
            stores = {domain: backend.timer_store(domain) for domain in seen}  # type: ignore[misc]
        for domain, timers in stores.items():
            fired = timers.pop_due(float("inf"))
            assert all(kg in own for _, kg, _ in fired)
            assert [t for t, _, _ in fired] == sorted(t for t, _, _ in fired)
            seen[domain] += fired
    for domain in expected:
        assert all_timers(seen[domain]) == all_timers(expected[domain])
