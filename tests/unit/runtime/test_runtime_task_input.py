"""A Task's input loop: what it holds on to between the batches it reads."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from streamflow.config import CheckpointingMode
from streamflow.core.clock import ManualClock
from streamflow.core.elements import Batch
from streamflow.graph.spec import OperatorKind, OperatorSpec, Partitioning
from streamflow.runtime.channel import Channel, InputGate
from streamflow.runtime.mailbox import FINISH
from streamflow.runtime.operators.base import StreamOperator
from streamflow.runtime.partitioners import RecordWriter
from streamflow.runtime.task import Task


class Record:
    """A record a weak reference can watch (dicts and lists cannot be)."""


class Counter(StreamOperator):
    """Counts the records it is handed and keeps none of them."""

    def __init__(self) -> None:
        spec = OperatorSpec(node_id=1, kind=OperatorKind.MAP, name="count", function=None, uid="count")
        super().__init__(spec, ctx=None)  # type: ignore[arg-type]
        self.count = 0
        self.processed = asyncio.Event()

    async def process(self, batch: Batch) -> None:
        self.count += len(batch.records)
        self.processed.set()


class NoCoordinator:
    def acknowledge(self, checkpoint_id: int, task: Any, handle: Any) -> None:
        raise AssertionError("no checkpoint in this test")

    def decline(self, checkpoint_id: int, task: Any, reason: str) -> None:
        raise AssertionError("no checkpoint in this test")

    def end_of_input(self, task_name: str) -> None:
        return None


async def test_a_task_waiting_for_its_next_element_holds_no_batch_it_processed() -> None:
    """Records of a processed batch are freed before the task waits: upstream then builds
    its next batch in the memory they held, not in fresh memory beside them."""
    channel = Channel("in", 4)
    counter = Counter()
    task = Task(
        name="count[0]", subtask=0, operators=[counter], gate=InputGate([channel]),
        outputs=[RecordWriter([Channel("out", 4)], Partitioning.FORWARD, None, 128)], side_outputs={},
        mode=CheckpointingMode.EXACTLY_ONCE, coordinator=NoCoordinator(),
        storage=None, clock=ManualClock(), spawn=asyncio.get_running_loop().create_task, restored=None,
    )
    records = [Record(), Record()]
    watched = [weakref.ref(record) for record in records]
    await channel.put(Batch(records))
    del records
    runner = asyncio.create_task(task.run())
    try:
        async with asyncio.timeout(2.0):
            await counter.processed.wait()
        for _ in range(10):  # the task goes on to wait for its next element, which never comes
            await asyncio.sleep(0)
        assert counter.count == 2
        assert [ref() for ref in watched] == [None, None]
        task.gate.post(FINISH)
        await asyncio.wait_for(runner, 2.0)
    finally:
        runner.cancel()
