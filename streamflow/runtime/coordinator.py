"""The checkpoint coordinator of one job attempt: triggers, collects acks, completes.

The decisions are made by pure classes (:class:`CheckpointScheduler`,
:class:`PendingCheckpoint`); this module is the asyncio shell that feeds them. Every
event (ack, decline, end of input, user trigger) goes through one queue and is handled
by one loop, so coordinator state is never touched concurrently.

Checkpoint n, in order:
1. trigger: every source task gets ``TriggerCheckpoint(n)`` in its mailbox;
2. every operator subtask acks ``(uid, subtask)`` with the handle of what it wrote; the
   shared files a handle lists (incremental checkpoints) are referenced for n at once;
3. on the last ack, unless a shared file n reuses was deleted meanwhile (then n is
   declined, and its subtasks reuse nothing next time), the metadata is written
   atomically (temp file, fsync, rename): only now is n complete; older pending
   checkpoints are subsumed;
4. every task is told ``CheckpointCompleted(n)``; sinks commit there.
A checkpoint that times out or is declined is aborted: its directory is removed and
tasks are told ``CheckpointAborted(n)``; past ``tolerable_failures`` the attempt fails.

End of the job: when every task reported end of input, a final checkpoint is forced
(with checkpointing on) and, once complete, every task gets FINISH.

Savepoints take the same path, triggered by the user: between the last ack and step 3
the checkpoint's files are published as a self-contained savepoint directory
(:func:`~streamflow.savepoint.writer.write_savepoint`); if that fails, the checkpoint is
aborted without counting against ``tolerable_failures``. A savepoint waits while
``max_concurrent`` checkpoints are in flight instead of failing (the queue and the
savepoints in flight are kept by :class:`~streamflow.runtime.savepoints.SavepointQueue`). Stop with savepoint: the
sources stop reading at its barrier; once it completed and every task was notified (sinks
commit), every task gets STOP (ends without ``finish``: nothing after the barrier is
made visible) and the coordinator returns. If that savepoint is aborted, the sources read
on and the job keeps running.

(Over 400 lines: one loop and the steps it drives - trigger, complete, abort - which
share the pending checkpoints and their records; the decisions are in the pure classes
it feeds, the savepoint bookkeeping in :mod:`~streamflow.runtime.savepoints`.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine

from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta, StateHandle
from streamflow.checkpoint.pending import PendingCheckpoint
from streamflow.checkpoint.scheduler import CheckpointScheduler
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.config import CheckpointConfig
from streamflow.core.cancellation import finish_even_if_cancelled
from streamflow.core.clock import Clock
from streamflow.core.elements import Barrier
from streamflow.core.ids import CheckpointId, TaskKey
from streamflow.core.services import JobServices
from streamflow.errors import CheckpointAbortedError, CheckpointError, ConfigError, TooManyCheckpointFailuresError
from streamflow.runtime.checkpoint_stats import CheckpointRecord, CheckpointStats
from streamflow.runtime.checkpoint_timing import NotesCheckpointTimings, subtask_timings
from streamflow.runtime.mailbox import (
    FINISH,
    STOP,
    CheckpointAborted,
    CheckpointCompleted,
    Mailbox,
    TriggerCheckpoint,
)
from streamflow.runtime.savepoints import SavepointQueue, SavepointRequest
from streamflow.savepoint.writer import write_savepoint

log = logging.getLogger("streamflow.checkpoint")


@dataclass(frozen=True, slots=True)
class _Ack:
    checkpoint_id: int
    task: TaskKey
    handle: StateHandle | None


@dataclass(frozen=True, slots=True)
class _Decline:
    checkpoint_id: int
    task: TaskKey
    reason: str


@dataclass(frozen=True, slots=True)
class _EndOfInput:
    task_name: str


@dataclass(frozen=True, slots=True)
class _UserTrigger:
    done: asyncio.Future[Any]  # the checkpoint id, or the savepoint's Path
    savepoint: SavepointRequest | None = None


class CheckpointCoordinator:
    """Drives checkpoints for one attempt; ``run`` returns when the job has finished."""

    def __init__(
        self,
        *,
        job_name: str,
        config: CheckpointConfig | None,
        storage: CheckpointStorage | None,
        clock: Clock,
        start_id: int,
        parallelism: dict[str, int],
        max_parallelism: int,
        stats: CheckpointStats,
        services: JobServices | None = None,
    ) -> None:
        self.job_name = job_name
        self.services = services if services is not None else JobServices()  # the job run's
        self.config = config
        self.storage = storage
        self.clock = clock
        self._mailboxes: list[Mailbox] = []  # every task's
        self._source_mailboxes: list[Mailbox] = []
        self._timed: list[NotesCheckpointTimings] = []  # tasks whose checkpoint phases are kept
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self.stats = stats
        self._expected: set[TaskKey] = {(uid, i) for uid, p in parallelism.items() for i in range(p)}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: dict[int, PendingCheckpoint] = {}
        self._records: dict[int, CheckpointRecord] = {}
        self._waiters: dict[int, list[asyncio.Future[Any]]] = {}
        self._ended: set[str] = set()
        self._final_id: int | None = None
        self._final_done = False
        self._savepoints = SavepointQueue(job_name)
        self._closed = False
        self.stopped_with: Path | None = None  # set once a stop with savepoint completed
        self.scheduler = (
            CheckpointScheduler(config, start_id, started_at=clock.now()) if config is not None else None
        )

    def attach(
        self,
        mailboxes: Sequence[Mailbox],
        sources: Sequence[Mailbox],
        timed: Sequence[NotesCheckpointTimings] = (),
    ) -> None:
        """The mailboxes of this attempt's tasks, and among them those of its source
        tasks (the tasks are built after the coordinator, which they call); ``timed``:
        the tasks whose checkpoint phases go into the history when a checkpoint ends."""
        self._mailboxes = list(mailboxes)
        self._source_mailboxes = list(sources)
        self._timed = list(timed)

    def in_progress(self) -> list[tuple[CheckpointRecord, int, int]]:
        """Checkpoints triggered and not yet completed or aborted, oldest first, each with
        how many of its (operator uid, subtask) acks arrived and how many it expects
        (read by the metrics)."""
        return [
            (self._records[n], len(p.expected) - len(p.not_yet_acknowledged), len(p.expected))
            for n, p in sorted(self._pending.items())
            if n in self._records
        ]

    # -- called by tasks (same event loop) ------------------------------------------

    def acknowledge(self, checkpoint_id: int, task: TaskKey, handle: Any) -> None:
        self._events.put_nowait(_Ack(checkpoint_id, task, handle))

    def decline(self, checkpoint_id: int, task: TaskKey, reason: str) -> None:
        self._events.put_nowait(_Decline(checkpoint_id, task, reason))

    def end_of_input(self, task_name: str) -> None:
        self._events.put_nowait(_EndOfInput(task_name))

    async def trigger_checkpoint(self) -> int:
        """Trigger a checkpoint now (outside the interval); returns its id once complete.

        While ``max_concurrent`` checkpoints are in flight the request waits for a slot,
        like a savepoint.

        Raises:
            ConfigError: checkpointing is off.
            CheckpointError: the attempt is over, or the checkpoint was aborted.
        """
        self._check_open("trigger a checkpoint")
        self._check_checkpointing("trigger a checkpoint")
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_UserTrigger(done))
        return await done

    async def trigger_savepoint(self, target: Path, *, stop: bool = False) -> Path:
        """Take a savepoint under ``target``; returns its directory once it is complete.

        With ``stop`` the job ends after it (see the module docstring); the call returns
        when the savepoint is complete and the tasks were told to stop.

        Raises:
            ConfigError: checkpointing is off (a savepoint is a checkpoint).
            CheckpointError: the attempt is over, a stop is already under way, or the
                savepoint was aborted or could not be written.
        """
        self._check_open("take a savepoint")
        self._check_checkpointing("take a savepoint, which is a checkpoint")
        done: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_UserTrigger(done, SavepointRequest(Path(target), stop)))
        return await done

    def _check_checkpointing(self, what: str) -> None:
        if self.storage is None or self.scheduler is None:
            raise ConfigError(
                f"job {self.job_name!r} runs without checkpointing and cannot {what}: start it with "
                "checkpointing on (env.enable_checkpointing(...) or --checkpoint-interval)"
            )

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise CheckpointError(
                f"cannot {what}: this attempt of job {self.job_name!r} has ended (finished, failed or "
                "restarting); try again once the job runs"
            )

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            self._closed = True
            self._fail_waiters()

    def _fail_waiters(self) -> None:
        """Nobody may wait forever for a checkpoint of an attempt that is over."""
        waiting = [w for ws in self._waiters.values() for w in ws] + self._savepoints.drain_waiting()
        self._waiters.clear()
        for waiter in waiting:
            if not waiter.done():
                waiter.set_exception(
                    CheckpointAbortedError(
                        f"job {self.job_name!r}: the attempt ended (finished, failed or cancelled) before the "
                        "requested checkpoint or savepoint completed",
                        checkpoint_id=None,
                    )
                )

    async def _loop(self) -> None:
        while True:
            if self.stopped_with is not None:
                return
            now = self.clock.now()
            for pending in list(self._pending.values()):
                if pending.is_expired(now):
                    waiting = sorted(pending.not_yet_acknowledged)[:5]
                    await self._abort(
                        pending,
                        f"timed out after {now - pending.trigger_time:.3g}s (timeout "
                        f"{self.config.timeout if self.config else 0:g}s) waiting for {waiting}; "
                        "raise CheckpointConfig.timeout or relieve the backpressure",
                    )
            self._trigger_queued()
            if self._savepoints.stop_id is not None:
                pass  # stopping: no periodic or final checkpoint competes with the stop savepoint
            elif len(self._ended) == len(self._mailboxes):
                if self.scheduler is None or self._final_done:
                    self._post_all(FINISH)
                    return
                if self._final_id is None and self.scheduler.can_force_trigger():
                    self._final_id = self._trigger(force=True, final=True)
            elif self.scheduler is not None and self.scheduler.should_trigger(now):
                self._trigger(force=False)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the event does, and the coordinator of a failed attempt would
            # run on until its pending checkpoint timed out.
            try:
                async with asyncio.timeout(self._wait_time(now)):
                    event = await self._events.get()
            except TimeoutError:
                continue
            await self._handle(event)

    def _wait_time(self, now: float) -> float:
        wake = now + 1.0
        if self.scheduler is not None:
            due = self.scheduler.next_trigger_time(now)
            if due is not None:
                wake = min(wake, due)
        for pending in self._pending.values():
            wake = min(wake, pending.deadline)
        return max(0.001, wake - now)

    async def _handle(self, event: Any) -> None:
        kind = type(event)
        if kind is _Ack:
            pending = self._pending.get(event.checkpoint_id)
            if pending is None:
                return  # late ack of an aborted or subsumed checkpoint
            try:
                last = pending.acknowledge(event.task, event.handle)
            except CheckpointAbortedError:
                return
            if event.handle is not None:
                self._records[event.checkpoint_id].size += event.handle.written_for(event.checkpoint_id)
                if event.handle.shared and self.storage is not None:
                    self.storage.shared.references.add(event.checkpoint_id, [f.name for f in event.handle.shared])
            if last:
                await self._complete(pending)
        elif kind is _Decline:
            pending = self._pending.get(event.checkpoint_id)
            if pending is not None:
                await self._abort(pending, f"declined by {event.task}: {event.reason}")
        elif kind is _EndOfInput:
            self._ended.add(event.task_name)
        elif kind is _UserTrigger:
            self._savepoints.add(event.savepoint, event.done)
            self._trigger_queued()

    def _trigger_queued(self) -> None:
        """Start the queued user checkpoints and savepoints that ``max_concurrent`` lets
        through, oldest first."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        for request, done in self._savepoints.ready(scheduler.can_force_trigger):
            checkpoint_id = self._trigger(force=True, savepoint=request)
            self._waiters.setdefault(checkpoint_id, []).append(done)

    # -- steps ------------------------------------------------------------------------

    def _trigger(self, *, force: bool, final: bool = False, savepoint: SavepointRequest | None = None) -> int:
        assert self.scheduler is not None and self.config is not None
        now = self.clock.now()
        checkpoint_id = self.scheduler.force_trigger(now) if force else self.scheduler.on_triggered(now)
        pending = PendingCheckpoint(
            CheckpointId(checkpoint_id), now, self._expected, now + self.config.timeout
        )
        self._pending[checkpoint_id] = pending
        self._records[checkpoint_id] = CheckpointRecord(checkpoint_id, "in_progress", now, is_final=final)
        stop = savepoint is not None and savepoint.stop
        if savepoint is not None:
            self._savepoints.started(checkpoint_id, savepoint)
        barrier = Barrier(CheckpointId(checkpoint_id), now, is_savepoint=savepoint is not None)
        for mailbox in self._source_mailboxes:
            mailbox.post(TriggerCheckpoint(barrier, stop=stop))
        return checkpoint_id

    async def _complete(self, pending: PendingCheckpoint) -> None:
        assert self.storage is not None and self.scheduler is not None
        n = pending.checkpoint_id
        reused = [f.name for handle in pending.handles.values() if handle is not None for f in handle.shared]
        missing = self.storage.shared.references.missing(n, reused)
        if missing:
            await self._drop(
                pending, f"shared files it reuses were deleted meanwhile ({', '.join(missing[:3])}); its subtasks "
                "write every file anew for the next checkpoint", subsumed=False, shared_files_lost=True,
            )  # fmt: skip
            return
        pending.start_completing()
        operators: dict[str, dict[int, StateHandle]] = {}
        for (uid, subtask), handle in pending.handles.items():
            operators.setdefault(uid, {})[subtask] = handle
        metadata = CheckpointMetadata(
            job_name=self.job_name,
            checkpoint_id=n,
            timestamp=pending.trigger_time,
            operators={
                uid: OperatorStateMeta(
                    parallelism=self.parallelism[uid], max_parallelism=self.max_parallelism, subtasks=handles
                )
                for uid, handles in operators.items()
            },
        )
        started = time.perf_counter()
        savepoint = self._savepoints.in_flight(n)
        savepoint_path: Path | None = None
        if savepoint is not None:
            try:
                savepoint_path = await finish_even_if_cancelled(
                    self.services.offload.tracked(write_savepoint(self.storage, n, metadata, savepoint.target))
                )
            except CheckpointError as exc:
                await self._abort(pending, f"savepoint could not be written: {exc}")
                return
        # Finished even if the attempt is cancelled meanwhile, as the executor does with
        # state writes: a write cancelled inside aiofiles.open would leak the file, and
        # one that completes is as good as a crash right after its rename.
        # A full or failing disk here aborts checkpoint n like a state file that cannot be
        # written: the job goes on, within tolerable_failures.
        try:
            await finish_even_if_cancelled(self.services.offload.tracked(self.storage.write_metadata(n, metadata)))
        except OSError as exc:
            await self._abort(pending, f"its _metadata could not be written: {exc!r}")
            return
        self._savepoints.ended(n, completed=True)
        pending.complete()
        del self._pending[n]
        now = self.clock.now()
        self.scheduler.on_completed(n, now)
        record = self._records.pop(n)
        record.status = "completed"
        record.duration = now - pending.trigger_time
        record.savepoint = None if savepoint_path is None else str(savepoint_path)
        record.subtasks = subtask_timings(self._timed, n)
        self.stats.completed += 1
        self.stats.add(record)
        log.info(
            "checkpoint %d complete in %.3fs (%d bytes, metadata %.1f ms)%s",
            n, record.duration, record.size, (time.perf_counter() - started) * 1000,
            "" if savepoint_path is None else f"; savepoint {savepoint_path}",
        )
        self.services.faults.hit("after_completion", n)
        for older in [p for p in self._pending.values() if p.checkpoint_id < n]:
            await self._drop(older, "subsumed by checkpoint %d" % n, subsumed=True)
        self._post_all(CheckpointCompleted(n))
        if n == self._final_id:
            self._final_done = True
        if n == self._savepoints.stop_id:
            # After CheckpointCompleted(n) in every mailbox: sinks commit n, then stop.
            self._post_all(STOP)
            self.stopped_with = savepoint_path
            log.info("job %r stops with savepoint %s", self.job_name, savepoint_path)
        for waiter in self._waiters.pop(n, []):
            if not waiter.done():
                waiter.set_result(n if savepoint_path is None else savepoint_path)
        await self._clean_up(self.storage.enforce_retention(), f"retention after checkpoint {n}")

    def _post_all(self, mail: Any) -> None:
        for mailbox in self._mailboxes:
            mailbox.post(mail)

    async def _clean_up(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Deleting checkpoint directories is best effort: a task may still be writing its
        state of an aborted checkpoint into one (rmtree then fails with "directory not
        empty"). Whatever is left over, the next retention pass removes."""
        try:
            await self.services.offload.tracked(work)
        except OSError as exc:
            log.warning("checkpoint clean-up (%s) failed, retried at the next retention: %r", what, exc)

    async def _abort(self, pending: PendingCheckpoint, reason: str) -> None:
        assert self.scheduler is not None
        too_many = await self._drop(pending, reason, subsumed=False)
        if too_many:
            raise TooManyCheckpointFailuresError(
                f"{self.scheduler.consecutive_failures} consecutive checkpoints failed, more than "
                f"tolerable_failures={self.config.tolerable_failures if self.config else 0}; last: "
                f"checkpoint {pending.checkpoint_id} {reason}. Raise CheckpointConfig.tolerable_failures "
                "or timeout, or fix the cause",
                checkpoint_id=pending.checkpoint_id,
            )

    async def _drop(
        self, pending: PendingCheckpoint, reason: str, *, subsumed: bool, shared_files_lost: bool = False
    ) -> bool:
        """Abort ``pending``, clean up and tell the tasks; True when failures are past
        tolerance. A checkpoint declined for ``shared_files_lost`` is a race between
        retention and reuse, not a failure: it is not counted against tolerance."""
        assert self.scheduler is not None and self.storage is not None
        n = pending.checkpoint_id
        pending.abort(reason)
        del self._pending[n]
        now = self.clock.now()
        too_many = False
        stopping = n == self._savepoints.stop_id
        savepoint = self._savepoints.ended(n, completed=False)  # the sources read on (CheckpointAborted below)
        if stopping:
            log.warning("stop with savepoint failed, job %r keeps running", self.job_name)
        if subsumed:
            self.scheduler.on_subsumed(n)
        elif savepoint is not None or shared_files_lost:
            # A failed savepoint fails that request, never the job (as in Flink): it is
            # not counted against tolerable_failures.
            self.scheduler.on_subsumed(n)
            self.stats.failed += 1
            log.warning("%s (checkpoint %d) aborted: %s", "savepoint" if savepoint else "checkpoint", n, reason)
        else:
            too_many = self.scheduler.on_aborted(n, now)
            self.stats.failed += 1
            log.warning("checkpoint %d aborted: %s", n, reason)
        record = self._records.pop(n)
        record.status = "subsumed" if subsumed else "aborted"
        record.reason = reason
        record.duration = now - pending.trigger_time
        record.subtasks = subtask_timings(self._timed, n)
        self.stats.add(record)
        if n == self._final_id:
            self._final_id = None  # retried by the loop
        await self._clean_up(self.storage.discard(n), f"removing aborted checkpoint {n}")
        self._post_all(CheckpointAborted(n, shared_files_lost=shared_files_lost))
        for waiter in self._waiters.pop(n, []):
            if not waiter.done():
                waiter.set_exception(CheckpointAbortedError(f"checkpoint {n} aborted: {reason}", checkpoint_id=n))
        return too_many
