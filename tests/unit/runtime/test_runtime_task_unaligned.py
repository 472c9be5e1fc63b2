"""A Task with two input channels and unaligned checkpoints, fed by hand: the barrier
overtakes what is queued, and what it overtook is the checkpoint's channel state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamflow.checkpoint.serde import decode, encode
from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.config import CheckpointingMode
from streamflow.core.clock import ManualClock
from streamflow.core.elements import END_OF_INPUT, Barrier, Batch, Watermark
from streamflow.core.ids import CheckpointId
from streamflow.errors import StateError
from streamflow.runtime.channel import Channel
from streamflow.runtime.channel_state import restore_channel_state
from streamflow.runtime.mailbox import FINISH, CheckpointAborted
from streamflow.runtime.task import Task

from test_runtime_task_alignment import FakeCoordinator, drain
from test_runtime_task_alignment import make_task as make_aligned_task


class StoringCoordinator(FakeCoordinator):
    def __init__(self) -> None:
        super().__init__()
        self.handles: list[Any] = []

    def acknowledge(self, checkpoint_id: int, task: Any, handle: Any) -> None:
        super().acknowledge(checkpoint_id, task, handle)
        self.handles.append(handle)


def make_task(
    tmp_path: Path, *, aligned_timeout: float | None = None, clock: ManualClock | None = None
) -> tuple[Task, list[Channel], Channel, list[Any], StoringCoordinator, CheckpointStorage]:
    storage = CheckpointStorage(tmp_path / "checkpoints")
    task, inputs, output, events, coordinator = make_aligned_task(
        CheckpointingMode.EXACTLY_ONCE,
        inputs=[Channel("up[0] -> rec[0]", 2), Channel("up[1] -> rec[0]", 2)],
        output=Channel("rec[0] -> down[0]", 2),
        coordinator=StoringCoordinator(),
        storage=storage,
        clock=clock or ManualClock(),
        unaligned=True,
        aligned_timeout=aligned_timeout,
    )
    assert isinstance(coordinator, StoringCoordinator)
    return task, inputs, output, events, coordinator, storage


def barrier(n: int, *, savepoint: bool = False) -> Barrier:
    return Barrier(CheckpointId(n), 0.0, is_savepoint=savepoint)


async def read_until(predicate: Any, output: Channel) -> list[Any]:
    """Drain ``output`` (capacity 2: the task blocks on it) until ``predicate(seen)``."""
    seen: list[Any] = []
    async with asyncio.timeout(2.0):
        while not predicate(seen):
            seen.extend(drain(output))
            await asyncio.sleep(0.001)
    return seen


async def stored_channel_state(storage: CheckpointStorage, coordinator: StoringCoordinator) -> list[dict[str, Any]]:
    (handle,) = coordinator.handles
    assert handle.unaligned and handle.persisted_bytes > 0
    stored = decode(await storage.read_state(1, handle))
    return [{"channel": e["channel"], "elements": [decode(x) for x in e["elements"]]} for e in stored["channel_state"]]


def records(elements: list[Any]) -> list[Any]:
    return [r for e in elements if isinstance(e, Batch) for r in e.records]


async def test_the_barrier_overtakes_queued_records_which_become_channel_state(tmp_path: Path) -> None:
    task, (in0, in1), output, events, coordinator, storage = make_task(tmp_path)
    in0.put_now(Batch(["a1"]))
    in0.put_now(Watermark(5.0))
    in0.put_now(Batch(["a2"]))
    in0.put_now(barrier(1))  # behind a full channel: put_now, as the upstream does
    in0.put_now(Batch(["a-after"]))
    in1.put_now(Batch(["b1"]))
    runner = asyncio.create_task(task.run())
    try:
        seen = await read_until(lambda s: any(isinstance(e, Barrier) for e in s), output)
        assert events[0] == "snapshot-1"  # before any record: the barrier overtook them all
        assert isinstance(seen[0], Barrier)  # and went out first
        await asyncio.sleep(0.01)
        assert coordinator.acks == []  # channel 1 still owes barrier 1
        in1.put_now(Batch(["b2"]))
        in1.put_now(barrier(1))
        in1.put_now(Batch(["b-after"]))
        for channel in (in0, in1):
            channel.put_now(END_OF_INPUT)
        await read_until(lambda s: coordinator.ended and coordinator.acks, output)  # the write is in the background
        task.gate.post(FINISH)
        await read_until(lambda s: runner.done(), output)
        await runner
    finally:
        runner.cancel()
    assert coordinator.acks == [(1, ("rec", 0))]
    state = await stored_channel_state(storage, coordinator)
    assert [e["channel"] for e in state] == ["up[0] -> rec[0]", "up[1] -> rec[0]"]
    assert records(state[0]["elements"]) == ["a1", "a2"] and Watermark(5.0) in state[0]["elements"]
    assert records(state[1]["elements"]) == ["b1", "b2"]
    assert sorted(events[1:]) == sorted(["a1", "a2", "a-after", "b1", "b2", "b-after"])  # all processed once


async def test_an_aligned_timeout_lets_the_barrier_overtake_only_after_it(tmp_path: Path) -> None:
    clock = ManualClock(0.0)
    task, (in0, _in1), output, events, coordinator, _storage = make_task(tmp_path, aligned_timeout=1.0, clock=clock)
    in0.put_now(Batch(["a1"]))
    in0.put_now(barrier(1))
    runner = asyncio.create_task(task.run())
    try:
        await read_until(lambda s: events, output)
        assert events == ["a1"]  # before the timeout: aligned, the record went first; channel 0 is held
        clock.advance(1.5)
        task.gate.wake()
        await read_until(lambda s: "snapshot-1" in events, output)
        assert task.aligner.in_flight  # switched: channel 1 is in flight now
    finally:
        runner.cancel()
    assert coordinator.declines == []


async def test_a_savepoint_barrier_never_overtakes(tmp_path: Path) -> None:
    task, (in0, in1), output, events, coordinator, _storage = make_task(tmp_path)
    in0.put_now(Batch(["a1"]))
    in0.put_now(barrier(1, savepoint=True))
    in1.put_now(Batch(["b1"]))
    in1.put_now(barrier(1, savepoint=True))
    runner = asyncio.create_task(task.run())
    try:
        await read_until(lambda s: "snapshot-1" in events, output)
    finally:
        runner.cancel()
    assert events[: events.index("snapshot-1")] in (["a1", "b1"], ["b1", "a1"])


async def test_an_abort_drops_the_channel_state_being_recorded(tmp_path: Path) -> None:
    task, (in0, _in1), output, events, coordinator, _storage = make_task(tmp_path)
    in0.put_now(Batch(["a1"]))
    in0.put_now(barrier(1))
    runner = asyncio.create_task(task.run())
    try:
        await read_until(lambda s: "snapshot-1" in events and "a1" in events, output)
        assert task._in_flight is not None
        task.gate.post(CheckpointAborted(CheckpointId(1)))
        await read_until(lambda s: task._in_flight is None, output)
    finally:
        runner.cancel()
        await asyncio.sleep(0.01)  # the background write sees the recorder given up and ends
    assert coordinator.acks == [] and coordinator.declines == []


def channels(*names: str) -> list[Channel]:
    return [Channel(name, 2) for name in names]


def test_restore_puts_in_flight_elements_back_ahead_of_anything_new() -> None:
    stored = [
        {"channel": "up[0] -> rec[0]", "elements": [encode(Batch(["a1"], keys=["k"], key_groups=[3]))]},
        {"channel": "up[1] -> rec[0]", "elements": [encode(Watermark(2.0)), encode(Batch(["b1"]))]},
    ]
    gate = channels("up[0] -> rec[0]", "up[1] -> rec[0]")
    count = restore_channel_state("rec", 0, [OperatorSnapshot(channel_state=stored)], gate, parallelism=1)
    assert count == 3
    restored = gate[0].pop()
    assert (restored.records, restored.keys, restored.key_groups) == (["a1"], ["k"], [3])  # the whole batch
    assert gate[1].pop() == Watermark(2.0) and gate[1].pop().records == ["b1"]


def test_event_time_elements_in_flight_come_back_whole() -> None:
    """A batch with its event timestamps and a watermark status, as the windows runtime
    sends them: stored as elements, not as a list of fields."""
    from streamflow.eventtime.status import WatermarkStatus

    stored = [{"channel": "up[0] -> rec[0]", "elements": [
        encode(Batch(["a1", "a2"], timestamps=[1.5, 2.5])), encode(WatermarkStatus.IDLE), encode(Watermark(2.0)),
    ]}]  # fmt: skip
    gate = channels("up[0] -> rec[0]")
    assert restore_channel_state("rec", 0, [OperatorSnapshot(channel_state=stored)], gate, parallelism=1) == 3
    batch = gate[0].pop()
    assert (batch.records, batch.timestamps) == (["a1", "a2"], [1.5, 2.5])
    assert gate[0].pop() is WatermarkStatus.IDLE and gate[0].pop() == Watermark(2.0)


def test_restore_refuses_to_move_in_flight_records_to_another_parallelism() -> None:
    stored = [{"channel": "up[0] -> rec[0]", "elements": [encode(Batch(["a1"]))]}]
    snapshots = [OperatorSnapshot(channel_state=stored), OperatorSnapshot()]
    with pytest.raises(StateError, match=r"'rec' was checkpointed unaligned at parallelism 2.*take a savepoint"):
        restore_channel_state("rec", 0, snapshots, channels("up[0] -> rec[0]"), parallelism=3)
    empty = [OperatorSnapshot(channel_state=[{"channel": "up[0] -> rec[0]", "elements": []}])] * 2
    assert restore_channel_state("rec", 0, empty, channels("x"), parallelism=3) == 0  # nothing in flight: rescales


async def test_a_stale_barrier_closes_no_channel_of_the_checkpoint_in_flight(tmp_path: Path) -> None:
    """Barrier 1 was aborted; channel 1 still carries it ahead of barrier 2. It must not
    end the recording of channel 1 for checkpoint 2: b1 and b2 are in flight for 2."""
    task, (in0, in1), output, events, coordinator, storage = make_task(tmp_path)
    task.aligner.abort(1)
    in0.put_now(barrier(2))
    in1.put_now(Batch(["b1"]))
    in1.put_now(barrier(1))
    in1.put_now(Batch(["b2"]))
    runner = asyncio.create_task(task.run())
    try:
        await read_until(lambda s: "snapshot-2" in events and "b2" in events, output)
        in1.put_now(barrier(2))
        await read_until(lambda s: coordinator.acks, output)
    finally:
        runner.cancel()
    (handle,) = coordinator.handles
    stored = decode(await storage.read_state(2, handle))["channel_state"]
    assert records([decode(x) for x in stored[1]["elements"]]) == ["b1", "b2"]
