"""The coordinator's savepoint rules without a job around it: acks are sent by hand,
state files and savepoints are real files.

Rules: a savepoint completes like a checkpoint, its directory written before the
checkpoint's own metadata; stop with savepoint posts STOP after the completion notice and
ends the coordinator; a savepoint that cannot be written is aborted without counting
against ``tolerable_failures``; a savepoint waits at ``max_concurrent`` instead of
failing, and so does a checkpoint the user triggers; nobody waits forever once the attempt is over. And the rule of incremental
checkpoints: a checkpoint that reuses a shared file nothing references any more is
declined (its subtasks told to reuse nothing), without counting as a failure.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.config import CheckpointConfig
from streamflow.core.clock import ManualClock
from streamflow.errors import CheckpointAbortedError, CheckpointError, ConfigError
from streamflow.runtime.channel import TIMEOUT, InputGate
from streamflow.runtime.checkpoint_stats import CheckpointStats
from streamflow.runtime.coordinator import CheckpointCoordinator
from streamflow.runtime.mailbox import STOP, CheckpointAborted, CheckpointCompleted
from streamflow.savepoint import locate_snapshot


class FakeTask:
    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = InputGate([])


async def drain(task: FakeTask) -> list[Any]:
    """Every mail the coordinator posted to ``task`` so far."""
    mail = []
    while True:
        _index, item = await task.gate.next(timeout=0)
        if item is TIMEOUT:
            return mail
        mail.append(item)


@dataclass
class Setup:
    coordinator: CheckpointCoordinator
    task: FakeTask
    storage: CheckpointStorage
    runner: asyncio.Task[None]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    task = FakeTask("op")
    storage = CheckpointStorage(tmp_path / "chk")
    coordinator = CheckpointCoordinator(
        job_name="unit",
        config=CheckpointConfig(interval=1000.0, tolerable_failures=0, max_concurrent=1),
        storage=storage,
        clock=ManualClock(),
        start_id=0,
        parallelism={"op": 1},
        max_parallelism=128,
        stats=CheckpointStats(),
    )
    coordinator.attach([task.gate], sources=[])
    runner = asyncio.create_task(coordinator.run())
    yield Setup(coordinator, task, storage, runner)
    if not runner.done():
        runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def ack(coordinator: CheckpointCoordinator, storage: CheckpointStorage, checkpoint_id: int) -> None:
    handle = await storage.write_state(checkpoint_id, "op-0", b"J{}")
    coordinator.acknowledge(checkpoint_id, ("op", 0), handle)


async def in_flight(coordinator: CheckpointCoordinator) -> tuple[int, ...]:
    for _ in range(100):
        assert coordinator.scheduler is not None
        if coordinator.scheduler.in_flight:
            return coordinator.scheduler.in_flight
        await asyncio.sleep(0.001)
    raise AssertionError("nothing was triggered")


async def test_stop_with_savepoint_notifies_then_stops_every_task_and_ends(setup: Setup, tmp_path: Path) -> None:
    coordinator, task, storage = setup.coordinator, setup.task, setup.storage
    stopping = asyncio.create_task(coordinator.trigger_savepoint(tmp_path / "sp", stop=True))
    (n,) = await in_flight(coordinator)
    await ack(coordinator, storage, n)
    path = await stopping
    assert (await locate_snapshot(path)).is_savepoint and (await storage.verify(n)).checkpoint_id == n
    assert await drain(task) == [CheckpointCompleted(n), STOP]
    assert coordinator.stopped_with == path
    assert coordinator.stats.history[-1].savepoint == str(path)


async def test_an_unwritable_savepoint_fails_alone_and_the_sources_read_on(setup: Setup, tmp_path: Path) -> None:
    coordinator, task, storage = setup.coordinator, setup.task, setup.storage
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for attempt in range(2):  # twice: tolerable_failures=0 would fail the job on a checkpoint
        stopping = asyncio.create_task(coordinator.trigger_savepoint(blocker, stop=True))
        (n,) = await in_flight(coordinator)
        await ack(coordinator, storage, n)
        with pytest.raises(CheckpointError, match="savepoint could not be written"):
            await stopping
        assert await drain(task) == [CheckpointAborted(n)]  # a suspended source reads on
        assert not storage.checkpoint_path(n).exists()
    assert coordinator.stopped_with is None and coordinator.stats.failed == 2
    checkpoint = asyncio.create_task(coordinator.trigger_checkpoint())  # the job goes on
    (n,) = await in_flight(coordinator)
    await ack(coordinator, storage, n)
    assert await checkpoint == n


async def test_a_savepoint_waits_for_a_checkpoint_in_flight(setup: Setup, tmp_path: Path) -> None:
    coordinator, storage = setup.coordinator, setup.storage
    checkpoint = asyncio.create_task(coordinator.trigger_checkpoint())
    (first,) = await in_flight(coordinator)
    savepoint = asyncio.create_task(coordinator.trigger_savepoint(tmp_path / "sp"))
    await asyncio.sleep(0.01)
    assert coordinator.scheduler is not None and coordinator.scheduler.in_flight == (first,)  # queued, not refused
    await ack(coordinator, storage, first)
    assert await checkpoint == first
    (second,) = await in_flight(coordinator)
    await ack(coordinator, storage, second)
    assert (await locate_snapshot(await savepoint)).completed.checkpoint_id == second == first + 1


async def test_a_user_checkpoint_waits_for_a_checkpoint_in_flight(setup: Setup) -> None:
    coordinator, storage = setup.coordinator, setup.storage
    first_request = asyncio.create_task(coordinator.trigger_checkpoint())
    (first,) = await in_flight(coordinator)
    second_request = asyncio.create_task(coordinator.trigger_checkpoint())
    await asyncio.sleep(0.01)
    assert coordinator.scheduler is not None and coordinator.scheduler.in_flight == (first,)  # queued, not refused
    assert not second_request.done()
    await ack(coordinator, storage, first)
    assert await first_request == first
    (second,) = await in_flight(coordinator)
    await ack(coordinator, storage, second)
    assert await second_request == second == first + 1


async def test_a_metadata_write_that_fails_aborts_that_checkpoint_and_the_job_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the ``_metadata`` write aborts checkpoint n, counted against
    tolerable_failures, like a state file that cannot be written; the next one completes."""
    task = FakeTask("op")
    storage = CheckpointStorage(tmp_path / "chk")
    coordinator = CheckpointCoordinator(
        job_name="unit", config=CheckpointConfig(interval=1000.0, tolerable_failures=1, max_concurrent=1),
        storage=storage, clock=ManualClock(), start_id=0, parallelism={"op": 1}, max_parallelism=128,
        stats=CheckpointStats(),
    )
    coordinator.attach([task.gate], sources=[])
    runner = asyncio.create_task(coordinator.run())
    write_metadata = storage.write_metadata

    async def disk_full_once(checkpoint_id: int, metadata: Any) -> None:
        monkeypatch.setattr(storage, "write_metadata", write_metadata)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "write_metadata", disk_full_once)
    try:
        first = asyncio.create_task(coordinator.trigger_checkpoint())
        (n,) = await in_flight(coordinator)
        await ack(coordinator, storage, n)
        with pytest.raises(CheckpointAbortedError, match="_metadata could not be written.*No space left"):
            await first
        assert await drain(task) == [CheckpointAborted(n)] and not runner.done()
        assert coordinator.stats.failed == 1 and not storage.checkpoint_path(n).exists()
        second = asyncio.create_task(coordinator.trigger_checkpoint())
        (m,) = await in_flight(coordinator)
        await ack(coordinator, storage, m)
        assert await second == m == n + 1
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_waiters_fail_when_the_attempt_ends_and_later_triggers_are_refused(setup: Setup, tmp_path: Path) -> None:
    coordinator = setup.coordinator
    savepoint = asyncio.create_task(coordinator.trigger_savepoint(tmp_path / "sp"))
    await in_flight(coordinator)
    setup.runner.cancel()
    with pytest.raises(CheckpointAbortedError, match="the attempt ended .* before the requested checkpoint"):
        await savepoint
    with pytest.raises(CheckpointError, match="this attempt of job 'unit' has ended"):
        await coordinator.trigger_savepoint(tmp_path / "sp")


async def test_savepoints_and_user_checkpoints_need_checkpointing() -> None:
    coordinator = CheckpointCoordinator(
        job_name="plain", config=None, storage=None, clock=ManualClock(), start_id=0,
        parallelism={}, max_parallelism=128, stats=CheckpointStats(),
    )
    with pytest.raises(ConfigError, match="job 'plain' runs without checkpointing and cannot take a savepoint, which is a checkpoint"):
        await coordinator.trigger_savepoint(Path("/tmp/never"))
    with pytest.raises(ConfigError, match="job 'plain' runs without checkpointing and cannot trigger a checkpoint"):
        await coordinator.trigger_checkpoint()


async def test_a_checkpoint_reusing_a_deleted_shared_file_is_declined_without_counting(
    setup: Setup, tmp_path: Path
) -> None:
    coordinator, task, storage = setup.coordinator, setup.task, setup.storage
    local = tmp_path / "000001.sst"
    local.write_bytes(b"sst")
    # written for checkpoint 0, whose retention released it: nothing references it now
    gone = await storage.shared.upload(0, "0-op-0-000001.sst", local, link=True)
    for _ in range(2):  # twice: tolerable_failures=0 would fail the attempt on a counted failure
        checkpoint = asyncio.create_task(coordinator.trigger_checkpoint())
        (n,) = await in_flight(coordinator)
        coordinator.acknowledge(n, ("op", 0), await storage.write_state(n, "op-0", b"J{}", (gone,)))
        with pytest.raises(CheckpointAbortedError, match=r"shared files it reuses were deleted meanwhile "
                           r"\(0-op-0-000001.sst\); its subtasks write every file anew"):  # fmt: skip
            await checkpoint
        assert await drain(task) == [CheckpointAborted(n, shared_files_lost=True)]
        assert not storage.checkpoint_path(n).exists()
    assert not setup.runner.done() and coordinator.stats.failed == 2
    checkpoint = asyncio.create_task(coordinator.trigger_checkpoint())  # one that uploads its files anew completes
    (n,) = await in_flight(coordinator)
    fresh = await storage.shared.upload(n, f"{n}-op-0-000001.sst", local, link=True)
    coordinator.acknowledge(n, ("op", 0), await storage.write_state(n, "op-0", b"J{}", (fresh,)))
    assert await checkpoint == n
    assert (await storage.verify(n)).metadata.shared_files() == [fresh]
