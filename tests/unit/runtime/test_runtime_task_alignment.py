"""A Task with two input channels, fed by hand: what aligning barriers does to record order."""

from __future__ import annotations

import asyncio
from typing import Any

from streamflow.config import CheckpointingMode
from streamflow.core.clock import ManualClock
from streamflow.core.elements import END_OF_INPUT, Barrier, Batch
from streamflow.core.ids import CheckpointId
from streamflow.graph.spec import OperatorKind, OperatorSpec, Partitioning
from streamflow.runtime.channel import Channel, InputGate
from streamflow.runtime.mailbox import FINISH, CheckpointAborted
from streamflow.runtime.operators.base import StreamOperator
from streamflow.runtime.partitioners import RecordWriter
from streamflow.runtime.task import Task


class FakeCoordinator:
    def __init__(self) -> None:
        self.acks: list[tuple[int, Any]] = []
        self.declines: list[tuple[int, str]] = []
        self.ended: list[str] = []

    def acknowledge(self, checkpoint_id: int, task: Any, handle: Any) -> None:
        self.acks.append((checkpoint_id, task))

    def decline(self, checkpoint_id: int, task: Any, reason: str) -> None:
        self.declines.append((checkpoint_id, reason))

    def end_of_input(self, task_name: str) -> None:
        self.ended.append(task_name)


class Recorder(StreamOperator):
    """Records what it processed and where the snapshots fell."""

    def __init__(self, events: list[Any]) -> None:
        spec = OperatorSpec(node_id=1, kind=OperatorKind.MAP, name="rec", function=None, uid="rec")
        super().__init__(spec, ctx=None)  # type: ignore[arg-type]
        self.events = events

    async def process(self, batch: Batch) -> None:
        self.events.extend(batch.records)
        await self.emit(batch)

    async def snapshot(self, checkpoint_id: int, snapshot_type: Any) -> dict[str, Any] | None:
        self.events.append(f"snapshot-{checkpoint_id}")
        return None


def barrier(n: int) -> Barrier:
    return Barrier(CheckpointId(n), 0.0)


def make_task(
    mode: CheckpointingMode,
    *,
    inputs: list[Channel] | None = None,
    output: Channel | None = None,
    coordinator: FakeCoordinator | None = None,
    **options: Any,
) -> tuple[Task, list[Channel], Channel, list[Any], FakeCoordinator]:
    """A task over two input channels and one output; ``options`` go to Task (storage,
    clock, unaligned...)."""
    inputs = inputs or [Channel("in0", 16), Channel("in1", 16)]
    output = output or Channel("out", 64)
    events: list[Any] = []
    coordinator = coordinator or FakeCoordinator()
    options = {"storage": None, "clock": ManualClock(), **options}
    task = Task(
        name="rec[0]",
        subtask=0,
        operators=[Recorder(events)],
        gate=InputGate(inputs),
        outputs=[RecordWriter([output], Partitioning.FORWARD, None, 128)],
        side_outputs={},
        mode=mode,
        coordinator=coordinator,
        spawn=asyncio.get_running_loop().create_task,
        restored=None,
        **options,
    )
    return task, inputs, output, events, coordinator


async def run_until_ended(task: Task, coordinator: FakeCoordinator) -> None:
    runner = asyncio.create_task(task.run())
    try:
        async with asyncio.timeout(2.0):
            while not coordinator.ended:
                await asyncio.sleep(0.001)
        task.gate.post(FINISH)
        await asyncio.wait_for(runner, 2.0)
    finally:
        runner.cancel()


def drain(channel: Channel) -> list[Any]:
    out = []
    while len(channel):
        out.append(channel.pop())
    return out


async def test_exactly_once_keeps_records_after_the_barrier_out_of_the_snapshot() -> None:
    task, (in0, in1), output, events, coordinator = make_task(CheckpointingMode.EXACTLY_ONCE)
    await in0.put(barrier(1))
    await in0.put(Batch(["a-after-1"]))
    await in0.put(END_OF_INPUT)
    await in1.put(Batch(["b-before-1"]))
    await in1.put(barrier(1))
    await in1.put(Batch(["b-after-1"]))
    await in1.put(END_OF_INPUT)

    await run_until_ended(task, coordinator)

    cut = events.index("snapshot-1")
    assert set(events[:cut]) == {"b-before-1"}
    assert set(events[cut + 1 :]) == {"a-after-1", "b-after-1"}
    assert coordinator.acks == [(1, ("rec", 0))]
    # barrier 1 is forwarded once, before any record that came after it
    forwarded = drain(output)
    barriers = [i for i, e in enumerate(forwarded) if isinstance(e, Barrier)]
    assert len(barriers) == 1
    before = [r for e in forwarded[: barriers[0]] if isinstance(e, Batch) for r in e.records]
    assert before == ["b-before-1"]


async def test_at_least_once_lets_records_overtake_the_barrier() -> None:
    task, (in0, in1), _output, events, coordinator = make_task(CheckpointingMode.AT_LEAST_ONCE)
    await in0.put(barrier(1))
    await in0.put(Batch(["a-after-1"]))
    await in0.put(END_OF_INPUT)
    await in1.put(Batch(["b-before-1"]))
    await in1.put(barrier(1))
    await in1.put(END_OF_INPUT)

    await run_until_ended(task, coordinator)

    cut = events.index("snapshot-1")
    # input 0 was not held: its record after barrier 1 is inside snapshot 1 (replayed on restore)
    assert set(events[:cut]) == {"b-before-1", "a-after-1"}
    assert coordinator.acks == [(1, ("rec", 0))]


async def test_newer_barrier_abandons_alignment_and_releases_the_held_input() -> None:
    """Input 1 skips barrier 1 (its upstream aborted it) and delivers barrier 2.

    Checkpoint 1 is declined; input 0, held for barrier 1, must be released so it can
    deliver its records and barrier 2, otherwise both inputs stay held: a deadlock.
    """
    task, (in0, in1), _output, events, coordinator = make_task(CheckpointingMode.EXACTLY_ONCE)
    await in0.put(barrier(1))
    await in0.put(Batch(["a-between-1-and-2"]))
    await in0.put(barrier(2))
    await in0.put(Batch(["a-after-2"]))
    await in0.put(END_OF_INPUT)
    await in1.put(Batch(["b-before-2"]))
    await in1.put(barrier(2))
    await in1.put(Batch(["b-after-2"]))
    await in1.put(END_OF_INPUT)

    await run_until_ended(task, coordinator)

    assert [n for n, _ in coordinator.declines] == [1]
    assert "snapshot-1" not in events
    cut = events.index("snapshot-2")
    assert set(events[:cut]) == {"a-between-1-and-2", "b-before-2"}
    assert set(events[cut + 1 :]) == {"a-after-2", "b-after-2"}
    assert coordinator.acks == [(2, ("rec", 0))]


async def test_abort_mail_releases_a_held_input() -> None:
    task, (in0, in1), _output, events, coordinator = make_task(CheckpointingMode.EXACTLY_ONCE)
    await in0.put(barrier(1))
    await in0.put(Batch(["a-after-1"]))
    await in0.put(END_OF_INPUT)

    runner = asyncio.create_task(task.run())
    try:
        await asyncio.sleep(0.02)
        assert events == []  # input 0 is held for barrier 1
        task.gate.post(CheckpointAborted(CheckpointId(1)))
        await asyncio.sleep(0.02)
        assert events == ["a-after-1"]
        await in1.put(barrier(1))  # stale now: ignored
        await in1.put(END_OF_INPUT)
        async with asyncio.timeout(2.0):
            while not coordinator.ended:
                await asyncio.sleep(0.001)
        task.gate.post(FINISH)
        await asyncio.wait_for(runner, 2.0)
    finally:
        runner.cancel()
    assert events == ["a-after-1"]
    assert coordinator.acks == []
