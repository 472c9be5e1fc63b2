"""CheckpointCoordinator loop behaviour that needs no job around it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamflow.core.clock import ManualClock
from streamflow.runtime.channel import InputGate
from streamflow.runtime.checkpoint_stats import CheckpointStats
from streamflow.runtime.coordinator import CheckpointCoordinator
from streamflow.runtime.mailbox import FINISH


class FakeTask:
    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = InputGate([])


def coordinator(tasks: list[Any]) -> CheckpointCoordinator:
    coord = CheckpointCoordinator(
        job_name="unit",
        config=None,
        storage=None,
        clock=ManualClock(),
        start_id=0,
        parallelism={t.name: 1 for t in tasks},
        max_parallelism=128,
        stats=CheckpointStats(),
    )
    coord.attach([t.gate for t in tasks], sources=[])
    return coord


async def test_without_checkpointing_finish_is_posted_once_every_task_ended() -> None:
    tasks = [FakeTask("a"), FakeTask("b")]
    coord = coordinator(tasks)
    runner = asyncio.create_task(coord.run())
    coord.end_of_input("a")
    await asyncio.sleep(0.01)
    assert not runner.done()
    coord.end_of_input("b")
    await asyncio.wait_for(runner, 1.0)
    for task in tasks:
        assert await task.gate.next(timeout=0) == (-1, FINISH)


async def test_cancel_arriving_with_an_event_still_stops_the_coordinator() -> None:
    """When an attempt fails its TaskGroup cancels the coordinator; a cancellation that
    lands in the iteration an ack or other event arrives must not be lost (on Python 3.11
    asyncio.wait_for lost it, and the coordinator ran on until a checkpoint timed out)."""
    for _ in range(20):
        coord = coordinator([FakeTask("a"), FakeTask("b")])
        runner = asyncio.create_task(coord.run())
        await asyncio.sleep(0)
        coord.end_of_input("a")  # wakes the coordinator's wait for events ...
        runner.cancel()  # ... in the same iteration as the cancellation
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(runner, 1.0)
