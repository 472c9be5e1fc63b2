"""Canonical snapshots of every backend (``STATE_BACKENDS``): format 2, the checkpoint round trip,
restore by key-group range."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest
from contract.state_backends import BackendFactory

from streamflow.checkpoint import serde
from streamflow.core.clock import ManualClock
from streamflow.errors import StateError
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.state import (
    AggregatingStateDescriptor,
    KeyedStateBackend,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)

MAX_PARALLELISM = 12


class Average:
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: int, accumulator: list[int]) -> list[int]:
        return [accumulator[0] + value, accumulator[1] + 1]

    def get_result(self, accumulator: list[int]) -> float:
        return accumulator[0] / accumulator[1]


VALUE = ValueStateDescriptor("value", default=0)
LIST = ListStateDescriptor[str]("list")
MAP = MapStateDescriptor[Any, Any]("map")
REDUCING = ReducingStateDescriptor("reducing", operator.add)
AGGREGATING = AggregatingStateDescriptor("aggregating", aggregate_fn=Average())
TTL = StateTtlConfig(ttl=100.0)


MakeBackend = Callable[..., KeyedStateBackend]


@pytest.fixture
def make_backend(backend_factory: BackendFactory) -> MakeBackend:
    """Fresh keyed backends of the backend under test (each test runs once per backend)."""

    def make(
        key_groups: range = range(MAX_PARALLELISM), clock: ManualClock | None = None, subtask: int = 0
    ) -> KeyedStateBackend:
        return backend_factory().create_keyed_backend(
            operator_uid="op",
            subtask_index=subtask,
            max_parallelism=MAX_PARALLELISM,
            key_group_range=key_groups,
            clock=clock or ManualClock(),
        )

    return make


def use(backend: KeyedStateBackend, key: Any) -> None:
    backend.set_current_key(key, key_group_for(key, MAX_PARALLELISM))


def through_checkpoint(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What a restore gets: the snapshot encoded as the task does, then decoded."""
    result: dict[str, Any] = serde.decode(serde.encode(snapshot))
    return result


def test_snapshot_format(make_backend: MakeBackend) -> None:
    backend = make_backend()
    value = backend.get_state(VALUE)
    index = backend.get_state(MAP)
    use(backend, "a")
    value.update(7)
    index.put(1, "one")
    kg = key_group_for("a", MAX_PARALLELISM)
    assert backend.snapshot() == {
        "format": 2,
        "states": {
            "value": {"kind": "value", "ttl": False, "serializer": "pickle", "key_groups": {kg: {"a": 7}}},
            "map": {"kind": "map", "ttl": False, "serializer": "pickle", "key_groups": {kg: {"a": {1: "one"}}}},
        },
    }


def fill(backend: KeyedStateBackend, keys: list[Any]) -> None:
    value = backend.get_state(VALUE)
    items = backend.get_state(LIST)
    index = backend.get_state(MAP)
    total = backend.get_state(REDUCING)
    avg = backend.get_state(AGGREGATING)
    for n, key in enumerate(keys):
        use(backend, key)
        value.update(n)
        items.add_all([f"{key}-1", f"{key}-2"])
        index.put(n, "int key")
        index.put(("tuple", n), ["list", "value"])
        index.put("str", None)
        total.add(n)
        total.add(1)
        avg.add(n)
        avg.add(n + 2)


def check(backend: KeyedStateBackend, keys: list[Any]) -> None:
    value = backend.get_state(VALUE)
    items = backend.get_state(LIST)
    index = backend.get_state(MAP)
    total = backend.get_state(REDUCING)
    avg = backend.get_state(AGGREGATING)
    for n, key in enumerate(keys):
        use(backend, key)
        assert value.value() == n
        assert items.get() == [f"{key}-1", f"{key}-2"]
        expected = [(n, "int key"), (("tuple", n), ["list", "value"]), ("str", None)]
        assert sorted(index.items(), key=repr) == sorted(expected, key=repr)  # order: test_map_order.py
        assert index.get(("tuple", n)) == ["list", "value"]
        assert total.get() == n + 1
        assert avg.get() == n + 1.0


KEYS: list[Any] = ["alice", 42, ("user", 7), ("nested", ("t", 1)), 3.5]


def test_round_trip_through_a_checkpoint_into_a_new_backend(make_backend: MakeBackend) -> None:
    original = make_backend()
    fill(original, KEYS)
    snapshot = through_checkpoint(original.snapshot())

    restored = make_backend()
    restored.restore([snapshot])
    check(restored, KEYS)
    assert sorted(map(repr, (key for key, _ in restored.keys("value")))) == sorted(map(repr, KEYS))
    assert through_checkpoint(restored.snapshot()) == snapshot


def test_restore_after_get_state_sees_the_data(make_backend: MakeBackend) -> None:
    original = make_backend()
    fill(original, KEYS)
    restored = make_backend()
    value = restored.get_state(VALUE)
    restored.restore([through_checkpoint(original.snapshot())])
    use(restored, ("user", 7))
    assert value.value() == 2
    check(restored, KEYS)


def test_restored_state_is_snapshotted_without_get_state(make_backend: MakeBackend) -> None:
    original = make_backend()
    fill(original, KEYS)
    snapshot = through_checkpoint(original.snapshot())
    restored = make_backend()
    restored.restore([snapshot])
    again = through_checkpoint(restored.snapshot())
    assert again == snapshot
    assert sorted(again["states"]) == ["aggregating", "list", "map", "reducing", "value"]


def test_the_encoded_snapshot_is_not_changed_by_later_mutation(make_backend: MakeBackend) -> None:
    """snapshot() shares the live dicts; encoding it at once (as the task does) is the copy."""
    backend = make_backend()
    items = backend.get_state(LIST)
    index = backend.get_state(MAP)
    use(backend, "a")
    items.add("x")
    index.put("k", 1)
    encoded = serde.encode(backend.snapshot())
    items.add("y")
    index.put("k2", 2)
    index.remove("k")
    restored = make_backend()
    restored.restore([serde.decode(encoded)])
    use(restored, "a")
    assert restored.get_state(LIST).get() == ["x"]
    assert restored.get_state(MAP).items() == [("k", 1)]


def test_ttl_state_round_trip_keeps_timestamps(make_backend: MakeBackend) -> None:
    clock = ManualClock(1000.0)
    original = make_backend(clock=clock)
    value = original.get_state(ValueStateDescriptor[str]("v", ttl=TTL))
    items = original.get_state(ListStateDescriptor[str]("l", ttl=TTL))
    index = original.get_state(MapStateDescriptor[int, str]("m", ttl=TTL))
    use(original, ("k", 1))
    value.update("x")
    items.add("e")
    index.put(5, "five")
    snapshot = through_checkpoint(original.snapshot())
    assert snapshot["states"]["m"]["ttl"] is True

    clock.set(1050.0)
    restored = make_backend(clock=clock)
    restored.restore([snapshot])
    value = restored.get_state(ValueStateDescriptor[str]("v", ttl=TTL))
    items = restored.get_state(ListStateDescriptor[str]("l", ttl=TTL))
    index = restored.get_state(MapStateDescriptor[int, str]("m", ttl=TTL))
    use(restored, ("k", 1))
    assert (value.value(), items.get(), index.items()) == ("x", ["e"], [(5, "five")])
    clock.set(1100.0)  # 100 s after the original write: expired, the timestamp survived
    assert (value.value(), items.get(), index.items()) == (None, [], [])


def test_ttl_can_be_switched_on_and_off_between_runs(make_backend: MakeBackend) -> None:
    clock = ManualClock(50.0)
    plain = make_backend(clock=clock)
    state = plain.get_state(ValueStateDescriptor[str]("v"))
    use(plain, "a")
    state.update("x")
    with_ttl = make_backend(clock=clock)
    with_ttl.restore([through_checkpoint(plain.snapshot())])
    ttl_state = with_ttl.get_state(ValueStateDescriptor[str]("v", ttl=TTL))
    use(with_ttl, "a")
    assert ttl_state.value() == "x"
    assert with_ttl.snapshot()["states"]["v"]["key_groups"][key_group_for("a", MAX_PARALLELISM)] == {
        "a": ("x", 50.0)
    }  # stamped with the restore time

    without = make_backend(clock=clock)
    without.restore([through_checkpoint(with_ttl.snapshot())])
    plain_again = without.get_state(ValueStateDescriptor[str]("v"))
    use(without, "a")
    assert plain_again.value() == "x"


def test_rescale_from_two_subtasks_to_three_keeps_only_own_key_groups(make_backend: MakeBackend) -> None:
    keys = [f"user-{i}" for i in range(200)] + [("tuple", i) for i in range(50)]
    old = [make_backend(key_group_range(MAX_PARALLELISM, 2, i), subtask=i) for i in range(2)]
    descriptor = ValueStateDescriptor[Any]("v")
    for backend in old:
        state = backend.get_state(descriptor)
        for key in keys:
            kg = key_group_for(key, MAX_PARALLELISM)
            if kg in backend.key_group_range:
                backend.set_current_key(key, kg)
                state.update(repr(key))
    snapshots = [through_checkpoint(backend.snapshot()) for backend in old]

    seen: list[Any] = []
    for subtask in range(3):
        own = key_group_range(MAX_PARALLELISM, 3, subtask)
        backend = make_backend(own, subtask=subtask)
        backend.restore(snapshots)
        restored = sorted(backend.keys("v"), key=repr)
        groups = {key: key_group_for(key, MAX_PARALLELISM) for key in keys}
        expected = sorted(((key, kg) for key, kg in groups.items() if kg in own), key=repr)
        assert restored == expected
        state = backend.get_state(descriptor)
        for key, key_group in restored:
            backend.set_current_key(key, key_group)
            assert state.value() == repr(key)
        assert set(backend.snapshot()["states"]["v"]["key_groups"]) <= set(own)
        seen.extend(key for key, _ in restored)
    assert sorted(seen, key=repr) == sorted(keys, key=repr)


def test_restore_skips_an_empty_snapshot(make_backend: MakeBackend) -> None:
    original = make_backend()
    fill(original, KEYS)
    restored = make_backend()
    restored.restore([{}, through_checkpoint(original.snapshot())])
    check(restored, KEYS)


def test_restore_refuses_an_unknown_format(make_backend: MakeBackend) -> None:
    with pytest.raises(StateError, match="has format 3; this version of streamflow reads formats 1 and 2"):
        make_backend().restore([{"format": 3, "states": {}}])


def test_restore_refuses_a_kind_that_conflicts_with_the_registered_state(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.get_state(ListStateDescriptor("s"))
    snapshot = {"format": 1, "states": {"s": {"kind": "value", "ttl": False, "key_groups": {}}}}
    with pytest.raises(StateError, match="snapshot holds state 's' as a value state, but 'op' registered it as a list"):
        backend.restore([snapshot])


def test_get_state_after_restore_refuses_another_kind(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.restore([{"format": 1, "states": {"s": {"kind": "map", "ttl": False, "key_groups": {}}}}])
    with pytest.raises(
        StateError,
        match="operator 'op': the restored snapshot holds state 's' as a map state, but the job now asks for it "
        "with a ValueStateDescriptor",
    ) as caught:
        backend.get_state(ValueStateDescriptor("s"))
    assert (caught.value.operator, caught.value.state) == ("op", "s")
