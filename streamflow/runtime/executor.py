"""Runs a physical plan: one attempt at a time, restarted by the restart strategy.

An attempt restores every operator from the latest complete checkpoint (if any), builds
channels and tasks, and runs them and the coordinator in one ``asyncio.TaskGroup``: the
first task that fails cancels the others and fails the attempt.

Started from a savepoint (``ExecutionSettings.restore_from``), the run first verifies it
and checks it against the plan (before any attempt: a mismatch is not retried); every
attempt restores from it until this run completed a checkpoint of its own, and checkpoint
ids continue after the savepoint's (a sink's transaction names must never repeat).

Before an attempt restores, the checkpoints skipped as damaged pass
:func:`~streamflow.checkpoint.rollback.check_fallback`: skipping a completed one would
repeat what exactly-once sinks committed, and is refused unless allowed. The restart
strategy's :class:`~streamflow.config.RestartTracker` says how long to wait between
attempts. (Over 400 lines: one concept, the attempt loop with its restore and build
steps, which share the execution's state.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine

from streamflow.api.connector import SourceContext
from streamflow.api.connector_checks import check_reader
from streamflow.api.delivery import DeliveryGuarantee, declared_guarantee
from streamflow.checkpoint.rollback import check_fallback
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.config import CheckpointConfig, CheckpointingMode, RestartStrategy, RestartTracker, RetentionOnCancel
from streamflow.core.clock import Clock
from streamflow.errors import JobFailedError, StreamflowError
from streamflow.graph.plan import ChainSpec, PhysicalPlan
from streamflow.graph.spec import OperatorKind, Partitioning
from streamflow.partitioning.keygroups import key_group_range
from streamflow.runtime.channel import Channel, InputGate
from streamflow.runtime.coordinator import CheckpointCoordinator, CheckpointStats
from streamflow.runtime.operators import make_operator
from streamflow.runtime.operators.base import StreamOperator
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.partitioners import RecordWriter
from streamflow.runtime.source_task import SourceTask
from streamflow.runtime.task import Task
from streamflow.savepoint.restore import (
    Restored,
    RestorePoint,
    RestoreSettings,
    check_max_parallelism,
    prepare_restore,
    read_snapshot_state,
)

log = logging.getLogger("streamflow.job")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSettings:
    """Everything an execution needs besides the plan; filled by StreamEnvironment."""

    job_name: str
    checkpoint: CheckpointConfig | None
    checkpoint_dir: Path | None
    restart: RestartStrategy
    state_backend: Any
    clock: Clock
    channel_capacity: int
    source_batch_size: int
    source_poll_wait: float
    restore_from: RestoreSettings | None = None  # a savepoint (or checkpoint) to start from
    savepoint_dir: Path | None = None  # default target of savepoints without a directory
    # Restore past a damaged completed checkpoint even with exactly-once sinks (duplicates).
    allow_checkpoint_rollback: bool = False


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
        self.status = "created"
        self.failures: list[str] = []
        self.started = time.perf_counter()
        self.restore_point: RestorePoint | None = None
        # Tells this run's operators apart from another run's in the same process.
        self.run_id = uuid.uuid4().hex
        self._ids_before_run = 0  # highest checkpoint id on disk before this run
        self._exactly_once_sinks = exactly_once_sinks(plan)
        self._started = asyncio.Event()  # set once the start checks passed
        self.storage = (
            CheckpointStorage(settings.checkpoint_dir, retained=settings.checkpoint.retained)
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
        if self.settings.restore_from is not None:
            try:
                self.restore_point = point = await prepare_restore(self.settings.restore_from, self.plan)
                check_fallback(  # a job directory given as the savepoint: its latest intact checkpoint
                    point.snapshot.scan,
                    job_name=self.settings.job_name,
                    exactly_once_sinks=self._exactly_once_sinks,
                    allow_rollback=self.settings.allow_checkpoint_rollback,
                    restores=f"checkpoint {point.checkpoint_id} of {str(self.settings.restore_from.path)!r}",
                )
            except Exception:
                self.status = "failed"
                raise
            if self.storage is not None:
                self._ids_before_run = await self.storage.highest_checkpoint_id()
        self._started.set()
        try:
            while True:
                self.attempt += 1
                self.status = "running"
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
                        self.status = "failed"
                        why = "it cannot be retried" if not retriable else "the restart strategy gave up"
                        raise JobFailedError(
                            f"job {self.settings.job_name!r} failed in attempt {self.attempt} and {why}: "
                            f"{type(failure).__name__}: {failure}"
                            + ("" if not retriable else f" (restart strategy: {self.settings.restart.describe()})"),
                            job=self.settings.job_name,
                            attempt=self.attempt,
                        ) from failure
                    self.status = "restarting"
                    log.warning(
                        "job %r attempt %d failed: %s: %s; restarting in %.2fs from the latest checkpoint",
                        self.settings.job_name, self.attempt, type(failure).__name__, failure, delay,
                    )
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.status = "cancelled"
            if (
                self.storage is not None
                and self.settings.checkpoint is not None
                and self.settings.checkpoint.retention_on_cancel is RetentionOnCancel.DELETE
            ):
                await self.storage.discard_all()
            raise
        self.status = "finished"
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
                self._build(restored, start_id, spawn_write)
                assert self.coordinator is not None
                for task in self.tasks:
                    group.create_task(task.run(), name=task.name)
                group.create_task(self.coordinator.run(), name=f"{self.settings.job_name}.coordinator")
        finally:
            if writes:
                await asyncio.gather(*writes, return_exceptions=True)

    # -- building -----------------------------------------------------------------------

    def _build(
        self,
        restored: Restored | None,
        start_id: int,
        spawn: Callable[[Coroutine[Any, Any, None]], Any],
    ) -> None:
        plan, settings = self.plan, self.settings
        capacity = settings.channel_capacity
        # channels[(edge index, upstream subtask)] -> list indexed by downstream subtask
        channels: dict[tuple[int, int], dict[int, Channel]] = {}
        inputs: dict[tuple[int, int], list[Channel]] = {}  # (chain id, subtask) -> gate channels
        sides: dict[tuple[int, int], list[int]] = {}  # the same keys -> each channel's input index
        self.channels = []
        for index, edge in enumerate(plan.edges):
            p_up = plan.parallelism[edge.upstream]
            p_down = plan.parallelism[edge.downstream]
            up_chain, down_chain = plan.chain_of(edge.upstream), plan.chain_of(edge.downstream)
            for i in range(p_up):
                targets = [i] if edge.partitioning is Partitioning.FORWARD else range(p_down)
                for j in targets:
                    channel = Channel(f"{up_chain.tail.name}[{i}] -> {down_chain.head.name}[{j}]", capacity)
                    if edge.dead_letter:
                        channel.name = f"{plan.chain_of(edge.upstream).name}[{i}] -dead letters-> sink[{j}]"
                    channels.setdefault((index, i), {})[j] = channel
                    inputs.setdefault((down_chain.chain_id, j), []).append(channel)
                    sides.setdefault((down_chain.chain_id, j), []).append(edge.input_index)
                    self.channels.append(channel)
        checkpoint = settings.checkpoint
        mode = checkpoint.mode if checkpoint is not None else CheckpointingMode.EXACTLY_ONCE
        parallelism = {op.effective_uid: chain.parallelism for chain in plan.chains for op in chain.operators}
        coordinator = CheckpointCoordinator(
            job_name=settings.job_name,
            config=checkpoint,
            storage=self.storage,
            clock=settings.clock,
            start_id=start_id,
            parallelism=parallelism,
            max_parallelism=plan.max_parallelism,
            stats=self.stats,
        )
        self.tasks = [
            self._task(chain, subtask, channels, inputs, restored, mode, coordinator, spawn, sides)
            for chain in plan.chains
            for subtask in range(chain.parallelism)
        ]
        coordinator.attach(
            [task.gate for task in self.tasks], [task.gate for task in self.tasks if isinstance(task, SourceTask)]
        )
        self.coordinator = coordinator

    def _task(
        self,
        chain: ChainSpec,
        subtask: int,
        channels: dict[tuple[int, int], dict[int, Channel]],
        inputs: dict[tuple[int, int], list[Channel]],
        restored: Restored | None,
        mode: CheckpointingMode,
        coordinator: CheckpointCoordinator,
        spawn: Callable[[Coroutine[Any, Any, None]], Any],
        sides: dict[tuple[int, int], list[int]],
    ) -> Task:
        plan, settings = self.plan, self.settings
        members = {op.node_id for op in chain.operators}
        outputs: list[RecordWriter] = []
        side_outputs: dict[str, RecordWriter] = {}
        for index, edge in enumerate(plan.edges):
            if edge.upstream not in members:
                continue
            targets = channels[(index, subtask)]
            writer = RecordWriter(
                [targets[j] for j in sorted(targets)], edge.partitioning, edge.key_selector, plan.max_parallelism
            )
            if edge.dead_letter:
                side_outputs[_uid_of(chain, edge.upstream)] = writer
            else:
                outputs.append(writer)
        operators: list[StreamOperator] = [
            make_operator(spec, self._context(spec, chain, subtask))
            for spec in chain.operators
            if spec.kind is not OperatorKind.SOURCE
        ]
        common: dict[str, Any] = dict(
            name=f"{chain.head.effective_uid}[{subtask}]",
            subtask=subtask,
            operators=operators,
            gate=InputGate(inputs.get((chain.chain_id, subtask), [])),
            outputs=outputs,
            side_outputs=side_outputs,
            mode=mode,
            coordinator=coordinator,
            storage=self.storage,
            clock=settings.clock,
            spawn=spawn,
            restored=restored,
            channel_inputs=sides.get((chain.chain_id, subtask)),
        )
        head = chain.head
        if head.kind is not OperatorKind.SOURCE:
            return Task(**common)
        source = head.function
        uid = head.effective_uid

        def reader_factory(splits: list[Any] | None, all_splits: list[Any] | None) -> Any:
            reader = source.create_reader(
                SourceContext(
                    job_name=settings.job_name,
                    run_id=self.run_id,
                    operator_uid=uid,
                    subtask_index=subtask,
                    parallelism=chain.parallelism,
                    restored_splits=splits,
                    all_restored_splits=all_splits,
                    clock=settings.clock,
                )
            )
            check_reader(reader, uid)  # before open: a reader that breaks the contract fails the job at once
            return reader

        return SourceTask(
            source_uid=uid,
            reader_factory=reader_factory,
            parallelism=chain.parallelism,
            batch_size=settings.source_batch_size,
            poll_wait=settings.source_poll_wait,
            error_policy=head.error_policy,
            **common,
        )

    def _context(self, spec: Any, chain: ChainSpec, subtask: int) -> OperatorContext:
        settings = self.settings
        backend = None
        if spec.key_selector is not None:
            backend = settings.state_backend.create_keyed_backend(
                operator_uid=spec.effective_uid,
                subtask_index=subtask,
                max_parallelism=self.plan.max_parallelism,
                key_group_range=key_group_range(self.plan.max_parallelism, chain.parallelism, subtask),
                clock=settings.clock,
            )
        checkpoint = settings.checkpoint
        return OperatorContext(
            job_name=settings.job_name,
            run_id=self.run_id,
            spec=spec,
            subtask_index=subtask,
            parallelism=chain.parallelism,
            max_parallelism=self.plan.max_parallelism,
            clock=settings.clock,
            keyed_backend=backend,
            checkpointing=checkpoint is not None,
            checkpoint_interval=checkpoint.interval if checkpoint is not None else None,
        )


def exactly_once_sinks(plan: PhysicalPlan) -> list[str]:
    """The uids of the plan's sinks that declare EXACTLY_ONCE output."""
    return [
        op.effective_uid
        for chain in plan.chains
        for op in chain.operators
        if op.kind is OperatorKind.SINK and declared_guarantee(op.function) is DeliveryGuarantee.EXACTLY_ONCE
    ]


def _uid_of(chain: ChainSpec, node_id: int) -> str:
    for op in chain.operators:
        if op.node_id == node_id:
            return op.effective_uid
    raise KeyError(node_id)


def _root_failure(error: BaseException) -> BaseException:
    """The first real failure inside (nested) exception groups, ignoring cancellations."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if not isinstance(inner, asyncio.CancelledError):
                return _root_failure(inner)
    return error


__all__ = ["Execution", "ExecutionSettings", "JobResult", "StreamflowError"]
