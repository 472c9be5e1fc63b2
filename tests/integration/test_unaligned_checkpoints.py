"""Unaligned checkpoints in whole jobs, in process, under backpressure: a fast source
feeding a slow keyed stage through small channels, so that barriers always find records
queued ahead of them.

Exactly-once across crashes is proved by the crash suite (tests/crash/test_crash_unaligned.py);
here: the checkpoints are unaligned and say so in their metadata, savepoints stay
aligned, and a rescale from a checkpoint that holds records in flight is refused with
the way out.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamflow import JobFailedError, KeyedProcessFunction, RestartStrategy, StateError, StreamEnvironment
from streamflow.checkpoint.serde import decode
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.connectors.debug import CollectSink
from streamflow.core.faults import FaultInjector
from streamflow.savepoint.location import locate_snapshot
from streamflow.state import ValueStateDescriptor

RECORDS = 6_000
KEYS = 20


class SlowCount(KeyedProcessFunction):
    """Counts per key; sleeps a little every 20 records of a subtask: the slow stage."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))
        self.seen = 0

    async def process_element(self, value: int, ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        self.seen += 1
        if self.seen % 20 == 0:
            await asyncio.sleep(0.005)
        out.collect((value % KEYS, n))


def job(
    checkpoints: Path, sink: str, parallelism: int, faults: FaultInjector | None = None, *, stateless_head: bool = False,
    retained: int = 2,
) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(0.1, directory=checkpoints, unaligned=True, retained=retained)
    env.set_restart_strategy(RestartStrategy.none())
    env.set_channel_capacity(4)
    env.set_source_batch_size(20)
    if faults is not None:
        env.set_fault_injector(faults)
    keyed = env.from_collection(list(range(RECORDS))).uid("numbers").key_by(lambda v: v % KEYS)
    if stateless_head:  # the channel state goes with a map that has no state of its own
        keyed = keyed.map(lambda v: v).uid("route").key_by(lambda v: v % KEYS)
    keyed.process(SlowCount()).uid("count").sink_to(CollectSink(sink)).uid("sink")
    return env


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Any:
    name = f"unaligned::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


async def fail_after_checkpoint_3(tmp_path: Path, sink: str, *, stateless_head: bool = False) -> Any:
    """Run the job at parallelism 2 until checkpoint 3 completed, then fail; its metadata."""
    faults = FaultInjector()
    faults.arm("after_completion", 3, action="raise")
    with pytest.raises(JobFailedError, match="injected failure at after_completion"):
        await job(tmp_path / "chk", sink, 2, faults, stateless_head=stateless_head).execute("unaligned")
    return await CheckpointStorage(tmp_path / "chk").read_metadata(3)


def persisted_per_handle(metadata: Any) -> dict[tuple[str, int], int]:
    return {(uid, s): h.persisted_bytes for uid, s, h in metadata.handles() if h.unaligned}


async def test_unaligned_checkpoints_persist_records_in_flight_and_say_so(tmp_path: Path, sink: str) -> None:
    # every checkpoint retained: the last ones of a bounded job, taken as it drains, may
    # hold nothing in flight
    result = await job(tmp_path / "chk", sink, 2, retained=10_000).execute("unaligned")
    assert Counter(CollectSink.results(sink)) == Counter((k, n) for k in range(KEYS) for n in range(1, RECORDS // KEYS + 1))
    history = [h for h in result.metrics["checkpoints"]["history"] if h["status"] == "completed"]
    unaligned = [h for h in history if any(s["unaligned"] and s["persisted_bytes"] for s in h["subtasks"].values())]
    assert len(unaligned) >= 2, history
    # their metadata: version 3, the count subtasks marked with their bytes
    storage = CheckpointStorage(tmp_path / "chk")
    for stats in unaligned:
        metadata = await storage.read_metadata(stats["id"])
        persisted = persisted_per_handle(metadata)
        assert metadata.format_version == 3 and any(persisted.values()), (stats, persisted)
        assert {uid for uid, _ in persisted} == {"count"}, persisted
        assert all(uid == "count" for uid, _, h in metadata.handles() if h.unaligned)


async def test_a_savepoint_of_an_unaligned_job_is_aligned(tmp_path: Path, sink: str) -> None:
    client = job(tmp_path / "chk", sink, 2).execute_async("unaligned")
    await asyncio.sleep(0.3)  # backpressure builds up
    path = await client.trigger_savepoint(tmp_path / "savepoints")
    await client.wait()
    snapshot = await locate_snapshot(path)
    metadata = snapshot.completed.metadata
    assert metadata.format_version == 1 and not persisted_per_handle(metadata)
    for uid, subtask, handle in metadata.handles():
        stored = decode(await snapshot.storage.read_state(snapshot.completed.checkpoint_id, handle))
        assert "channel_state" not in stored, (uid, subtask)


async def test_rescaling_from_a_checkpoint_with_records_in_flight_is_refused_with_the_way_out(
    tmp_path: Path, sink: str
) -> None:
    metadata = await fail_after_checkpoint_3(tmp_path, sink)
    assert any(persisted_per_handle(metadata).values()), "checkpoint 3 held nothing in flight: no backpressure?"
    with pytest.raises(JobFailedError) as failed:
        await job(tmp_path / "chk", sink, 3).execute("unaligned")
    cause = failed.value.__cause__
    assert isinstance(cause, StateError), repr(cause)
    message = str(cause)
    assert "'count' was checkpointed unaligned at parallelism 2" in message
    assert "this job gives it parallelism 3" in message and "take a savepoint" in message
    # at the old parallelism it restores and finishes
    CollectSink.clear(sink)
    result = await job(tmp_path / "chk", sink, 2).execute("unaligned")
    assert result.restored_from == 3


async def test_a_first_operator_without_state_carries_the_channel_state_across_a_restore(
    tmp_path: Path, sink: str
) -> None:
    metadata = await fail_after_checkpoint_3(tmp_path, sink, stateless_head=True)
    assert any(v for (uid, _), v in persisted_per_handle(metadata).items() if uid == "route"), metadata
    before = Counter(CollectSink.results(sink))
    result = await job(tmp_path / "chk", sink, 2, stateless_head=True).execute("unaligned")
    assert result.restored_from == 3
    assert sum(t["restored_in_flight"] for t in result.metrics["tasks"].values()) > 0
    # CollectSink is at-least-once: every (key, count) is there, and the last count of each key is the total
    seen = before + Counter(CollectSink.results(sink))
    assert set(seen) == {(k, n) for k in range(KEYS) for n in range(1, RECORDS // KEYS + 1)}
