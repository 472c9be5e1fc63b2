"""The task at the head of a source's chain: polls a source reader, not an input gate.

Between polls it serves its mailbox like any task (see :mod:`streamflow.runtime.task`),
so a checkpoint trigger is handled between two batches: the reader's split states are
snapshotted and barrier n is emitted in order with the records. Stop with savepoint: a
trigger that says ``stop`` suspends reading after its barrier; if that savepoint is
aborted, reading resumes.

Event time, with a ``WatermarkStrategy`` given to ``env.from_source``: a
:class:`~streamflow.eventtime.SplitWatermarks` tracks each split the reader holds (it
asks ``active_splits()`` at open and at every periodic emit, when the reader has it),
stamps every batch (what it answers before the batch is forwarded before it, what it
answers after, after it), and is asked for the periodic watermark every
``strategy.emit_interval`` seconds. A subtask without splits announces IDLE at once, so
it never holds back the operators after it. Records whose timestamp cannot be had go to
the source's error policy. Without a strategy, records keep the timestamps the reader
gave them and the reader's own ``batch.watermark`` is forwarded, and so is its
``watermark_status`` when it has one (an exchange reader whose writers are all idle):
ACTIVE before a batch's records, IDLE after its watermark, each when it changed. Either
way, bounded input ends with the final watermark (+inf).

Idleness is timed on the subtask's input activity, not the wall clock: the time spent
handing a batch downstream (the operators chained to the source, a full output channel)
does not count, as Flink pauses its idleness timer under backpressure. Otherwise a split
whose records wait behind a slow batch of another split would turn idle, and its records
would then come late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from streamflow.api.errors_policy import FAIL, ErrorPolicy
from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.core.elements import Batch, SourceRef
from streamflow.errors import DeserializationError
from streamflow.eventtime.splits import SplitWatermarks
from streamflow.eventtime.status import NO_EMISSIONS, Emissions, WatermarkStatus
from streamflow.eventtime.strategy import WatermarkStrategy
from streamflow.runtime.channel import TIMEOUT
from streamflow.runtime.mailbox import CheckpointAborted, CheckpointCompleted, TriggerCheckpoint
from streamflow.runtime.operators.base import OperatorMetrics, short_repr
from streamflow.runtime.record_errors import RecordErrorHandler
from streamflow.runtime.task import Task
from streamflow.runtime.timestamping import drop_failed, timestamp_error
from streamflow.state.operator import redistribute_split

if TYPE_CHECKING:
    from streamflow.api.connector import SourceBatch, SourceReader

__all__ = ["SourceTask"]

log = logging.getLogger("streamflow.task")

_ACTIVE = WatermarkStatus.ACTIVE
_IDLE = WatermarkStatus.IDLE

_UNKNOWN_SPLITS = "<splits not known yet>"
"""Stands for the splits of a reader without ``active_splits()`` until its first batch."""


class SourceTask(Task):
    """Polls a source reader and pushes its batches through the chain behind it.

    After each batch's records: records the reader could not decode go to the source's
    error policy (``batch.failures``), then the batch's event time follows (see the
    module docstring).
    """

    def __init__(
        self,
        *,
        source_uid: str,
        reader_factory: Callable[[list[Any] | None, list[Any] | None], SourceReader],
        parallelism: int,
        global_subtask: int | None = None,
        batch_size: int,
        poll_wait: float,
        error_policy: ErrorPolicy = FAIL,
        watermark_strategy: WatermarkStrategy | None = None,
        **kwargs: Any,
    ) -> None:
        self.source_uid = source_uid
        super().__init__(**kwargs)
        # Restored splits are dealt over the job's subtasks of every worker: the global
        # index and parallelism (the same as the local ones in a one-process job).
        self.parallelism = parallelism
        self.global_subtask = self.subtask if global_subtask is None else global_subtask
        self._reader_factory = reader_factory
        self.reader: SourceReader | None = None
        self._batch_size = batch_size
        self._poll_wait = poll_wait
        self.source_metrics = OperatorMetrics()  # records_skipped / records_dead_lettered
        self.errors = RecordErrorHandler(
            error_policy, owner="source", uid=source_uid, subtask=self.global_subtask, metrics=self.source_metrics,
            logger=log,
        )
        self.records_out = 0
        self.exhausted = False
        self.suspended_at: int | None = None  # checkpoint id of a stop with savepoint in flight
        self.split_watermarks = SplitWatermarks(watermark_strategy) if watermark_strategy is not None else None
        self._next_emit = float("inf")
        self._handing_down = 0.0
        """Seconds spent handing batches downstream, which idleness does not count."""

    def _activity_now(self) -> float:
        """The clock of idleness: the task's time less what it spent handing batches down."""
        return self.clock.now() - self._handing_down

    async def _open(self) -> None:
        restored = self._restored_for(self.source_uid)
        splits = everything = None
        if restored is not None:
            lists = [s.source or [] for s in restored]
            splits = redistribute_split(lists, self.parallelism)[self.global_subtask]
            everything = [split for old in lists for split in old]
        self.reader = self._reader_factory(splits, everything)
        await self.reader.open()
        await super()._open()

    def _state_owners(self) -> list[str]:
        return [self.source_uid, *super()._state_owners()]

    def _wire(self) -> None:
        super()._wire()
        self._emit = self.operators[0].process if self.operators else self._network_emit()
        self._dead_letter = self.side_outputs.get(self.source_uid)

    async def _loop(self) -> None:
        gate = self.gate
        reader = self.reader
        assert reader is not None
        offload = self.offload
        origin_cache: dict[str, SourceRef] = {}
        # A reader's own idleness counts only where its own watermarks do: without a strategy.
        reads_status = self.split_watermarks is None and hasattr(reader, "watermark_status")
        if self.split_watermarks is not None:
            await self._start_event_time()
        while not self._finished:
            reading = not self.exhausted and self.suspended_at is None
            timeout = 0.0 if reading else self._timer_timeout()
            index, mail = await gate.next(timeout)
            if mail is not TIMEOUT:
                await self._on_mail(mail)
                continue
            await self._fire_timers()
            if not reading:
                continue
            polled = time.perf_counter()
            batch = await reader.poll(self._batch_size, self._poll_wait)
            status = reader.watermark_status if reads_status else None  # type: ignore[attr-defined]
            if status is _ACTIVE and self.input_status is _IDLE:
                await self._forward_input((_ACTIVE,))  # before the records of the writers back
            if batch is not None and not batch.records:
                self.stats.empty_poll_seconds += time.perf_counter() - polled
            if batch is None:
                self.exhausted = True
                # As in Flink, bounded input ends with the final watermark: every pending
                # event-time timer fires before end_input (processing-time timers do not).
                await self._final_watermark()
                await self._end_of_input()
            else:
                if batch.records:
                    origin = origin_cache.get(batch.split)
                    if origin is None:
                        origin = origin_cache[batch.split] = SourceRef(self.source_uid, self.global_subtask, batch.split)
                    self.records_out += len(batch.records)
                    if self.split_watermarks is None:
                        await self._emit(Batch(batch.records, batch.positions, origin, timestamps=batch.timestamps))
                    else:
                        handing = self.clock.now()
                        await self._emit_stamped(batch, origin)
                        self._handing_down += self.clock.now() - handing
                if batch.failures:
                    await self._on_failures(batch)
                if self.split_watermarks is not None:
                    if self.clock.now() >= self._next_emit:
                        await self._periodic_emit()
                elif batch.watermark is not None and batch.watermark > self.input_watermark:
                    await self._forward_input((batch.watermark,))
                if status is _IDLE and self.input_status is _ACTIVE:
                    await self._forward_input((_IDLE,))
            # A reader with data at hand and a chain that never blocks would otherwise run
            # the whole input without yielding: no checkpoint trigger, cancel or other task,
            # and no worker thread (see offload) would get the GIL.
            await offload.pause()

    # -- event time -------------------------------------------------------------------

    def _reader_splits(self) -> list[str] | None:
        active_splits = getattr(self.reader, "active_splits", None)
        return None if active_splits is None else list(active_splits())

    async def _start_event_time(self) -> None:
        """Track the reader's splits from the start; announce IDLE without any."""
        splits = self.split_watermarks
        assert splits is not None  # only with a watermark strategy
        now = self._activity_now()
        names = self._reader_splits()
        for name in [_UNKNOWN_SPLITS] if names is None else names:
            splits.add_split(name, now)
        if splits.status is WatermarkStatus.IDLE:
            await self._forward_input((WatermarkStatus.IDLE,))
        self._next_emit = self.clock.now() + splits.strategy.emit_interval

    async def _periodic_emit(self) -> None:
        """The periodic step: splits found or finished since, then the generators' watermarks."""
        splits = self.split_watermarks
        assert splits is not None  # only with a watermark strategy
        now = self._activity_now()
        names = self._reader_splits()
        emissions: Emissions = NO_EMISSIONS
        if names is not None:
            held = set(splits.splits)
            for name in names:
                if name not in held:
                    emissions += splits.add_split(name, now)
            for gone in held.difference(names):
                emissions += splits.finish_split(gone)
        emissions += splits.on_periodic_emit(now)
        await self._forward_input(emissions)
        self._next_emit = self.clock.now() + splits.strategy.emit_interval

    async def _emit_stamped(self, batch: SourceBatch, origin: SourceRef) -> None:
        """The records with the timestamps the strategy gave them, between what their
        split's watermark answered before and after them."""
        splits = self.split_watermarks
        assert splits is not None  # only with a watermark strategy
        stamped = splits.stamp(batch.split, batch.records, batch.timestamps, self._activity_now())
        before = stamped.before
        if batch.split != _UNKNOWN_SPLITS and _UNKNOWN_SPLITS in splits.splits:
            before += splits.finish_split(_UNKNOWN_SPLITS)  # the reader's first batch: its splits show
        await self._forward_input(before)
        records, positions = batch.records, batch.positions
        if stamped.failures:
            errors = self.errors
            for failure in stamped.failures:
                record = records[failure.index]
                where = origin.at(positions[failure.index]) if positions is not None else None
                if not errors.takes(failure.error):
                    raise timestamp_error(
                        "source", self.source_uid, self.subtask, record, where, failure.error
                    ) from failure.error
                errors.set_aside(failure.error, record, where, f"the record at {where}")
            await errors.flush(self._dead_letter.emit if self._dead_letter is not None else None)
            records, positions = drop_failed(records, positions, stamped.failures)
        if records:
            timestamps: list[float | None] = list(stamped.timestamps)
            await self._emit(Batch(records, positions, origin, timestamps=timestamps))
        await self._forward_input(stamped.after)

    async def _on_failures(self, batch: SourceBatch) -> None:
        """Apply the source's error policy to the records the reader could not decode."""
        errors = self.errors
        origin = SourceRef(self.source_uid, self.global_subtask, batch.split)
        for failure in batch.failures or ():
            where = origin.at(failure.position)
            error = failure.error
            if not errors.takes(error):
                raise DeserializationError(
                    f"source {self.source_uid!r} (subtask {self.global_subtask}) could not deserialize the record at "
                    f"{where}: {type(error).__name__}: {error}. The job attempt fails and the restart strategy "
                    "decides; fix the producer or the deserializer, or route bad records aside with "
                    ".with_error_policy(ErrorPolicy.skip()) or ErrorPolicy.dead_letter(sink) on the source.",
                    operator=self.source_uid,
                    subtask=self.global_subtask,
                    position=where,
                    record=short_repr(failure.record),
                ) from error
            errors.set_aside(error, failure.record, where, f"the record at {where}")
        await errors.flush(self._dead_letter.emit if self._dead_letter is not None else None)

    async def _on_mail(self, mail: Any) -> None:
        if type(mail) is TriggerCheckpoint:
            barrier = mail.barrier
            assert self.reader is not None
            if mail.stop:
                self.suspended_at = barrier.checkpoint_id
            splits = self.reader.snapshot_splits(barrier.checkpoint_id)
            await self._checkpoint(barrier, {self.source_uid: OperatorSnapshot(source=list(splits))})
            self.services.faults.hit("after_barrier", barrier.checkpoint_id)
            return
        if type(mail) is CheckpointCompleted and self.reader is not None:
            await self.reader.notify_checkpoint_complete(mail.checkpoint_id)
        elif type(mail) is CheckpointAborted and mail.checkpoint_id == self.suspended_at:
            log.info("task %s reads on: the stop with savepoint (checkpoint %d) was aborted", self.name, self.suspended_at)
            self.suspended_at = None
        await super()._on_mail(mail)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self.reader is not None:
                try:
                    await asyncio.shield(self.reader.close())
                except Exception as exc:  # noqa: BLE001 - the job's own outcome wins
                    log.warning("task %s: closing the source reader raised %r", self.name, exc)
