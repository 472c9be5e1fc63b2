"""Broadcast state: the map, its read-only view, and how it is snapshotted and restored."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow.checkpoint.serde import decode, encode
from streamflow.errors import ConfigError, StateError
from streamflow.state import (
    BroadcastState,
    ListStateDescriptor,
    MapStateDescriptor,
    OperatorStateStore,
    ReadOnlyBroadcastState,
    StateTtlConfig,
    redistribute_broadcast,
    restore_operator_state,
)

RULES = MapStateDescriptor[str, int]("rules")


def test_broadcast_state_reads_and_writes_like_a_map() -> None:
    state: BroadcastState[str, int] = BroadcastState("rules")
    assert state.is_empty() and len(state) == 0
    state.put("a", 1)
    state.put_all({"b": 2, "c": 3})
    state.remove("c")
    state.remove("missing")  # no error
    assert state.get("a") == 1 and state.get("zz") is None and state.get("zz", 7) == 7
    assert state.contains("b") and "b" in state and not state.contains("c")
    assert state.keys() == ["a", "b"] and state.values() == [1, 2] and state.items() == [("a", 1), ("b", 2)]
    state.clear()
    assert state.is_empty()


def test_read_only_view_sees_the_map_and_its_later_writes() -> None:
    state: BroadcastState[str, int] = BroadcastState("rules", [("a", 1)])
    view = state.read_only()
    assert isinstance(view, ReadOnlyBroadcastState) and not isinstance(view, BroadcastState)
    assert view.get("a") == 1 and view.items() == [("a", 1)]
    state.put("b", 2)
    assert view.keys() == ["a", "b"] and view.contains("b") and len(view) == 2


@pytest.mark.parametrize(
    ("method", "args"),
    [("put", ("x", 9)), ("put_all", ({"x": 9},)), ("remove", ("a",)), ("clear", ())],
)
def test_read_only_view_refuses_every_write_and_changes_nothing(method: str, args: tuple[Any, ...]) -> None:
    state: BroadcastState[str, int] = BroadcastState("rules", [("a", 1)])
    view = state.read_only()
    with pytest.raises(StateError, match=rf"broadcast state 'rules' is read-only here: {method}\(\) was called") as info:
        getattr(view, method)(*args)
    assert "Only process_broadcast_element may change broadcast state" in str(info.value)
    assert info.value.state == "rules"
    assert state.items() == [("a", 1)]


def test_store_snapshot_round_trips_non_str_and_tuple_keys_through_the_checkpoint_codec() -> None:
    store = OperatorStateStore()
    state = store.get_broadcast_state(MapStateDescriptor[Any, Any]("mixed"))
    state.put(("web", 3), {"threshold": 3})
    state.put(7, [1, 2])
    snapshot = decode(encode(store.snapshot()))
    assert snapshot["states"]["mixed"]["mode"] == "broadcast"
    restored = restore_operator_state([snapshot], 0, 1)
    assert restored.is_restored
    again = restored.get_broadcast_state(MapStateDescriptor[Any, Any]("mixed"))
    assert again.items() == [(("web", 3), {"threshold": 3}), (7, [1, 2])]


def test_same_descriptor_name_gives_the_same_map() -> None:
    store = OperatorStateStore()
    store.get_broadcast_state(RULES).put("a", 1)
    assert store.get_broadcast_state(MapStateDescriptor[str, int]("rules")).get("a") == 1


def _copies(*maps: dict[str, int]) -> list[dict[str, Any]]:
    """Snapshots of old subtasks whose broadcast state 'rules' held ``maps``."""
    snapshots = []
    for entries in maps:
        store = OperatorStateStore()
        store.get_broadcast_state(RULES).put_all(entries)
        snapshots.append(decode(encode(store.snapshot())))
    return snapshots


def test_scale_up_copies_one_old_subtask_to_every_new_one() -> None:
    old = _copies({"a": 1, "b": 2})
    for subtask in range(3):
        store = restore_operator_state(old, subtask, 3)
        assert store.get_broadcast_state(RULES).items() == [("a", 1), ("b", 2)]


def test_scale_down_takes_old_subtask_i_and_drops_the_rest() -> None:
    # the copies are identical in a real job; distinct here to show which one is taken
    old = _copies({"from": 0}, {"from": 1}, {"from": 2})
    taken = [restore_operator_state(old, subtask, 2).get_broadcast_state(RULES).get("from") for subtask in range(2)]
    assert taken == [0, 1]
    same = [restore_operator_state(old, subtask, 3).get_broadcast_state(RULES).get("from") for subtask in range(3)]
    assert same == [0, 1, 2]  # unchanged parallelism: every subtask keeps its own


def test_redistribute_broadcast_passes_over_old_subtasks_without_the_state() -> None:
    assert redistribute_broadcast([[1], [2]], 0) == [1]
    assert redistribute_broadcast([[1], [2]], 3) == [2]  # 3 % 2
    assert redistribute_broadcast([None, [["k", 1]], None], 2) == [["k", 1]]
    assert redistribute_broadcast([None, None], 0) == []
    assert redistribute_broadcast([], 0) == []
    copies = [[1, 2]]
    mine = redistribute_broadcast(copies, 0)
    mine.append(3)
    assert copies == [[1, 2]]  # a new list: the input is not modified
    with pytest.raises(ConfigError, match="subtask_index >= 0"):
        redistribute_broadcast([[1]], -1)


def test_restore_skips_an_old_subtask_that_had_no_operator_state() -> None:
    old = [{}, *_copies({"a": 1})]
    assert restore_operator_state(old, 0, 4).get_broadcast_state(RULES).items() == [("a", 1)]


def test_restored_broadcast_state_nobody_registers_is_kept_in_snapshots() -> None:
    store = restore_operator_state(_copies({"a": 1}), 0, 2)
    assert store.snapshot()["states"]["rules"] == {"mode": "broadcast", "serializer": "pickle", "items": [("a", 1)]}


def test_a_name_is_either_list_state_or_broadcast_state() -> None:
    store = OperatorStateStore()
    store.get_broadcast_state(MapStateDescriptor("shared"))
    with pytest.raises(StateError, match="'shared' is a broadcast state, cannot use it as a split list state"):
        store.get_list_state(ListStateDescriptor("shared"))
    other = OperatorStateStore()
    other.get_union_list_state(ListStateDescriptor("shared"))
    with pytest.raises(StateError, match="'shared' is a union list state, cannot use it as a broadcast state"):
        other.get_broadcast_state(MapStateDescriptor("shared"))
    restored = restore_operator_state(_copies({"a": 1}), 0, 1)
    with pytest.raises(StateError, match="'rules' is a broadcast state, cannot use it as a union list state"):
        restored.get_union_list_state(ListStateDescriptor("rules"))
    assert restored.get_broadcast_state(RULES).items() == [("a", 1)]  # the refusal lost nothing


def test_broadcast_state_refuses_ttl_and_other_descriptors() -> None:
    store = OperatorStateStore()
    with pytest.raises(StateError, match="cannot have a ttl"):
        store.get_broadcast_state(MapStateDescriptor("m", ttl=StateTtlConfig(ttl=1)))
    with pytest.raises(StateError, match="pass a MapStateDescriptor"):
        store.get_broadcast_state(ListStateDescriptor("l"))  # type: ignore[arg-type]


def test_damaged_items_are_a_state_error() -> None:
    legacy = {"format": 1, "states": {"rules": {"mode": "broadcast", "items": [["only-a-key"]]}}}
    with pytest.raises(StateError, match="not a list of \\[key, value\\] pairs"):
        restore_operator_state([legacy], 0, 1)
    damaged = {"format": 2, "states": {"rules": {"mode": "broadcast", "serializer": "pickle", "items": [("k",)]}}}
    store = restore_operator_state([damaged], 0, 1)
    with pytest.raises(StateError, match="not a list of \\[key, value\\] pairs"):
        store.get_broadcast_state(RULES)
