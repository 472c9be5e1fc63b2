"""Keyed state handles of every backend (``STATE_BACKENDS``): operations, key scoping, registration."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any

import pytest
from contract.state_backends import BackendFactory

from streamflow.core.clock import ManualClock
from streamflow.errors import StateError
from streamflow.partitioning.keygroups import key_group_for
from streamflow.state import (
    AggregatingState,
    AggregatingStateDescriptor,
    KeyedStateBackend,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    ReducingState,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueState,
    ValueStateDescriptor,
)

MAX_PARALLELISM = 8


class Average:
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: int, accumulator: list[int]) -> list[int]:
        return [accumulator[0] + value, accumulator[1] + 1]

    def get_result(self, accumulator: list[int]) -> float:
        return accumulator[0] / accumulator[1]


MakeBackend = Callable[[], KeyedStateBackend]


@pytest.fixture
def make_backend(backend_factory: BackendFactory) -> MakeBackend:
    """Fresh keyed backends of the backend under test (each test runs once per backend)."""
    return lambda: backend_factory().create_keyed_backend(
        operator_uid="op",
        subtask_index=0,
        max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM),
        clock=ManualClock(),
    )


def use(backend: KeyedStateBackend, key: Any) -> None:
    backend.set_current_key(key, key_group_for(key, MAX_PARALLELISM))


def test_value_state_operations(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(ValueStateDescriptor("count", default=0))
    assert isinstance(state, ValueState)
    use(backend, "a")
    assert state.value() == 0
    state.update(5)
    assert state.value() == 5
    state.update(state.value() + 1)  # type: ignore[operator]
    assert state.value() == 6
    state.clear()
    assert state.value() == 0
    state.clear()  # clearing an absent value is fine
    assert state.value() == 0


def test_value_state_without_default_returns_none_and_can_hold_none(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(ValueStateDescriptor[Any]("v"))
    use(backend, 1)
    assert state.value() is None
    state.update("x")
    assert state.value() == "x"


def test_list_state_operations(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(ListStateDescriptor[int]("items"))
    assert isinstance(state, ListState)
    use(backend, "a")
    assert state.get() == []
    state.add(1)
    state.add(2)
    state.add_all([3, 4])
    state.add_all([])
    assert state.get() == [1, 2, 3, 4]
    copy = state.get()
    copy.append(99)
    assert state.get() == [1, 2, 3, 4]
    state.update(iter([7, 8]))
    assert state.get() == [7, 8]
    state.update([])
    assert state.get() == []
    assert list(backend.keys("items")) == []
    state.add_all(x for x in (5, 6))
    assert state.get() == [5, 6]
    state.clear()
    assert state.get() == []


def test_map_state_operations(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(MapStateDescriptor[Any, str]("index"))
    assert isinstance(state, MapState)
    use(backend, "a")
    assert state.is_empty()
    assert state.get(1) is None
    assert state.get(1, "none") == "none"
    assert state.keys() == [] and state.values() == [] and state.items() == []
    state.put(1, "one")
    state.put((2, "b"), "two")
    state.put_all({3: "three", 1: "uno"})
    state.put_all({})
    assert state.get(1) == "uno"
    assert state.get((2, "b")) == "two"
    assert state.contains(3) and not state.contains(4)
    # the order of a map is the backend's (test_map_order.py); keys, values and items agree on it
    assert sorted(state.items(), key=repr) == sorted([(1, "uno"), ((2, "b"), "two"), (3, "three")], key=repr)
    assert list(zip(state.keys(), state.values())) == state.items()
    assert not state.is_empty()
    state.remove(3)
    state.remove(404)  # absent: no error
    assert sorted(state.keys(), key=repr) == [(2, "b"), 1]
    state.remove(1)
    state.remove((2, "b"))
    assert state.is_empty()
    assert list(backend.keys("index")) == []  # an emptied map leaves no key behind
    state.put("k", "v")
    state.clear()
    assert state.is_empty() and state.get("k") is None


def test_reducing_state_operations(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(ReducingStateDescriptor("sum", operator.add))
    assert isinstance(state, ReducingState)
    use(backend, "a")
    assert state.get() is None
    state.add(3)
    assert state.get() == 3
    state.add(4)
    state.add(-1)
    assert state.get() == 6
    state.clear()
    assert state.get() is None
    state.add(10)
    assert state.get() == 10


def test_aggregating_state_operations(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(AggregatingStateDescriptor("avg", aggregate_fn=Average()))
    assert isinstance(state, AggregatingState)
    use(backend, "a")
    assert state.get() is None
    state.add(2)
    assert state.get() == 2.0
    state.add(4)
    state.add(9)
    assert state.get() == 5.0
    state.clear()
    assert state.get() is None


def test_keys_do_not_see_each_others_state(make_backend: MakeBackend) -> None:
    backend = make_backend()
    value = backend.get_state(ValueStateDescriptor("v", default=0))
    items = backend.get_state(ListStateDescriptor[str]("l"))
    index = backend.get_state(MapStateDescriptor[str, int]("m"))
    total = backend.get_state(ReducingStateDescriptor("r", operator.add))
    avg = backend.get_state(AggregatingStateDescriptor("a", aggregate_fn=Average()))
    for key, n in (("alice", 1), ("bob", 2)):
        use(backend, key)
        value.update(n)
        items.add(key)
        index.put(key, n)
        total.add(n)
        total.add(n)
        avg.add(n * 10)
    use(backend, "alice")
    expected = (1, ["alice"], [("alice", 1)], 2, 10.0)
    assert (value.value(), items.get(), index.items(), total.get(), avg.get()) == expected
    use(backend, "bob")
    assert (value.value(), items.get(), index.items(), total.get(), avg.get()) == (2, ["bob"], [("bob", 2)], 4, 20.0)
    use(backend, "carol")
    assert (value.value(), items.get(), index.items(), total.get(), avg.get()) == (0, [], [], None, None)


def test_keys_in_the_same_key_group_are_isolated(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(ValueStateDescriptor[str]("v"))
    backend.set_current_key("x", 3)
    state.update("for x")
    backend.set_current_key("y", 3)
    assert state.value() is None
    state.update("for y")
    backend.set_current_key("x", 3)
    assert state.value() == "for x"
    assert sorted(backend.keys("v")) == [("x", 3), ("y", 3)]


def test_get_current_key(make_backend: MakeBackend) -> None:
    backend = make_backend()
    with pytest.raises(StateError, match="outside a keyed context"):
        backend.get_current_key()
    use(backend, ("k", 1))
    assert backend.get_current_key() == ("k", 1)


NO_KEY_CALLS: list[tuple[Any, Callable[[Any], Any]]] = [
    (ValueStateDescriptor("v"), lambda s: s.value()),
    (ValueStateDescriptor("v"), lambda s: s.update(1)),
    (ValueStateDescriptor("v"), lambda s: s.clear()),
    (ListStateDescriptor("l"), lambda s: s.get()),
    (ListStateDescriptor("l"), lambda s: s.add(1)),
    (ListStateDescriptor("l"), lambda s: s.add_all([1])),
    (ListStateDescriptor("l"), lambda s: s.update([1])),
    (MapStateDescriptor("m"), lambda s: s.get(1)),
    (MapStateDescriptor("m"), lambda s: s.put(1, 2)),
    (MapStateDescriptor("m"), lambda s: s.put_all({1: 2})),
    (MapStateDescriptor("m"), lambda s: s.remove(1)),
    (MapStateDescriptor("m"), lambda s: s.contains(1)),
    (MapStateDescriptor("m"), lambda s: s.keys()),
    (MapStateDescriptor("m"), lambda s: s.is_empty()),
    (ReducingStateDescriptor("r", operator.add), lambda s: s.get()),
    (ReducingStateDescriptor("r", operator.add), lambda s: s.add(1)),
    (AggregatingStateDescriptor("a", aggregate_fn=Average()), lambda s: s.get()),
    (AggregatingStateDescriptor("a", aggregate_fn=Average()), lambda s: s.add(1)),
]


@pytest.mark.parametrize("ttl", [None, StateTtlConfig(ttl=10)], ids=["plain", "ttl"])
@pytest.mark.parametrize(("descriptor", "call"), NO_KEY_CALLS)
def test_keyed_state_without_current_key_raises(
    make_backend: MakeBackend, descriptor: Any, call: Callable[[Any], Any], ttl: StateTtlConfig | None
) -> None:
    backend = make_backend()
    state = backend.get_state(dataclasses.replace(descriptor, ttl=ttl))
    with pytest.raises(StateError, match="keyed state used outside a keyed context; use it in a KeyedProcessFunction"):
        call(state)


def test_get_state_returns_the_same_handle_for_an_equal_descriptor(make_backend: MakeBackend) -> None:
    backend = make_backend()
    first = backend.get_state(ValueStateDescriptor("v", default=0))
    assert backend.get_state(ValueStateDescriptor("v", default=0)) is first


def test_another_descriptor_of_the_same_kind_shares_the_data(make_backend: MakeBackend) -> None:
    backend = make_backend()
    first = backend.get_state(ReducingStateDescriptor("r", operator.add))
    use(backend, "a")
    first.add(2)
    second = backend.get_state(ReducingStateDescriptor[int]("r", max))
    second.add(1)
    assert second.get() == 2
    assert first.get() == 2


def test_registering_a_name_as_another_kind_fails(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.get_state(ValueStateDescriptor("shared"))
    with pytest.raises(StateError, match="state 'shared' of 'op' is already a value state, cannot use it as a list"):
        backend.get_state(ListStateDescriptor("shared"))


def test_registering_a_name_with_another_ttl_fails(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.get_state(ValueStateDescriptor("v", ttl=StateTtlConfig(ttl=10)))
    with pytest.raises(StateError, match="state 'v' of 'op' is registered with ttl="):
        backend.get_state(ValueStateDescriptor("v", ttl=StateTtlConfig(ttl=20)))
    with pytest.raises(StateError, match="state 'v'"):
        backend.get_state(ValueStateDescriptor("v"))


def test_get_state_refuses_non_descriptors(make_backend: MakeBackend) -> None:
    with pytest.raises(StateError, match="get_state needs a ValueStateDescriptor"):
        make_backend().get_state("count")  # type: ignore[call-overload]


def test_keys_lists_key_and_key_group_and_tolerates_mutation(make_backend: MakeBackend) -> None:
    backend = make_backend()
    state = backend.get_state(ValueStateDescriptor[int]("v"))
    for key in range(20):
        use(backend, key)
        state.update(key)
    seen = []
    for key, key_group in backend.keys("v"):
        assert key_group == key_group_for(key, MAX_PARALLELISM)
        backend.set_current_key(key, key_group)
        state.clear()  # mutating while iterating is allowed
        seen.append(key)
    assert sorted(seen) == list(range(20))
    assert list(backend.keys("v")) == []


def test_keys_of_an_unknown_state_fails(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.get_state(ValueStateDescriptor("known"))
    with pytest.raises(StateError, match=r"no state 'unknown' in 'op'; known states: \['known'\]"):
        backend.keys("unknown")


def test_ttl_handles_are_still_instances_of_the_public_types(make_backend: MakeBackend) -> None:
    backend = make_backend()
    ttl = StateTtlConfig(ttl=1)
    assert isinstance(backend.get_state(ValueStateDescriptor("v", ttl=ttl)), ValueState)
    assert isinstance(backend.get_state(ListStateDescriptor("l", ttl=ttl)), ListState)
    assert isinstance(backend.get_state(MapStateDescriptor("m", ttl=ttl)), MapState)


def test_backend_refuses_a_key_group_range_outside_max_parallelism(backend_factory: BackendFactory) -> None:
    from streamflow.errors import ConfigError

    with pytest.raises(ConfigError, match="key_group_range"):
        backend_factory().create_keyed_backend(
            operator_uid="op", subtask_index=0, max_parallelism=4, key_group_range=range(2, 6), clock=ManualClock()
        )


def test_close_drops_state(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.get_state(ValueStateDescriptor("v"))
    backend.close()
    assert backend.snapshot() == {"format": 2, "states": {}}


def test_the_heap_hands_out_a_value_table_only_where_plain_dict_operations_are_the_state() -> None:
    from streamflow.state import HashMapStateBackend
    from streamflow.state.backend import ValueTableBackend

    backend = HashMapStateBackend().create_keyed_backend(
        operator_uid="op", subtask_index=0, max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM), clock=ManualClock(),
    )  # fmt: skip
    assert isinstance(backend, ValueTableBackend)
    assert backend.value_table("total") is None  # not registered
    total = backend.get_state(ValueStateDescriptor[int]("total"))
    table = backend.value_table("total")
    assert table is not None
    table.setdefault(key_group_for("a", MAX_PARALLELISM), {})["a"] = 5  # a write of the table is a write of the state
    use(backend, "a")
    assert total.value() == 5
    backend.get_state(ValueStateDescriptor[int]("counted", default=0))
    backend.get_state(ValueStateDescriptor[int]("timed", ttl=StateTtlConfig(ttl=10.0)))
    backend.get_state(ListStateDescriptor[int]("listed"))
    assert [backend.value_table(name) for name in ("counted", "timed", "listed")] == [None, None, None]
    assert backend.value_table("total") is table
    backend.get_state(ValueStateDescriptor[int]("swept", ttl=StateTtlConfig(ttl=10.0, cleanup_incremental=2, incremental_per_record=True)))
    assert backend.value_table("total") is None  # on_record has work per record now
