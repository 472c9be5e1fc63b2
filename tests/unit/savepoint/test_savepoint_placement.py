"""Restored snapshots at their global places: the existing redistribution then gives every
subtask of every worker exactly what it should get (pure)."""

from __future__ import annotations

from typing import Any

from streamflow.partitioning.workers import WorkerLayout
from streamflow.savepoint.placement import place_own_snapshots, place_planned_snapshots
from streamflow.savepoint.sets import OldSubtask, RestoreNeed, SetLayout, plan_worker_restore
from streamflow.state.operator import redistribute_split


def test_a_worker_restarted_alone_gives_each_subtask_its_own_state_back() -> None:
    workers, local = 3, 2
    for index in range(workers):
        layout = WorkerLayout(workers=workers, index=index)
        own = {"out": [{"sink": [f"w{index}-s{j}-txn"]} for j in range(local)]}
        placed = place_own_snapshots(own, layout=layout, empty=dict)
        assert len(placed["out"]) == workers * local
        lists = [s.get("sink", []) for s in placed["out"]]
        for j in range(local):
            g = layout.global_subtask(j, local)
            assert redistribute_split(lists, workers * local)[g] == [f"w{index}-s{j}-txn"]
        everything = [item for entries in lists for item in entries]
        assert everything == [f"w{index}-s{j}-txn" for j in range(local)]  # only this worker's


def test_a_rescaled_worker_gets_the_planned_snapshots_at_their_old_global_places() -> None:
    old = SetLayout(workers=2, exchange_partitions=8, max_parallelism=128, parallelism={"src": 2}, exchanged=True)
    new = SetLayout(workers=3, exchange_partitions=8, max_parallelism=128, parallelism={"src": 1}, exchanged=True)
    splits = {(w, j): [f"split-{w}{j}-a", f"split-{w}{j}-b"] for w in range(2) for j in range(2)}
    handed_out: list[Any] = []
    for worker in range(3):
        plan = plan_worker_restore(old, new, worker, {"src": RestoreNeed.ALL})
        read = {("src", s): {"source": splits[(s.worker, s.local)]} for s in plan.operators["src"].reads}
        placed = place_planned_snapshots(plan, read, empty=dict)
        lists = [s.get("source", []) for s in placed["src"]]
        assert lists == [splits[(0, 0)], splits[(0, 1)], splits[(1, 0)], splits[(1, 1)]]
        handed_out += redistribute_split(lists, 3)[worker]  # the new worker's one subtask: global index w
    assert sorted(handed_out) == sorted(s for entries in splits.values() for s in entries)


def test_snapshots_a_plan_leaves_out_stay_empty() -> None:
    old = SetLayout(workers=2, exchange_partitions=8, max_parallelism=128, parallelism={"count": 2}, exchanged=True)
    new = SetLayout(workers=4, exchange_partitions=8, max_parallelism=128, parallelism={"count": 1}, exchanged=True)
    plan = plan_worker_restore(old, new, 0, {"count": RestoreNeed.KEYED})
    assert plan.operators["count"].reads == (OldSubtask(0, 0, 0),)
    placed = place_planned_snapshots(plan, {("count", OldSubtask(0, 0, 0)): {"keyed": "key groups 0..31"}}, empty=dict)
    assert placed["count"] == [{"keyed": "key groups 0..31"}, {}, {}, {}]
