"""Restoring at another parallelism, 1 -> 3 -> 2, for every kind of state, without a job:
snapshots go through the checkpoint codec exactly as the runtime stores them."""

from __future__ import annotations

from typing import Any

from streamflow.checkpoint.serde import decode, encode
from streamflow.core.clock import ManualClock
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.runtime.timers import TimerQueue
from streamflow.state import (
    HeapKeyedStateBackend,
    ListStateDescriptor,
    MapStateDescriptor,
    OperatorStateStore,
    ValueStateDescriptor,
    restore_operator_state,
)

MAX_PARALLELISM = 16
SPLIT = ListStateDescriptor[int]("split")
UNION = ListStateDescriptor[int]("union")
RULES = MapStateDescriptor[str, int]("rules")
COUNT = ValueStateDescriptor("count", default=0)
KEYS = [f"user-{i}" for i in range(60)]


def rescale_operator_state(old: list[dict[str, Any]], parallelism: int) -> list[OperatorStateStore]:
    """The stores of ``parallelism`` new subtasks restored from the old snapshots."""
    stored = [decode(encode(s)) for s in old]
    return [restore_operator_state(stored, i, parallelism) for i in range(parallelism)]


def test_split_list_state_is_dealt_round_robin_1_to_3_to_2() -> None:
    first = OperatorStateStore()
    first.get_list_state(SPLIT).add_all(range(10))
    three = rescale_operator_state([first.snapshot()], 3)
    assert [s.get_list_state(SPLIT).get() for s in three] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    three[1].get_list_state(SPLIT).add(10)  # the new subtasks go on adding
    two = rescale_operator_state([s.snapshot() for s in three], 2)
    # concatenated in old-subtask order [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8], dealt i % 2
    assert [s.get_list_state(SPLIT).get() for s in two] == [[0, 6, 1, 7, 2, 8], [3, 9, 4, 10, 5]]
    assert all(s.is_restored for s in three + two)


def test_union_list_state_goes_whole_to_every_subtask_1_to_3_to_2() -> None:
    first = OperatorStateStore()
    first.get_union_list_state(UNION).add_all([1, 2])
    three = rescale_operator_state([first.snapshot()], 3)
    assert [s.get_union_list_state(UNION).get() for s in three] == [[1, 2]] * 3
    for index, store in enumerate(three):  # each keeps only its own part, as a source would
        store.get_union_list_state(UNION).update([x for x in [1, 2] if x % 3 == index] + [10 + index])
    two = rescale_operator_state([s.snapshot() for s in three], 2)
    assert [s.get_union_list_state(UNION).get() for s in two] == [[10, 1, 11, 2, 12]] * 2


def test_broadcast_state_is_copied_1_to_3_and_one_copy_per_subtask_3_to_2() -> None:
    first = OperatorStateStore()
    first.get_broadcast_state(RULES).put_all({"web": 3, "app": 5})
    three = rescale_operator_state([first.snapshot()], 3)
    assert [s.get_broadcast_state(RULES).items() for s in three] == [[("web", 3), ("app", 5)]] * 3
    for store in three:  # every subtask applies the same broadcast update
        store.get_broadcast_state(RULES).put("mail", 7)
    two = rescale_operator_state([s.snapshot() for s in three], 2)
    assert [s.get_broadcast_state(RULES).items() for s in two] == [[("web", 3), ("app", 5), ("mail", 7)]] * 2


def test_all_modes_side_by_side_in_one_store() -> None:
    first = OperatorStateStore()
    first.get_list_state(SPLIT).add_all([1, 2, 3])
    first.get_union_list_state(UNION).add(9)
    first.get_broadcast_state(RULES).put("web", 1)
    three = rescale_operator_state([first.snapshot()], 3)
    assert [s.get_list_state(SPLIT).get() for s in three] == [[1], [2], [3]]
    assert [s.get_union_list_state(UNION).get() for s in three] == [[9]] * 3
    assert [s.get_broadcast_state(RULES).get("web") for s in three] == [1] * 3


# -- keyed state and timers ------------------------------------------------------------------


def backends(parallelism: int) -> list[HeapKeyedStateBackend]:
    return [
        HeapKeyedStateBackend(
            operator_uid="count",
            subtask_index=i,
            max_parallelism=MAX_PARALLELISM,
            key_group_range=key_group_range(MAX_PARALLELISM, parallelism, i),
            clock=ManualClock(),
        )
        for i in range(parallelism)
    ]


def restore_keyed(old: list[HeapKeyedStateBackend], parallelism: int) -> list[HeapKeyedStateBackend]:
    snapshots = [decode(encode(b.snapshot())) for b in old]
    new = backends(parallelism)
    for backend in new:
        backend.restore(snapshots)
    return new


def values(backend: HeapKeyedStateBackend) -> dict[str, int]:
    state = backend.get_state(COUNT)
    out = {}
    for key, key_group in backend.keys("count"):
        backend.set_current_key(key, key_group)
        out[key] = state.value()
    return out


def test_keyed_state_moves_by_whole_key_groups_1_to_3_to_2() -> None:
    (single,) = backends(1)
    count = single.get_state(COUNT)
    for n, key in enumerate(KEYS):
        single.set_current_key(key, key_group_for(key, MAX_PARALLELISM))
        count.update(n)
    expected = {key: n for n, key in enumerate(KEYS)}

    three = restore_keyed([single], 3)
    for backend in three:
        held = values(backend)
        assert all(key_group_for(key, MAX_PARALLELISM) in backend.key_group_range for key in held)
    assert {k: v for b in three for k, v in values(b).items()} == expected
    assert sum(len(values(b)) for b in three) == len(KEYS)  # no key on two subtasks

    for backend in three:  # the new subtasks go on counting
        state = backend.get_state(COUNT)
        for key, key_group in list(backend.keys("count")):
            backend.set_current_key(key, key_group)
            state.update(state.value() + 100)
    two = restore_keyed(three, 2)
    assert {k: v for b in two for k, v in values(b).items()} == {key: n + 100 for key, n in expected.items()}
    assert sum(len(values(b)) for b in two) == len(KEYS)


def test_timers_follow_their_key_groups_1_to_3_to_2() -> None:
    single = TimerQueue()
    for n, key in enumerate(KEYS):
        single.register(float(n), key, key_group_for(key, MAX_PARALLELISM))
    entries = decode(encode(single.snapshot()))

    def restored(snapshots: list[Any], parallelism: int) -> list[TimerQueue]:
        queues = [TimerQueue() for _ in range(parallelism)]
        for index, queue in enumerate(queues):
            for old in snapshots:
                queue.restore(old, key_group_range(MAX_PARALLELISM, parallelism, index), MAX_PARALLELISM)
        return queues

    three = restored([entries], 3)
    two = restored([decode(encode(q.snapshot())) for q in three], 2)
    for queues, parallelism in ((three, 3), (two, 2)):
        fired = [q.pop_due(float("inf")) for q in queues]
        assert sorted(key for due in fired for _, _, key in due) == sorted(KEYS)  # each timer once
        for index, due in enumerate(fired):
            owned = key_group_range(MAX_PARALLELISM, parallelism, index)
            assert all(key_group in owned for _, key_group, _ in due)
