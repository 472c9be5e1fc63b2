"""Operator list state: split and union redistribution on restore."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow.checkpoint import serde
from streamflow.errors import ConfigError, StateError
from streamflow.state import (
    ListStateDescriptor,
    OperatorListState,
    OperatorStateMode,
    OperatorStateStore,
    StateTtlConfig,
    ValueStateDescriptor,
    redistribute_split,
    restore_operator_state,
)

SPLITS = ListStateDescriptor[str]("splits")
PENDING = ListStateDescriptor[str]("pending")


def old_snapshots(
    per_subtask: list[list[str]], descriptor: ListStateDescriptor[str] = SPLITS, union: bool = False
) -> list[dict[str, Any]]:
    """What ``len(per_subtask)`` old subtasks snapshotted, through checkpoint bytes."""
    snapshots = []
    for items in per_subtask:
        store = OperatorStateStore()
        state = store.get_union_list_state(descriptor) if union else store.get_list_state(descriptor)
        state.add_all(items)
        snapshots.append(serde.decode(serde.encode(store.snapshot())))
    return snapshots


def test_fresh_store_list_operations_and_snapshot() -> None:
    store = OperatorStateStore()
    assert store.is_restored is False
    state = store.get_list_state(SPLITS)
    assert isinstance(state, OperatorListState)
    assert state.mode is OperatorStateMode.SPLIT
    assert state.get() == []
    state.add("a")
    state.add_all(["b", "c"])
    copy = state.get()
    copy.append("zzz")
    assert state.get() == ["a", "b", "c"]
    union = store.get_union_list_state(PENDING)
    union.update(["t1"])
    assert store.snapshot() == {
        "format": 2,
        "states": {
            "splits": {"mode": "split", "serializer": "pickle", "items": ["a", "b", "c"]},
            "pending": {"mode": "union", "serializer": "pickle", "items": ["t1"]},
        },
    }
    state.update(["x"])
    assert state.get() == ["x"]
    state.clear()
    assert state.get() == []
    assert store.get_list_state(SPLITS) is state


def test_snapshot_is_a_copy() -> None:
    store = OperatorStateStore()
    state = store.get_list_state(SPLITS)
    state.add("a")
    snapshot = store.snapshot()
    state.add("b")
    assert snapshot["states"]["splits"]["items"] == ["a"]


def test_same_parallelism_restore_gives_each_subtask_its_own_items() -> None:
    snapshots = old_snapshots([["a0", "a1", "a2"], ["b0"]])
    for subtask, expected in enumerate([["a0", "a1", "a2"], ["b0"]]):
        store = restore_operator_state(snapshots, subtask, 2)
        assert store.is_restored is True
        assert store.get_list_state(SPLITS).get() == expected


def test_rescale_two_to_three_splits_evenly_round_robin() -> None:
    snapshots = old_snapshots([["a0", "a1", "a2"], ["b0", "b1"]])
    got = [OperatorStateStore.restore(snapshots, subtask, 3).get_list_state(SPLITS).get() for subtask in range(3)]
    assert got == [["a0", "b0"], ["a1", "b1"], ["a2"]]


def test_rescale_three_to_two() -> None:
    snapshots = old_snapshots([["a0"], ["b0", "b1"], ["c0", "c1"]])
    got = [restore_operator_state(snapshots, subtask, 2).get_list_state(SPLITS).get() for subtask in range(2)]
    assert got == [["a0", "b1", "c1"], ["b0", "c0"]]


def test_union_list_state_gives_every_subtask_everything() -> None:
    snapshots = old_snapshots([["a0", "a1"], ["b0"]], PENDING, union=True)
    for parallelism in (1, 2, 3):
        for subtask in range(parallelism):
            store = restore_operator_state(snapshots, subtask, parallelism)
            assert store.get_union_list_state(PENDING).get() == ["a0", "a1", "b0"]


def test_restored_lists_that_are_not_registered_are_kept() -> None:
    snapshots = old_snapshots([["a0"], ["b0"]])
    store = restore_operator_state(snapshots, 0, 1)
    assert store.snapshot() == {
        "format": 2,
        "states": {"splits": {"mode": "split", "serializer": "pickle", "items": ["a0", "b0"]}},
    }


def test_a_subtask_without_the_state_counts_as_empty() -> None:
    for empty in ({"format": 1, "states": {}}, {}):
        snapshots = old_snapshots([["a0", "a1"]]) + [empty]
        got = [restore_operator_state(snapshots, subtask, 2).get_list_state(SPLITS).get() for subtask in range(2)]
        assert got == [["a0", "a1"], []]
    merged = restore_operator_state([{}, *old_snapshots([["b0", "b1"]])], 0, 1)
    assert merged.get_list_state(SPLITS).get() == ["b0", "b1"]


def test_mode_is_fixed_per_name() -> None:
    store = OperatorStateStore()
    store.get_list_state(SPLITS)
    with pytest.raises(StateError, match="operator state 'splits' is a split list state, cannot use it as a union"):
        store.get_union_list_state(SPLITS)
    restored = restore_operator_state(old_snapshots([["a"]], PENDING, union=True), 0, 1)
    with pytest.raises(StateError, match="'pending' is a union list state"):
        restored.get_list_state(PENDING)


def test_operator_state_refuses_ttl_and_other_descriptors() -> None:
    store = OperatorStateStore()
    with pytest.raises(StateError, match="cannot have a ttl"):
        store.get_list_state(ListStateDescriptor("l", ttl=StateTtlConfig(ttl=1)))
    with pytest.raises(StateError, match="pass a ListStateDescriptor"):
        store.get_list_state(ValueStateDescriptor("v"))  # type: ignore[arg-type]


def test_restore_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="subtask_index must be in range"):
        restore_operator_state([], 3, 3)
    with pytest.raises(StateError, match="has format None"):
        restore_operator_state([{"states": {}}], 0, 1)
    split = old_snapshots([["a"]])[0]
    union = old_snapshots([["b"]], union=True)[0]
    with pytest.raises(StateError, match="old subtasks disagree on operator state 'splits': mode split with serializer 'pickle' and mode union"):
        restore_operator_state([split, union], 0, 1)
    with pytest.raises(StateError, match="unknown mode 'sideways'"):
        restore_operator_state([{"format": 1, "states": {"x": {"mode": "sideways", "items": []}}}], 0, 1)


def test_redistribute_split() -> None:
    old = [["a0", "a1"], ["b0"]]
    same = redistribute_split(old, 2)
    assert same == [["a0", "a1"], ["b0"]]
    same[0].append("mutated")
    assert old == [["a0", "a1"], ["b0"]]  # input untouched, output is new lists
    assert redistribute_split(old, 3) == [["a0"], ["a1"], ["b0"]]
    assert redistribute_split(old, 1) == [["a0", "a1", "b0"]]
    assert redistribute_split([[1, 2, 3, 4, 5], [6, 7]], 3) == [[1, 4, 7], [2, 5], [3, 6]]
    assert redistribute_split([], 2) == [[], []]
    assert redistribute_split([[]], 4) == [[], [], [], []]
    with pytest.raises(ConfigError, match="parallelism >= 1"):
        redistribute_split(old, 0)
