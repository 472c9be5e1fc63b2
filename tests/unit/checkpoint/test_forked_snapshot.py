"""Heap snapshots taken by a forked child (real fork, real memfd and pidfd): the keyed part equals the
inline snapshot type for type, whatever the task changes after the barrier; a value that
does not pickle fails the snapshot with the operator, subtask, state and key named, as
inline; a child that dies midway fails it; a discarded child is killed and reaped; below
the threshold, or when fork fails, the task snapshots itself."""

from __future__ import annotations

import datetime
import decimal
import os
import pickle
import subprocess
import sys
import time
from typing import Any

import pytest

from streamflow.checkpoint.forked_snapshot import ForkedSnapshot, fork_snapshot
from streamflow.checkpoint.incremental import KeyedCheckpoints
from streamflow.checkpoint.serde import PickledPart, decode, encode
from streamflow.checkpoint.shared_files import SharedFileStore
from streamflow.checkpoint.snapshot import SnapshotType
from streamflow.core.clock import ManualClock
from streamflow.errors import ConfigError, StateSerializationError
from streamflow.partitioning.keygroups import key_group_for
from streamflow.state import (
    HashMapStateBackend,
    JsonSerializer,
    ListStateDescriptor,
    MapStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from streamflow.state.heap import FORK_AVAILABLE, HeapKeyedStateBackend

pytestmark = pytest.mark.skipif(not FORK_AVAILABLE, reason="snapshots fork on Linux only")

MAX_PARALLELISM = 32
VALUE = ValueStateDescriptor[Any]("value")
LIST = ListStateDescriptor[Any]("list")
MAP = MapStateDescriptor[Any, Any]("map")
JSON = ValueStateDescriptor[Any]("json", serializer=JsonSerializer())
EXPIRING = ValueStateDescriptor[Any]("expiring", ttl=StateTtlConfig(ttl=10.0, cleanup_full_snapshot=True))
KEYS: list[Any] = [f"user-{i}" for i in range(200)] + [(i, "t") for i in range(20)] + [7, 2.5, b"raw"]


def backend(fork_from: int | None, clock: ManualClock | None = None) -> HeapKeyedStateBackend:
    return HashMapStateBackend(fork_snapshots_from=fork_from).create_keyed_backend(
        operator_uid="count", subtask_index=1, max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM), clock=clock or ManualClock(),
    )  # fmt: skip


def fill(target: HeapKeyedStateBackend) -> None:
    value, items, index, json, expiring = (target.get_state(d) for d in (VALUE, LIST, MAP, JSON, EXPIRING))
    for n, key in enumerate(KEYS):
        target.set_current_key(key, key_group_for(key, MAX_PARALLELISM))
        value.update({"n": n, "at": datetime.date(2026, 1, 1 + n % 28), "cost": decimal.Decimal(n) / 4, "key": key})
        items.add((key, n))
        index.put(("m", n % 3), {n})
        json.update([n, str(key)])
        if n % 2:
            expiring.update(n)


def keyed_checkpoints(target: HeapKeyedStateBackend) -> KeyedCheckpoints:
    return KeyedCheckpoints(target, owner="count-1", checkpoint_directory=None)


async def forked(checkpoints: KeyedCheckpoints, tmp_path: Any) -> Any:
    keyed, pending = await checkpoints.snapshot(1, SnapshotType.CHECKPOINT)
    assert keyed is None and isinstance(pending, ForkedSnapshot)
    try:
        finished = await pending.finish(SharedFileStore(tmp_path))
    finally:
        await pending.discard()
    assert isinstance(finished.keyed, PickledPart) and finished.shared == ()
    return finished.keyed


def same(a: Any, b: Any) -> None:
    """Equal, and of the same type all the way down (dicts, lists, tuples, sets)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            same(key, next(k for k in b if k == key))
            same(a[key], b[key])
    elif isinstance(a, (list, tuple, set)):
        assert len(a) == len(b)
        for x, y in zip(sorted(a, key=repr), sorted(b, key=repr)):
            same(x, y)
    else:
        assert a == b


async def test_the_child_writes_the_snapshot_as_it_was_at_the_barrier(tmp_path: Any) -> None:
    clock = ManualClock(100.0)
    live = backend(0, clock)
    fill(live)
    expected = decode(encode(live.snapshot()))
    checkpoints = keyed_checkpoints(live)
    keyed, pending = await checkpoints.snapshot(1, SnapshotType.CHECKPOINT)
    assert keyed is None and isinstance(pending, ForkedSnapshot)
    # after the barrier: values mutated in place, keys added and removed, time moves on
    value, items = live.get_state(VALUE), live.get_state(LIST)
    for key in KEYS[:50]:
        live.set_current_key(key, key_group_for(key, MAX_PARALLELISM))
        stored = value.value()
        assert stored is not None
        stored["n"] = -1
        items.add("after")
        live.get_state(MAP).clear()
    live.set_current_key("new", key_group_for("new", MAX_PARALLELISM))
    value.update("new")
    clock.advance(20.0)  # every TTL value expired now: the child's snapshot still holds them
    try:
        finished = await pending.finish(SharedFileStore(tmp_path))
    finally:
        await pending.discard()
    assert isinstance(finished.keyed, PickledPart)
    stored = decode(encode({"keyed": finished.keyed, "timers": {"processing": [], "event": []}}))
    same(stored["keyed"], expected)
    assert stored["keyed"]["states"]["expiring"]["key_groups"], "TTL values of the barrier's time kept"
    restored = backend(None, clock)
    restored.restore([stored["keyed"]])
    same(decode(encode(restored.snapshot())), expected)


async def test_a_value_that_does_not_pickle_fails_the_snapshot_naming_the_operator(tmp_path: Any) -> None:
    live = backend(0)
    fill(live)
    live.set_current_key("bad", key_group_for("bad", MAX_PARALLELISM))
    live.get_state(VALUE).update(lambda: None)
    expected = r"^operator 'count' \(subtask 1\): keyed state 'value' \(key 'bad'\) holds a value of type function"
    with pytest.raises(StateSerializationError, match=expected) as failure:
        await forked(keyed_checkpoints(live), tmp_path)
    assert failure.value.fields["operator"] == "count" and failure.value.fields["state"] == "value"


async def test_a_discarded_child_is_killed_and_reaped() -> None:
    live = backend(0)
    fill(live)
    _, pending = await keyed_checkpoints(live).snapshot(1, SnapshotType.CHECKPOINT)
    assert isinstance(pending, ForkedSnapshot)
    await pending.discard()
    with pytest.raises(ChildProcessError):
        os.waitpid(pending.pid, os.WNOHANG)


async def test_below_the_threshold_the_task_pickles_the_snapshot_itself() -> None:
    live = backend(len(KEYS) * 5 + 1)  # five states; fewer keys than that in all of them
    fill(live)
    assert live.key_count() < len(KEYS) * 5
    keyed, pending = await keyed_checkpoints(live).snapshot(1, SnapshotType.CHECKPOINT)
    assert pending is None and keyed is not None
    same(decode(encode(keyed)), decode(encode(live.snapshot())))
    assert backend(None).fork_snapshots_from is None


async def test_savepoints_fork_too_and_read_back_the_same(tmp_path: Any) -> None:
    live = backend(0)
    fill(live)
    keyed, pending = await keyed_checkpoints(live).snapshot(1, SnapshotType.SAVEPOINT)
    assert keyed is None and isinstance(pending, ForkedSnapshot)
    try:
        finished = await pending.finish(SharedFileStore(tmp_path))
    finally:
        await pending.discard()
    same(pickle.loads(pickle.dumps(finished.keyed)), decode(encode(live.snapshot())))


@pytest.mark.parametrize("bad", [-1, 2.5, True, "many"])
def test_a_threshold_that_is_not_a_number_of_keys_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigError, match="fork_snapshots_from must be a number of keys"):
        HashMapStateBackend(fork_snapshots_from=bad)


async def test_a_child_that_dies_before_writing_all_fails_the_snapshot(tmp_path: Any) -> None:
    pending = fork_snapshot(lambda: os._exit(3), operator="count", subtask=1)  # dies as if killed
    try:
        with pytest.raises(StateSerializationError, match=r"^operator 'count' \(subtask 1\): the child process \d+ "):
            await pending.finish(SharedFileStore(tmp_path))
    finally:
        await pending.discard()


async def test_when_fork_fails_the_task_snapshots_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    live = backend(0)
    fill(live)
    opened = len(os.listdir("/proc/self/fd"))

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    keyed, pending = await keyed_checkpoints(live).snapshot(1, SnapshotType.CHECKPOINT)
    assert pending is None and keyed is not None
    same(decode(encode(keyed)), decode(encode(live.snapshot())))
    assert len(os.listdir("/proc/self/fd")) == opened  # the memfd was closed


_PARENT = """
import sys, time
from streamflow.checkpoint.forked_snapshot import fork_snapshot
child = fork_snapshot(lambda: time.sleep(60) or {}, operator="count", subtask=0)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_dies_with_its_killed_job_process() -> None:
    """A job SIGKILLed while a child pickles its state leaves no child pickling on."""
    with subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert _alive(child)
        finally:
            parent.kill()
            parent.wait(10)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child), f"snapshot child {child} still runs after its parent was killed"


def _alive(pid: int) -> bool:
    """``pid`` runs and is not a zombie (a reaped or exited orphan is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
