"""Savepoint sets: the manifest, and what each new worker restores from a set (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamflow import StreamEnvironment
from streamflow.api.exchange import ExchangeKind
from streamflow.connectors import CollectSink
from streamflow.errors import ConfigError, StateError
from streamflow.partitioning.workers import WorkerLayout
from streamflow.savepoint.sets import (
    SET_MANIFEST_FILE,
    OldSubtask,
    RestoreNeed,
    SavepointSetManifest,
    SetLayout,
    plan_worker_restore,
    read_set_manifest,
    restore_needs,
    set_directory_name,
    write_set_manifest,
)
from streamflow.state import MapStateDescriptor
from streamflow.workers.rewrite import exchange_specs, rewrite_for_workers

from workers_kit import FakeExchanges, Match

RULES = MapStateDescriptor[str, int]("rules")


def set_manifest(workers: int = 2) -> SavepointSetManifest:
    return SavepointSetManifest(
        job_name="orders", workers=workers, exchange_partitions=8, max_parallelism=128, fingerprint="f" * 64,
        generation="abc", savepoints=tuple(f"worker-{i}/savepoint-orders-{i + 3}-aa" for i in range(workers)),
        parallelism={"count": 2, "src": 2}, exchanged=workers > 1,
    )


def test_a_set_is_complete_once_its_manifest_is_written(tmp_path: Path) -> None:
    written = set_manifest()
    assert read_set_manifest(tmp_path) is None
    with pytest.raises(StateError, match="worker savepoint 'worker-0/savepoint-orders-3-aa' is missing"):
        write_set_manifest(tmp_path, written)
    for entry in written.savepoints:
        (tmp_path / entry).mkdir(parents=True)
    write_set_manifest(tmp_path, written)
    assert read_set_manifest(tmp_path) == written
    assert sorted(p.name for p in tmp_path.iterdir()) == [SET_MANIFEST_FILE, "worker-0", "worker-1"]
    assert set_directory_name("my job").startswith("savepoint-set-my_job-")


def test_a_set_of_another_format_or_shape_is_refused(tmp_path: Path) -> None:
    (tmp_path / SET_MANIFEST_FILE).write_text('{"format_version": 2}')
    with pytest.raises(StateError, match="format_version 2"):
        read_set_manifest(tmp_path)
    with pytest.raises(ConfigError, match="needs 3 savepoints"):
        SavepointSetManifest(job_name="j", workers=3, exchange_partitions=8, max_parallelism=128, fingerprint="f",
                             generation="g", savepoints=("a", "b"), parallelism={}, exchanged=True)
    with pytest.raises(ConfigError, match="paths inside the set"):
        SavepointSetManifest(job_name="j", workers=1, exchange_partitions=8, max_parallelism=128, fingerprint="f",
                             generation="g", savepoints=("../elsewhere",), parallelism={}, exchanged=False)


def layout(workers: int, local: int, *, exchanged: bool | None = None, partitions: int = 8,
           max_parallelism: int = 128) -> SetLayout:
    return SetLayout(
        workers=workers, exchange_partitions=partitions, max_parallelism=max_parallelism,
        parallelism={"count": local, "src": local, "rules": 1, "match": local},
        exchanged=workers > 1 if exchanged is None else exchanged,
    )


@pytest.mark.parametrize(
    "old, new",
    [
        (layout(2, 2), layout(3, 1)),
        (layout(3, 1), layout(2, 3)),
        (layout(1, 4), layout(3, 2)),  # a one-process savepoint (Flink's ranges) into workers
        (layout(3, 2), layout(1, 2, exchanged=True)),  # down to one worker that keeps the exchanges
        (layout(2, 2, partitions=5, max_parallelism=7), layout(5, 1, partitions=5, max_parallelism=7)),
    ],
)
def test_keyed_state_comes_from_exactly_the_old_subtasks_holding_the_workers_key_groups(
    old: SetLayout, new: SetLayout
) -> None:
    everyone_read: set[int] = set()
    for worker in range(new.workers):
        plan = plan_worker_restore(old, new, worker, {"count": RestoreNeed.KEYED})
        reads = plan.operators["count"].reads
        held = {kg for s in reads for kg in old.key_groups("count", s.global_index)}
        wanted = set(new.worker_key_groups("count", worker))
        assert wanted <= held  # nothing missing
        for s in reads:  # nothing read in vain
            assert set(old.key_groups("count", s.global_index)) & wanted
        assert plan.operators["count"].old_parallelism == old.workers * old.parallelism["count"]
        everyone_read |= {s.global_index for s in reads}
    assert everyone_read == {g for g in range(old.workers * old.parallelism["count"])
                             if old.key_groups("count", g)}


def test_split_state_is_read_whole_and_broadcast_state_from_one_old_worker() -> None:
    old, new = layout(2, 2), layout(3, 1)
    needs = {
        "src": RestoreNeed.ALL,
        "match": RestoreNeed.BROADCAST_STATE,
        "rules": RestoreNeed.BROADCAST_READER,
        "new-operator": RestoreNeed.ALL,
    }
    plan = plan_worker_restore(old, new, 2, needs)
    assert "new-operator" not in plan.operators  # no state in the set: starts fresh
    assert plan.operators["src"].reads == (
        OldSubtask(0, 0, 0), OldSubtask(0, 1, 1), OldSubtask(1, 0, 2), OldSubtask(1, 1, 3),
    )
    assert plan.operators["src"].broadcast_from_worker is None
    assert plan.operators["match"].broadcast_from_worker == 0 and len(plan.operators["match"].reads) == 4
    assert plan.operators["rules"].reads == (OldSubtask(0, 0, 0),)  # new worker 2 % 2 old workers
    assert plan.operators["rules"].broadcast_from_worker == 0
    assert plan_worker_restore(old, new, 1, needs).operators["rules"].reads == (OldSubtask(1, 0, 1),)
    assert plan.files == 4 + 4 + 1


@pytest.mark.parametrize(
    "old, new, message",
    [
        (layout(2, 1), layout(2, 1, max_parallelism=256), "--max-parallelism 128"),
        (layout(2, 1), layout(2, 1, partitions=16), "8 partitions, fixed for the job's life"),
        (layout(2, 1), layout(9, 1), "at most 8 workers"),
        (layout(2, 1), layout(1, 1), "start the job as workers from it"),
    ],
)
def test_a_set_the_new_workers_cannot_take_is_refused(old: SetLayout, new: SetLayout, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_worker_restore(old, new, 0, {"count": RestoreNeed.KEYED})


def test_restore_needs_follow_what_each_operator_keeps() -> None:
    env = StreamEnvironment(parallelism=2)
    rules = env.from_collection([("web", 1)]).uid("rules").set_parallelism(1).broadcast(RULES)
    keyed = env.from_collection([("u", "web")]).uid("actions").key_by(lambda a: a[0])
    keyed.connect(rules).process(Match()).uid("match").sink_to(CollectSink("needs")).uid("out")
    keyed.reduce(lambda a, b: a).uid("latest").map(str).uid("fmt").sink_to(CollectSink("needs2")).uid("out2")
    layout_ = WorkerLayout(workers=2, index=0)
    arguments: dict[str, Any] = dict(layout=layout_, job_name="j", default_parallelism=2, max_parallelism=128,
                                     generation="g")
    graph = rewrite_for_workers(env.job_graph(), exchanges=FakeExchanges(), **arguments)
    specs = exchange_specs(env.job_graph(), partitions=8, **arguments)
    broadcast_readers = {s.reader_uid for s in specs if s.kind is ExchangeKind.BROADCAST}
    needs = restore_needs(graph, broadcast_readers)
    assert needs["latest"] is RestoreNeed.KEYED
    assert needs["match"] is RestoreNeed.BROADCAST_STATE
    assert needs["rules->match.1.exchange-reader"] is RestoreNeed.BROADCAST_READER
    assert needs["actions->match.0.exchange-reader"] is RestoreNeed.ALL
    assert needs["actions->latest.0.exchange-writer"] is RestoreNeed.ALL
    assert needs["rules"] is RestoreNeed.ALL and "fmt" not in needs
