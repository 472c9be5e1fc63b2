"""The transactional id pool of the exactly-once Kafka sink, as pure bookkeeping."""

from __future__ import annotations

import pytest

from streamflow.connectors.kafka.txn_ids import (
    IdState,
    TransactionalIdPool,
    TransactionalIdPoolExhaustedError,
    transactional_id,
)


def pool(size: int = 4) -> TransactionalIdPool:
    return TransactionalIdPool([transactional_id("job", "out", 0, 1, k) for k in range(size)])


def test_ids_name_prefix_uid_subtask_parallelism_and_slot() -> None:
    assert transactional_id("job", "out", 2, 4, 1) == "job-out-2of4-1"
    # After a rescale the new subtasks' ids never equal an old subtask's.
    old = {transactional_id("j", "u", s, 2, k) for s in range(2) for k in range(3)}
    new = {transactional_id("j", "u", s, 3, k) for s in range(3) for k in range(3)}
    assert not old & new


def test_acquire_hands_out_the_lowest_free_id() -> None:
    p = pool()
    assert [p.acquire(), p.acquire()] == ["job-out-0of1-0", "job-out-0of1-1"]
    p.release("job-out-0of1-0")
    assert p.acquire() == "job-out-0of1-0"


def test_a_committed_id_is_reused_only_after_a_later_checkpoint_completes() -> None:
    p = pool()
    a = p.acquire()
    p.snapshot_taken(1)  # barrier 1: a's transaction is prepared, its handle in snapshot 1
    b = p.acquire()  # the next transaction
    p.retire(a)  # checkpoint 1 completed and a is committed
    assert p.state(a) is IdState.RETIRING
    assert p.checkpoint_completed(1) == []  # checkpoint 1 lists a: a restore may commit it again
    p.snapshot_taken(2)  # snapshot 2 no longer lists a ...
    c = p.acquire()
    assert c not in (a, b)
    assert p.checkpoint_completed(2) == [a]  # ... so once 2 completes, a is free again
    assert p.acquire() == a


def test_commit_after_a_later_barrier_waits_for_the_checkpoint_after_that() -> None:
    # Barrier 2 passes before checkpoint 1 completes: snapshot 2 still lists a.
    p = pool()
    a = p.acquire()
    p.snapshot_taken(1)
    p.acquire()
    p.snapshot_taken(2)
    p.retire(a)
    assert p.checkpoint_completed(2) == []
    assert p.checkpoint_completed(3) == [a]


def test_restored_ids_are_held_until_a_checkpoint_of_the_new_attempt_completes() -> None:
    p = pool(3)
    held = ["job-out-0of1-1", "not-of-this-pool"]
    p.hold(held, 7)
    assert p.state("job-out-0of1-1") is IdState.RETIRING
    assert [p.acquire(), p.acquire()] == ["job-out-0of1-0", "job-out-0of1-2"]
    assert p.checkpoint_completed(7) == []
    assert p.checkpoint_completed(8) == ["job-out-0of1-1"]


def test_exhaustion_names_the_pool_size_setting() -> None:
    p = pool(3)
    for _ in range(3):
        p.acquire()
    with pytest.raises(TransactionalIdPoolExhaustedError, match=r"transactional_id_pool_size \(now 3\)") as info:
        p.acquire()
    assert info.value.retriable  # a restart commits the pending ones and frees their ids
    assert "in use" in str(info.value)


def test_illegal_moves_are_reported() -> None:
    p = pool()
    with pytest.raises(ValueError, match="is free, cannot move it to retiring"):
        p.retire("job-out-0of1-0")
    with pytest.raises(KeyError):
        p.release("someone-else")
    with pytest.raises(ValueError, match="distinct ids"):
        TransactionalIdPool(["a", "a"])


def test_a_steady_job_cycles_through_three_ids() -> None:
    # Runtime order: barrier n, records of n+1, completion of n, barrier n+1, ...
    p = pool(8)
    used: set[str] = set()
    current = p.acquire()
    prepared: str | None = None
    for n in range(1, 50):
        p.snapshot_taken(n)
        prepared, current = current, p.acquire()
        used |= {prepared, current}
        p.retire(prepared)
        p.checkpoint_completed(n)
    assert len(used) == 3


def test_id_layout_reads_back_the_pooled_ids_of_this_sink_only() -> None:
    from streamflow.connectors.kafka.txn_ids import id_layout

    assert id_layout(transactional_id("job.x", "out", 2, 3, 7), "job.x", "out") == (2, 3, 7)
    assert id_layout("job.x-out-2of3-7", "job_x", "out") is None  # the prefix is matched literally
    assert id_layout("job.x-out-2-0of1-0", "job.x", "out") is None  # sink uid "out-2", not "out"
    assert id_layout("job.x-out-2of3-7-extra", "job.x", "out") is None
