"""The call order TwoPhaseCommitSinkWriter drives, observed through a recording fake."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamflow.api.connector import SinkContext
from streamflow.errors import StateError
from streamflow.transactions import END_OF_INPUT_CHECKPOINT_ID, TwoPhaseCommitSinkWriter


def ctx(*, restored: list[Any] | None = None, checkpointing: bool = True, subtask: int = 0,
        parallelism: int = 1) -> SinkContext:
    return SinkContext(job_name="job", operator_uid="sink", subtask_index=subtask,
                       parallelism=parallelism, checkpointing=checkpointing, restored_state=restored)


class RecordingWriter(TwoPhaseCommitSinkWriter[str]):
    """Transactions are names like "a1"; handles are {"txn": name}."""

    def __init__(self, context: SinkContext, tag: str = "a") -> None:
        super().__init__(context)
        self.tag = tag
        self.calls: list[tuple[Any, ...]] = []
        self.count = 0
        self.commit_gate: asyncio.Event | None = None

    async def begin(self) -> str:
        self.count += 1
        txn = f"{self.tag}{self.count}"
        self.calls.append(("begin", txn))
        return txn

    async def write_to(self, txn: str, records: list[Any]) -> None:
        self.calls.append(("write", txn, list(records)))

    async def pre_commit(self, txn: str, checkpoint_id: int) -> Any:
        self.calls.append(("pre_commit", txn, checkpoint_id))
        return {"txn": txn}

    async def commit(self, handle: Any) -> None:
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        self.calls.append(("commit", handle["txn"]))

    async def abort(self, txn: str) -> None:
        self.calls.append(("abort", txn))

    async def abort_lingering(self) -> None:
        self.calls.append(("abort_lingering",))


async def opened(context: SinkContext, tag: str = "a") -> RecordingWriter:
    w = RecordingWriter(context, tag)
    await w.open()
    return w


async def test_fresh_open_aborts_lingering_then_begins() -> None:
    w = await opened(ctx())
    assert w.calls == [("abort_lingering",), ("begin", "a1")]


async def test_snapshot_pre_commits_then_begins_next_and_returns_pending() -> None:
    w = await opened(ctx())
    await w.write([1, 2])
    w.calls.clear()
    state = await w.snapshot(1)
    assert w.calls == [("pre_commit", "a1", 1), ("begin", "a2")]
    assert state == [{"checkpoint_id": 1, "subtask": 0, "parallelism": 1, "handle": {"txn": "a1"}}]
    await w.write([3])
    assert w.calls[-1] == ("write", "a2", [3])


async def test_complete_commits_every_prepared_txn_up_to_n_in_order() -> None:
    w = await opened(ctx())
    for n in (1, 2, 3):
        await w.snapshot(n)
    w.calls.clear()
    await w.notify_checkpoint_complete(2)
    assert w.calls == [("commit", "a1"), ("commit", "a2")]
    assert w.pending_handles() == [{"txn": "a3"}]
    await w.notify_checkpoint_complete(3)
    assert w.calls[-1] == ("commit", "a3") and w.pending_handles() == []


async def test_aborted_checkpoint_stays_pending_and_commits_with_the_next() -> None:
    w = await opened(ctx())
    await w.snapshot(1)
    await w.notify_checkpoint_aborted(1)
    assert not [c for c in w.calls if c[0] == "commit"]
    state = await w.snapshot(2)
    assert [e["handle"]["txn"] for e in state] == ["a1", "a2"]  # a restore from 2 commits a1 too
    await w.notify_checkpoint_complete(2)
    assert [c for c in w.calls if c[0] == "commit"] == [("commit", "a1"), ("commit", "a2")]


async def test_restore_commits_restored_handles_in_order_then_aborts_lingering() -> None:
    first = await opened(ctx())
    await first.snapshot(1)
    state = await first.snapshot(2)  # crash: neither checkpoint's commit happened
    second = await opened(ctx(restored=list(reversed(state))), tag="b")
    assert second.calls == [("commit", "a1"), ("commit", "a2"), ("abort_lingering",), ("begin", "b1")]


async def test_rescaled_restore_defers_abort_lingering_to_the_first_completion() -> None:
    # Handles of old subtasks 0 and 1 (parallelism 2) restored into one subtask: another
    # new subtask might still hold handles of ours, so cleaning up now could destroy them.
    state = [
        {"checkpoint_id": 4, "subtask": 1, "parallelism": 2, "handle": {"txn": "old1"}},
        {"checkpoint_id": 4, "subtask": 0, "parallelism": 2, "handle": {"txn": "old0"}},
    ]
    w = await opened(ctx(restored=state))
    assert ("abort_lingering",) not in w.calls
    assert [c for c in w.calls if c[0] == "commit"] == [("commit", "old1"), ("commit", "old0")]
    await w.snapshot(5)
    w.calls.clear()
    await w.notify_checkpoint_complete(5)
    assert w.calls == [("commit", "a1"), ("abort_lingering",)]
    await w.notify_checkpoint_complete(6)
    assert ("abort_lingering",) not in w.calls[2:]


async def test_empty_restored_state_also_defers_abort_lingering() -> None:
    w = await opened(ctx(restored=[], parallelism=3, subtask=2))
    assert w.calls == [("begin", "a1")]


async def test_finish_without_checkpointing_commits_directly() -> None:
    w = await opened(ctx(checkpointing=False))
    await w.write(["x"])
    w.calls.clear()
    await w.finish()
    assert w.calls == [("pre_commit", "a1", END_OF_INPUT_CHECKPOINT_ID), ("commit", "a1")]
    await w.close()
    assert w.calls[-1] == ("commit", "a1")  # nothing left to abort


async def test_finish_with_checkpointing_drops_an_empty_txn() -> None:
    w = await opened(ctx())
    await w.write(["x"])
    await w.snapshot(1)
    await w.notify_checkpoint_complete(1)
    w.calls.clear()
    await w.finish()
    await w.close()
    assert w.calls == [("abort", "a2")]


async def test_finish_with_checkpointing_leaves_records_for_the_final_checkpoint() -> None:
    w = await opened(ctx())
    await w.write(["late"])
    w.calls.clear()
    await w.finish()
    assert w.calls == []  # not aborted: the final checkpoint carries it
    await w.snapshot(7)
    await w.notify_checkpoint_complete(7)
    await w.close()
    assert w.calls == [("pre_commit", "a1", 7), ("commit", "a1")]  # no begin after finish
    with pytest.raises(StateError, match="after finish"):
        await w.write(["too late"])


async def test_close_aborts_the_open_txn_only() -> None:
    w = await opened(ctx())
    await w.write([1])
    await w.snapshot(1)
    w.calls.clear()
    await w.close()
    assert w.calls == [("abort", "a2")]
    assert w.pending_handles() == [{"txn": "a1"}]  # prepared: left for a restore


async def test_commit_is_not_interrupted_by_cancellation() -> None:
    w = await opened(ctx())
    await w.snapshot(1)
    w.commit_gate = asyncio.Event()
    task = asyncio.create_task(w.notify_checkpoint_complete(1))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the commit to finish
    w.commit_gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert w.calls[-1] == ("commit", "a1")


async def test_foreign_restored_state_is_a_clear_error() -> None:
    with pytest.raises(StateError, match="not a two-phase-commit entry"):
        await opened(ctx(restored=[{"split": "x"}]))


async def test_metrics_count_the_writers_own_transactions() -> None:
    restored = [{"checkpoint_id": 1, "subtask": 0, "parallelism": 1, "handle": {"txn": "old"}}]
    w = await opened(ctx(restored=restored))  # recovering "old" is not this writer's commit
    assert w.metrics() == {
        "numTransactionsCommitted": 0, "numTransactionsAborted": 0,
        "numTransactionsOpen": 1, "numTransactionsPrepared": 0,
    }
    await w.write([1])
    await w.snapshot(2)
    await w.write([2])
    await w.snapshot(3)
    assert w.metrics()["numTransactionsPrepared"] == 2
    await w.notify_checkpoint_complete(2)
    assert (w.metrics()["numTransactionsCommitted"], w.metrics()["numTransactionsPrepared"]) == (1, 1)
    await w.close()  # the open one is aborted; the prepared one is left for a restore
    assert w.metrics() == {
        "numTransactionsCommitted": 1, "numTransactionsAborted": 1,
        "numTransactionsOpen": 0, "numTransactionsPrepared": 1,
    }
