"""Serializers in snapshots: per-value bytes, the recorded name, refusals naming operator,
state and type, and a restore with another serializer refused."""

from __future__ import annotations

import operator
from typing import Any

import pytest

from streamflow.checkpoint import serde
from streamflow.core.clock import ManualClock
from streamflow.errors import StateError, StateSerializationError
from streamflow.partitioning.keygroups import key_group_for
from streamflow.state import (
    AggregatingStateDescriptor,
    HashMapStateBackend,
    HeapKeyedStateBackend,
    JsonSerializer,
    ListStateDescriptor,
    MapStateDescriptor,
    OperatorStateStore,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
    restore_operator_state,
)

MAX_PARALLELISM = 16
JSON = JsonSerializer()
TTL = StateTtlConfig(ttl=100.0)


class Reversed:
    """A serializer of one's own: JSON bytes backwards, to tell its bytes from JSON's."""

    name = "reversed"

    def __init__(self) -> None:
        self.calls = 0

    def dumps(self, value: Any) -> bytes:
        self.calls += 1
        return JSON.dumps(value)[::-1]

    def loads(self, data: bytes) -> Any:
        return JSON.loads(data[::-1])


class SumCount:
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: int, accumulator: list[int]) -> list[int]:
        return [accumulator[0] + value, accumulator[1] + 1]

    def get_result(self, accumulator: list[int]) -> list[int]:
        return accumulator


def backend(clock: ManualClock | None = None) -> HeapKeyedStateBackend:
    return HashMapStateBackend().create_keyed_backend(
        operator_uid="op", subtask_index=3, max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM), clock=clock or ManualClock(10.0),
    )  # fmt: skip


def use(b: HeapKeyedStateBackend, key: Any) -> None:
    b.set_current_key(key, key_group_for(key, MAX_PARALLELISM))


def through_checkpoint(snapshot: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = serde.decode(serde.encode(snapshot))
    return result


def descriptors(serializer: Any, ttl: StateTtlConfig | None = None) -> list[Any]:
    return [
        ValueStateDescriptor("v", serializer=serializer, ttl=ttl),
        ListStateDescriptor("l", serializer=serializer, ttl=ttl),
        MapStateDescriptor("m", serializer=serializer, ttl=ttl),
        ReducingStateDescriptor("r", operator.add, serializer=serializer, ttl=ttl),
        AggregatingStateDescriptor("a", aggregate_fn=SumCount(), serializer=serializer, ttl=ttl),
    ]


def fill(b: HeapKeyedStateBackend, serializer: Any, ttl: StateTtlConfig | None = None) -> None:
    v, l, m, r, a = (b.get_state(d) for d in descriptors(serializer, ttl))
    for key in ("k1", ("k", 2)):
        use(b, key)
        v.update({"doc": [1, 2.5, None]})
        l.add_all(["x", {"y": 1}])
        m.put(("map", "key"), [True])  # keys are not the serializer's business: a tuple key is fine
        r.add(3)
        r.add(4)
        a.add(5)


def check(b: HeapKeyedStateBackend, serializer: Any, ttl: StateTtlConfig | None = None) -> None:
    v, l, m, r, a = (b.get_state(d) for d in descriptors(serializer, ttl))
    for key in ("k1", ("k", 2)):
        use(b, key)
        assert (v.value(), l.get(), m.items(), r.get(), a.get()) == (
            {"doc": [1, 2.5, None]}, ["x", {"y": 1}], [(("map", "key"), [True])], 7, [5, 1]
        )


@pytest.mark.parametrize("ttl", [None, TTL], ids=["plain", "ttl"])
@pytest.mark.parametrize("serializer", [JSON, Reversed()], ids=["json", "own"])
def test_values_go_through_the_serializer_and_back(serializer: Any, ttl: StateTtlConfig | None) -> None:
    original = backend()
    fill(original, serializer, ttl)
    encoded = serde.encode(original.snapshot())
    snapshot = serde.decode(encoded)  # a restore owns what it keeps: each gets its own decoded copy
    state = snapshot["states"]["v"]
    assert state["serializer"] == serializer.name
    stored = next(iter(state["key_groups"][key_group_for("k1", MAX_PARALLELISM)].values()))
    if ttl is None:
        assert serializer.loads(stored) == {"doc": [1, 2.5, None]}
    else:
        assert serializer.loads(stored[0]) == {"doc": [1, 2.5, None]} and stored[1] == 10.0  # the timestamp beside
    restored = backend()
    restored.restore([snapshot])
    check(restored, serializer, ttl)
    # registered before the restore: the same
    early = backend()
    for descriptor in descriptors(serializer, ttl):
        early.get_state(descriptor)
    early.restore([serde.decode(encoded)])
    check(early, serializer, ttl)


def test_restored_state_nobody_registers_keeps_its_bytes_and_serializer() -> None:
    own = Reversed()
    original = backend()
    fill(original, own)
    snapshot = through_checkpoint(original.snapshot())
    untouched = backend()
    untouched.restore([snapshot])
    assert [key for key, _ in untouched.keys("v")] != []  # keys are readable without a serializer
    calls = own.calls
    again = through_checkpoint(untouched.snapshot())
    assert again == snapshot and own.calls == calls  # saved again as it came, no serializer call


def test_the_default_serializer_is_recorded_as_pickle_and_stores_values_in_place() -> None:
    b = backend()
    fill(b, None)
    state = b.snapshot()["states"]["v"]
    assert state["serializer"] == "pickle"
    assert state["key_groups"][key_group_for("k1", MAX_PARALLELISM)]["k1"] == {"doc": [1, 2.5, None]}


@pytest.mark.parametrize(
    ("descriptor", "write", "where", "type_name", "path"),
    [
        (ValueStateDescriptor("v", serializer=JSON), lambda s: s.update({"a": (1, 2)}), "keyed state 'v' (key 'alice')",
         "tuple", "value['a']"),
        (ListStateDescriptor("l", serializer=JSON), lambda s: s.add_all([1, {2: "x"}]),
         "keyed state 'l' (key 'alice', element 1)", "int", "value"),
        (MapStateDescriptor("m", serializer=JSON), lambda s: s.put("k", {"s": {1}}),
         "keyed state 'm' (key 'alice', map key 'k')", "set", "value['s']"),
        (ValueStateDescriptor("t", serializer=JSON, ttl=TTL), lambda s: s.update(float("nan")),
         "keyed state 't' (key 'alice')", "float", "value"),
    ],
    ids=["tuple", "int-key", "set", "nan-with-ttl"],
)
def test_json_refuses_at_snapshot_time_naming_operator_state_key_and_type(
    descriptor: Any, write: Any, where: str, type_name: str, path: str
) -> None:
    b = backend()
    state = b.get_state(descriptor)
    use(b, "alice")
    write(state)
    with pytest.raises(StateSerializationError) as caught:
        b.snapshot()
    error = caught.value
    assert (error.operator, error.subtask, error.state, error.value_type, error.path) == (
        "op", 3, descriptor.name, type_name, path
    )
    assert str(error).startswith(f"operator 'op' (subtask 3): {where} cannot be written to the snapshot by its "
                                 f"serializer 'json' (a value of type {type_name}): {path} is ")  # fmt: skip
    assert "drop serializer=JsonSerializer() from the descriptor to use the default PickleSerializer" in str(error)


def test_a_serializer_of_ones_own_that_raises_is_named_too() -> None:
    class Picky(Reversed):
        name = "picky"

        def dumps(self, value: Any) -> bytes:
            if value == 13:
                raise ValueError("unlucky")
            return super().dumps(value)

    b = backend()
    items = b.get_state(ListStateDescriptor("l", serializer=Picky()))
    use(b, 7)
    items.add_all([1, 13])
    with pytest.raises(StateSerializationError, match=r"keyed state 'l' \(key 7, element 1\) cannot be written to the "
                       r"snapshot by its serializer 'picky' \(a value of type int\): ValueError: unlucky; fix the "
                       r"serializer or convert the value"):  # fmt: skip
        b.snapshot()


@pytest.mark.parametrize(("saved", "now"), [(JSON, None), (None, JSON), (JSON, Reversed())], ids=["json-pickle",
                         "pickle-json", "json-own"])  # fmt: skip
def test_restoring_with_another_serializer_is_refused(saved: Any, now: Any) -> None:
    original = backend()
    fill(original, saved)
    encoded = serde.encode(original.snapshot())
    saved_name = "pickle" if saved is None else saved.name
    now_name = "pickle" if now is None else now.name
    message = (f"operator 'op': keyed state 'v' was saved with serializer '{saved_name}', but its descriptor now uses "
               f"'{now_name}'; a state is read with the serializer that wrote it")  # fmt: skip
    late = backend()
    late.restore([serde.decode(encoded)])
    with pytest.raises(StateError, match=message):
        late.get_state(ValueStateDescriptor("v", serializer=now))
    assert late.get_state(ValueStateDescriptor("v", serializer=saved)) is not None  # the right one still works
    early = backend()
    early.get_state(ValueStateDescriptor("v", serializer=now))
    with pytest.raises(StateError, match=message):
        early.restore([serde.decode(encoded)])


def test_one_state_name_takes_one_serializer() -> None:
    b = backend()
    b.get_state(ValueStateDescriptor("v", serializer=JSON))
    with pytest.raises(StateError, match="is registered with serializer 'json', not 'pickle'"):
        b.get_state(ValueStateDescriptor("v"))


# -- operator state ---------------------------------------------------------------------


def test_operator_list_and_broadcast_state_with_a_serializer() -> None:
    store = OperatorStateStore()
    store.get_list_state(ListStateDescriptor("buf", serializer=JSON)).add_all([[1, "a"], {"k": None}])
    store.get_union_list_state(ListStateDescriptor("u", serializer=Reversed())).add("x")
    store.get_broadcast_state(MapStateDescriptor("rules", serializer=JSON)).put(("rule", 1), [10])
    snapshot = through_checkpoint(store.snapshot())
    assert snapshot["states"]["buf"] == {"mode": "split", "serializer": "json", "items": [b'[1,"a"]', b'{"k":null}']}
    assert snapshot["states"]["rules"]["items"] == [(("rule", 1), b"[10]")]
    restored = restore_operator_state([snapshot], 0, 1)
    assert restored.snapshot() == snapshot  # not registered: kept as saved
    assert restored.get_list_state(ListStateDescriptor("buf", serializer=JSON)).get() == [[1, "a"], {"k": None}]
    assert restored.get_union_list_state(ListStateDescriptor("u", serializer=Reversed())).get() == ["x"]
    assert restored.get_broadcast_state(MapStateDescriptor("rules", serializer=JSON)).items() == [(("rule", 1), [10])]


def test_operator_state_refusals_and_mismatches() -> None:
    store = OperatorStateStore()
    store.get_list_state(ListStateDescriptor("buf", serializer=JSON)).add((1, 2))
    with pytest.raises(StateSerializationError) as caught:
        store.snapshot()
    assert str(caught.value).startswith("operator state 'buf' (element 0) cannot be written to the snapshot by its "
                                        "serializer 'json' (a value of type tuple)")  # fmt: skip
    named = caught.value.in_operator("buffering", 1)
    assert str(named).startswith("operator 'buffering' (subtask 1): operator state 'buf' (element 0)")
    assert (named.operator, named.subtask, named.state) == ("buffering", 1, "buf")

    broadcast = OperatorStateStore()
    broadcast.get_broadcast_state(MapStateDescriptor("rules", serializer=JSON)).put("r", {1: 2})
    with pytest.raises(StateSerializationError, match=r"broadcast state 'rules' \(map key 'r'\) cannot be written"):
        broadcast.snapshot()

    saved = OperatorStateStore()
    saved.get_list_state(ListStateDescriptor("buf", serializer=JSON)).add([1])
    restored = restore_operator_state([through_checkpoint(saved.snapshot())], 0, 1)
    with pytest.raises(StateError, match="operator state 'buf' was saved with serializer 'json', but its descriptor "
                       "now uses 'pickle'"):  # fmt: skip
        restored.get_list_state(ListStateDescriptor("buf"))
    assert restored.get_list_state(ListStateDescriptor("buf", serializer=JSON)).get() == [[1]]  # nothing lost
    with pytest.raises(StateError, match="is registered with serializer 'json', not 'pickle'"):
        restored.get_list_state(ListStateDescriptor("buf"))


class Broken(Reversed):
    """Same name as Reversed, but cannot read: a restore with it fails and keeps the bytes."""

    def loads(self, data: bytes) -> Any:
        raise ValueError("cannot read")


def test_bytes_that_do_not_load_are_an_error_and_stay_as_they_were() -> None:
    original = backend()
    fill(original, Reversed())
    encoded = serde.encode(original.snapshot())
    restored = backend()
    restored.restore([serde.decode(encoded)])
    with pytest.raises(StateError, match=r"operator 'op': the value of key .* in keyed state 'v' does not load with "
                       r"serializer 'reversed' \(ValueError: cannot read\); the snapshot is damaged"):  # fmt: skip
        restored.get_state(ValueStateDescriptor("v", serializer=Broken()))
    check(restored, Reversed())  # nothing was half decoded

    store = OperatorStateStore()
    store.get_list_state(ListStateDescriptor("buf", serializer=Reversed())).add([1])
    again = restore_operator_state([through_checkpoint(store.snapshot())], 0, 1)
    with pytest.raises(StateError, match="operator state 'buf' does not load with serializer 'reversed'"):
        again.get_list_state(ListStateDescriptor("buf", serializer=Broken()))
    assert again.get_list_state(ListStateDescriptor("buf", serializer=Reversed())).get() == [[1]]
