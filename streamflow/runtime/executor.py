"""Runs a physical plan: one attempt at a time, restarted by the restart strategy.

An attempt restores every operator from the latest complete checkpoint (if any), has
its channels, tasks and coordinator wired (:mod:`streamflow.runtime.wiring`), and runs
them in one ``asyncio.TaskGroup``: the first task that fails cancels the others and
fails the attempt.

Started from a savepoint (``ExecutionSettings.restore_from``), the run first verifies it
and checks it against the plan (before any attempt: a mismatch is not retried); every
attempt restores from it until this run completed a checkpoint of its own, and checkpoint
ids continue after the savepoint's (a sink's transaction names must never repeat). A
worker of a job on several processes may start from its part of a savepoint set
(:mod:`streamflow.savepoint.set_restore`) the same way; restored from its own
checkpoints, its subtasks' snapshots are laid out at their global places
(:mod:`streamflow.savepoint.placement`).

Before an attempt restores, the checkpoints skipped as damaged pass
:func:`~streamflow.checkpoint.rollback.check_fallback`: skipping a completed one would
repeat what exactly-once sinks committed, and is refused unless allowed. The restart
strategy's :class:`~streamflow.config.RestartTracker` says how long to wait between
attempts.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Coroutine

from streamflow.api.delivery import DeliveryGuarantee, declared_guarantee
from streamflow.checkpoint.rollback import check_fallback
from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.config import RestartTracker, RetentionOnCancel
from streamflow.core.services import JobServices
from streamflow.errors import JobFailedError
from streamflow.graph.plan import PhysicalPlan
from streamflow.graph.spec import OperatorKind
from streamflow.runtime.channel import Channel
from streamflow.runtime.checkpoint_stats import CheckpointStats
from streamflow.runtime.coordinator import CheckpointCoordinator
from streamflow.runtime.settings import ExecutionSettings
from streamflow.runtime.task import Task
from streamflow.runtime.wiring import wire_attempt
from streamflow.savepoint.placement import place_own_snapshots
from streamflow.savepoint.restore import (
    Restored,
    RestorePoint,
    check_max_parallelism,
    prepare_restore,
    read_snapshot_state,
)
from streamflow.savepoint.set_restore import SetRestorePoint, SetRestoreSettings, prepare_set_restore

log = logging.getLogger("streamflow.job")


class JobStatus(enum.StrEnum):
    """Where a job run is. A str: it compares, prints and serializes as its value."""

    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class JobResult:
    """How a finished job went."""

    job_name: str
    attempts: int
    restored_from: int | None
    checkpoints_completed: int
    duration: float
    metrics: dict[str, Any] = field(default_factory=dict)  # filled by JobClient: metrics read the runtime
    stopped_with_savepoint: Path | None = None  # the savepoint a stop with savepoint took


class Execution:
    """One job run across its attempts; what ``JobClient`` reads from."""

    def __init__(self, plan: PhysicalPlan, settings: ExecutionSettings) -> None:
        self.plan = plan
        self.settings = settings
        self.tasks: list[Task] = []
        self.channels: list[Channel] = []
        self.coordinator: CheckpointCoordinator | None = None
        self.stats = CheckpointStats()
        self.attempt = 0
        self.status: JobStatus = JobStatus.CREATED
        self.failures: list[str] = []
        self.started = time.perf_counter()
        self.restore_point: RestorePoint | SetRestorePoint | None = None
        # Tells this run's operators apart from another run's in the same process.
        self.run_id = uuid.uuid4().hex
        self.services = JobServices(settings.faults)  # this run's faults, offloading, shared objects
        self._ids_before_run = 0  # highest checkpoint id on disk before this run
        self._exactly_once_sinks = exactly_once_sinks(plan)
        self._started = asyncio.Event()  # set once the start checks passed
        self.storage = (
            CheckpointStorage(
                settings.checkpoint_dir, retained=settings.checkpoint.retained, faults=self.services.faults
            )
            if settings.checkpoint is not None and settings.checkpoint_dir is not None
            else None
        )

    # -- attempts ---------------------------------------------------------------------

    @property
    def has_started(self) -> bool:
        """Whether the run passed its start checks (a savepoint to restore from verified
        and matched to the plan) and began its first attempt."""
        return self._started.is_set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self) -> JobResult:
        tracker = RestartTracker(self.settings.restart)
        restore_from = self.settings.restore_from
        if restore_from is not None:
            try:
                if isinstance(restore_from, SetRestoreSettings):
                    self.restore_point = await prepare_set_restore(restore_from, self.plan)
                else:
                    self.restore_point = point = await prepare_restore(restore_from, self.plan)
                    check_fallback(  # a job directory given as the savepoint: its latest intact checkpoint
                        point.snapshot.scan,
                        job_name=self.settings.job_name,
                        exactly_once_sinks=self._exactly_once_sinks,
                        allow_rollback=self.settings.allow_checkpoint_rollback,
                        restores=f"checkpoint {point.checkpoint_id} of {str(restore_from.path)!r}",
                    )
            except Exception:
                self.status = JobStatus.FAILED
                raise
            if self.storage is not None:
                self._ids_before_run = await self.storage.highest_checkpoint_id()
        self._started.set()
        try:
            while True:
                self.attempt += 1
                self.status = JobStatus.RUNNING
                tracker.attempt_started(time.monotonic())
                try:
                    await self._run_attempt()
                    break
                except Exception as group:
                    failure = _root_failure(group)
                    self.failures.append(f"{type(failure).__name__}: {failure}")
                    retriable = getattr(failure, "retriable", True)
                    delay = tracker.on_failure(time.monotonic()) if retriable else None
                    if delay is None:
                        self.status = JobStatus.FAILED
                        why = "it cannot be retried" if not retriable else "the restart strategy gave up"
                        raise JobFailedError(
                            f"job {self.settings.job_name!r} failed in attempt {self.attempt} and {why}: "
                            f"{type(failure).__name__}: {failure}"
                            + ("" if not retriable else f" (restart strategy: {self.settings.restart.describe()})"),
                            job=self.settings.job_name,
                            attempt=self.attempt,
                        ) from failure
                    self.status = JobStatus.RESTARTING
                    log.warning(
                        "job %r attempt %d failed: %s: %s; restarting in %.2fs from the latest checkpoint",
                        self.settings.job_name, self.attempt, type(failure).__name__, failure, delay,
                    )
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.status = JobStatus.CANCELLED
            if (
                self.storage is not None
                and self.settings.checkpoint is not None
                and self.settings.checkpoint.retention_on_cancel is RetentionOnCancel.DELETE
            ):
                await self.storage.discard_all()
            raise
        self.status = JobStatus.FINISHED
        return JobResult(
            job_name=self.settings.job_name,
            attempts=self.attempt,
            restored_from=self.stats.restored_from,
            checkpoints_completed=self.stats.completed,
            duration=time.perf_counter() - self.started,
            stopped_with_savepoint=self.coordinator.stopped_with if self.coordinator is not None else None,
        )

    async def _restore(self) -> tuple[Restored | None, int]:
        """Decoded snapshots per operator uid (index = old subtask) and the next-id base."""
        if self.storage is not None:
            await self.storage.load_shared_references()  # incremental checkpoints: who needs which shared file
        start_id = 0 if self.storage is None else await self.storage.highest_checkpoint_id()
        scan = None if self.storage is None else await self.storage.scan_for_restore()
        latest = None if scan is None else scan.latest
        point = self.restore_point
        from_savepoint = point is not None and (latest is None or latest.checkpoint_id <= self._ids_before_run)
        if scan is not None:
            if from_savepoint:
                assert point is not None
                restores = f"the savepoint {str(point.path)!r} (checkpoint {point.checkpoint_id})"
            elif latest is not None:
                restores = f"checkpoint {latest.checkpoint_id}"
            else:
                restores = "no checkpoint (the job would start without state, from the start of its input)"
            check_fallback(
                scan,
                job_name=self.settings.job_name,
                exactly_once_sinks=self._exactly_once_sinks,
                allow_rollback=self.settings.allow_checkpoint_rollback,
                restores=restores,
                ignore_up_to=self._ids_before_run if point is not None else 0,
            )
        if from_savepoint:
            assert point is not None
            # no checkpoint of this run yet: (re)start from the savepoint
            self.stats.restored_from = point.checkpoint_id
            self.stats.restored_path = str(point.path)
            log.info("job %r restores from %s", self.settings.job_name, str(point.path))
            return await point.read(), max(start_id, point.checkpoint_id)
        if self.storage is None or latest is None:
            return None, start_id
        check_max_parallelism(latest.metadata, self.plan, path=latest.path)  # a new job may have changed it
        restored = await read_snapshot_state(self.storage, latest)
        if self.settings.layout.is_distributed:
            # A worker's checkpoint holds its own subtasks (local indices): at their
            # global places, each subtask gets exactly its own state back.
            restored = place_own_snapshots(restored, layout=self.settings.layout, empty=OperatorSnapshot)
        self.stats.restored_from = latest.checkpoint_id
        self.stats.restored_path = str(latest.path)
        log.info("job %r restores from checkpoint %d", self.settings.job_name, latest.checkpoint_id)
        return restored, start_id

    async def _run_attempt(self) -> None:
        restored, start_id = await self._restore()
        # State writes run outside the task group: when the attempt fails they finish
        # (a few fsynced files) instead of being cancelled mid-file, which would leak the
        # file being opened, and they are done before the next attempt scans the directory.
        writes: set[asyncio.Task[Any]] = set()

        def spawn_write(coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
            write = asyncio.get_running_loop().create_task(coro)
            writes.add(write)
            write.add_done_callback(writes.discard)
            return write

        try:
            async with asyncio.TaskGroup() as group:
                attempt = wire_attempt(
                    self.plan, self.settings, run_id=self.run_id, services=self.services, storage=self.storage,
                    stats=self.stats, restored=restored, start_id=start_id, spawn=spawn_write,
                )
                self.tasks, self.channels, self.coordinator = attempt.tasks, attempt.channels, attempt.coordinator
                for task in attempt.tasks:
                    group.create_task(task.run(), name=task.name)
                group.create_task(attempt.coordinator.run(), name=f"{self.settings.job_name}.coordinator")
        finally:
            if writes:
                await asyncio.gather(*writes, return_exceptions=True)


def exactly_once_sinks(plan: PhysicalPlan) -> list[str]:
    """The uids of the plan's sinks that declare EXACTLY_ONCE output."""
    return [
        op.effective_uid
        for chain in plan.chains
        for op in chain.operators
        if op.kind is OperatorKind.SINK and declared_guarantee(op.function) is DeliveryGuarantee.EXACTLY_ONCE
    ]


def _root_failure(error: BaseException) -> BaseException:
    """The first real failure inside (nested) exception groups, ignoring cancellations."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if not isinstance(inner, asyncio.CancelledError):
                return _root_failure(inner)
    return error


__all__ = ["Execution", "JobResult", "JobStatus"]
