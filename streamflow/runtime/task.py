"""Tasks: one asyncio task per chain per parallel instance.

A :class:`Task` reads its input gate, pushes batches through its chain of operators and
writes the output to its record writers. A :class:`SourceTask` polls a source reader
instead of a gate. Both serve their mailbox (checkpoint triggers and notifications from
the coordinator) between batches and nowhere else, so no operator is ever called
concurrently with itself.

Checkpoint n in a task, in order:
1. barrier n aligned (every input delivered it; a source: triggered by the coordinator);
2. barrier n forwarded to every output channel;
3. every operator's state copied synchronously (encoded to bytes) - a sink pre-commits;
4. the bytes written to checkpoint storage in the background, then acked per operator.

End of input: a source reader that is exhausted sends END_OF_INPUT; a task whose every
input ended calls ``end_input`` on its operators (they may still emit), forwards
END_OF_INPUT and reports to the coordinator. Channels stay open: the final checkpoint's
barriers still travel them. When that checkpoint completed (or at once without
checkpointing) the coordinator posts FINISH; the task finishes its operators (a sink
makes everything visible) and ends.

Stop with savepoint: a source task whose trigger says ``stop`` reads nothing after that
barrier (no end of input, no final watermark: timers and windows stay in the state). If
the savepoint completes, every task gets STOP after the completion notice and ends
without ``finish`` (nothing written after the barrier becomes visible; ``close`` aborts
it). If it is aborted, the source reads on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Protocol

from streamflow.api.errors_policy import FAIL, ErrorAction, ErrorPolicy
from streamflow.checkpoint.serde import encode
from streamflow.config import CheckpointingMode
from streamflow.errors import DeserializationError
from streamflow.runtime import faults, offload
from streamflow.runtime.alignment import BarrierAligner
from streamflow.runtime.checkpoint_timing import CheckpointTimings
from streamflow.runtime.channel import MAIL, TIMEOUT, InputGate
from streamflow.runtime.clock import Clock
from streamflow.runtime.elements import END_OF_INPUT, Barrier, Batch, CheckpointId, EndOfInput, SourceRef, Watermark
from streamflow.runtime.operators import Emit, OperatorMetrics, StreamOperator, short_repr
from streamflow.runtime.partitioners import RecordWriter
from streamflow.state.operator import redistribute_split

if TYPE_CHECKING:
    from streamflow.api.connector import SourceBatch, SourceReader
    from streamflow.checkpoint.storage import CheckpointStorage

log = logging.getLogger("streamflow.task")

TaskKey = tuple[str, int]  # (operator uid, subtask)


@dataclass(frozen=True, slots=True)
class TriggerCheckpoint:
    barrier: Barrier
    stop: bool = False  # stop with savepoint: the source reads nothing after this barrier


@dataclass(frozen=True, slots=True)
class CheckpointCompleted:
    checkpoint_id: CheckpointId


@dataclass(frozen=True, slots=True)
class CheckpointAborted:
    checkpoint_id: CheckpointId


class _Finish:
    __slots__ = ()


FINISH = _Finish()


class _Stop:
    __slots__ = ()


STOP = _Stop()


class CoordinatorLink(Protocol):
    """What a task calls on the coordinator (implemented by CheckpointCoordinator)."""

    def acknowledge(self, checkpoint_id: int, task: TaskKey, handle: Any) -> None: ...

    def decline(self, checkpoint_id: int, task: TaskKey, reason: str) -> None: ...

    def end_of_input(self, task_name: str) -> None: ...


class TaskStats:
    """Busy / idle / backpressured seconds of one task, derived when read."""

    __slots__ = ("started", "ended", "empty_poll_seconds")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.ended: float | None = None
        # a source's polls that returned no record: it waited for input, so it was idle
        self.empty_poll_seconds = 0.0


class Task:
    """Runs one chain of operators on one parallel instance."""

    def __init__(
        self,
        *,
        name: str,
        subtask: int,
        operators: list[StreamOperator],
        gate: InputGate,
        outputs: list[RecordWriter],
        side_outputs: dict[str, RecordWriter],
        mode: CheckpointingMode,
        coordinator: CoordinatorLink,
        storage: CheckpointStorage | None,
        clock: Clock,
        spawn: Callable[[Coroutine[Any, Any, None]], Any],
        restored: dict[str, list[dict[str, Any]]] | None,
        channel_inputs: list[int] | None = None,
    ) -> None:
        self.name = name
        self.subtask = subtask
        self.operators = operators
        self.gate = gate
        self.outputs = outputs
        self.side_outputs = side_outputs
        self.coordinator = coordinator
        self.storage = storage
        self.clock = clock
        self._spawn = spawn
        self._restored = restored
        self.aligner = BarrierAligner(len(gate.channels), mode)
        self.stats = TaskStats()
        self.checkpoint_timings = CheckpointTimings()  # phases of recent checkpoints (metrics)
        self._finished = False
        self._stopped = False
        self._ended_inputs: set[int] = set()
        self._watermarks = [float("-inf")] * len(gate.channels)
        self._watermark = float("-inf")
        # channel_inputs[i]: which input of the head operator gate channel i feeds (a
        # broadcast operator has two); None: all feed input 0.
        self._channel_inputs = channel_inputs if channel_inputs is not None else [0] * len(gate.channels)
        self._wire()

    # -- set-up -----------------------------------------------------------------------

    def _wire(self) -> None:
        ops = self.operators
        for op, following in zip(ops, ops[1:]):
            op.emit = following.process
        if ops:
            ops[-1].emit = self._network_emit()
        for op in ops:
            writer = self.side_outputs.get(op.uid)
            if writer is not None:
                op.dead_letter = writer.emit

    def _network_emit(self) -> Callable[[Batch], Coroutine[Any, Any, None]]:
        outputs = self.outputs
        if len(outputs) == 1:
            return outputs[0].emit

        async def emit_all(batch: Batch) -> None:
            for writer in outputs:
                await writer.emit(batch)

        return emit_all

    def _restored_for(self, uid: str) -> list[dict[str, Any]] | None:
        if self._restored is None:
            return None
        return self._restored.get(uid, [])

    async def _open(self) -> None:
        for op in self.operators:
            await op.open(self._restored_for(op.uid))

    @property
    def all_writers(self) -> list[RecordWriter]:
        return [*self.outputs, *self.side_outputs.values()]

    def output_blocked_seconds(self) -> float:
        return sum(c.current_blocked_seconds() for w in self.all_writers for c in w.channels)

    @property
    def input_watermark(self) -> float:
        """The lowest watermark over this task's inputs (a source: its own), -inf before any."""
        return min(self._watermarks) if self._watermarks else self._watermark

    @property
    def output_watermark(self) -> float:
        """The last watermark this task forwarded, -inf before any."""
        return self._watermark

    # -- main loop --------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._open()
            await self._loop()
            if not self._stopped:  # stopped with a savepoint: nothing after it is made visible
                for op in self.operators:
                    await op.finish()
        except BaseException:
            # A failed or cancelled attempt still releases connections and threads (an
            # open database handle would keep the process alive); errors while closing
            # must not hide the failure that got us here.
            await self._close_quietly()
            raise
        finally:
            self.stats.ended = time.perf_counter()
        for op in self.operators:
            await op.close()

    async def _close_quietly(self) -> None:
        for op in self.operators:
            try:
                await asyncio.shield(op.close())
            except BaseException as exc:  # noqa: BLE001 - best effort, the original error wins
                log.debug("task %s: closing %s after a failure raised %r", self.name, op.uid, exc)

    def _timer_timeout(self) -> float | None:
        deadline = None
        for op in self.operators:
            t = op.next_timer()
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        return None if deadline is None else max(0.0, deadline - self.clock.now())

    async def _fire_timers(self) -> None:
        now = self.clock.now()
        for op in self.operators:
            t = op.next_timer()
            if t is not None and t <= now:
                await op.on_processing_time(now)

    def _input_handlers(self) -> list[Emit]:
        """The head operator's handler for each gate channel, by the channel's input."""
        head = self.operators[0]
        handlers = head.input_handlers()
        wanted = max(self._channel_inputs, default=0)
        if wanted >= len(handlers):
            raise TypeError(f"task {self.name}: operator {head.uid!r} has {len(handlers)} input(s), not {wanted + 1}")
        return [handlers[i] for i in self._channel_inputs]

    async def _loop(self) -> None:
        gate = self.gate
        handlers = self._input_handlers()  # per channel: one list index per batch
        while not self._finished:
            index, element = await gate.next(self._timer_timeout())
            if index == MAIL:
                if element is TIMEOUT:
                    await self._fire_timers()
                else:
                    await self._on_mail(element)
                continue
            kind = type(element)
            if kind is Batch:
                await handlers[index](element)
                if offload.in_flight():
                    await offload.pause()
            elif kind is Barrier:
                await self._on_barrier(index, element)
            elif kind is Watermark:
                await self._on_watermark(index, element)
            elif kind is EndOfInput:
                self._ended_inputs.add(index)
                if len(self._ended_inputs) == len(gate.channels):
                    await self._end_of_input()

    async def _on_barrier(self, channel: int, barrier: Barrier) -> None:
        self.checkpoint_timings.barrier_arrived(barrier.checkpoint_id, barrier.timestamp, self.clock.now())
        step = self.aligner.on_barrier(channel, barrier)
        if step.abandoned is not None:
            self._decline(step.abandoned, "a newer barrier overtook its alignment")
            # inputs held for the abandoned checkpoint must deliver the newer barrier too
            self.gate.release_all()
        if step.hold:
            self.gate.hold(channel)
        if step.trigger is not None:
            self.gate.release_all()
            await self._checkpoint(step.trigger, {})

    async def _on_watermark(self, channel: int, watermark: Watermark) -> None:
        self._watermarks[channel] = max(self._watermarks[channel], watermark.timestamp)
        await self._advance_watermark(min(self._watermarks))

    async def _advance_watermark(self, low: float) -> None:
        """Event time moved to ``low``: fire event-time timers, then forward it."""
        if low > self._watermark:
            self._watermark = low
            current = Watermark(low)
            for op in self.operators:
                await op.on_watermark(current)
            for writer in self.all_writers:
                await writer.broadcast_control(current)

    async def _end_of_input(self) -> None:
        for op in self.operators:
            await op.end_input()
        for writer in self.all_writers:
            await writer.broadcast_control(END_OF_INPUT)
        self.coordinator.end_of_input(self.name)

    async def _on_mail(self, mail: Any) -> None:
        kind = type(mail)
        if kind is CheckpointCompleted:
            for op in self.operators:
                await offload.tracked(op.notify_checkpoint_complete(mail.checkpoint_id))
        elif kind is CheckpointAborted:
            if self.aligner.abort(mail.checkpoint_id):
                self.gate.release_all()
            for op in self.operators:
                await op.notify_checkpoint_aborted(mail.checkpoint_id)
        elif mail is FINISH:
            self._finished = True
        elif mail is STOP:
            self._finished = self._stopped = True
        else:
            raise TypeError(f"task {self.name} got unexpected mail {mail!r}")

    # -- checkpoints ------------------------------------------------------------------

    def _decline(self, checkpoint_id: int, reason: str) -> None:
        """One decline aborts the whole checkpoint; it is sent for the first operator."""
        self.coordinator.decline(checkpoint_id, (self._state_owners()[0], self.subtask), reason)

    def _state_owners(self) -> list[str]:
        return [op.uid for op in self.operators]

    async def _checkpoint(self, barrier: Barrier, extra: dict[str, Any]) -> None:
        """Steps 2-4 of the docstring: forward, copy synchronously, write in background."""
        n = barrier.checkpoint_id
        self.checkpoint_timings.aligned(n, barrier.timestamp, self.clock.now())
        for writer in self.all_writers:
            await writer.broadcast_control(barrier)
        copy_started = time.perf_counter()
        blobs: dict[str, bytes | None] = {}
        for uid, state in extra.items():
            blobs[uid] = encode(state)
        for op in self.operators:
            state = await offload.tracked(op.snapshot(n))
            blobs[op.uid] = None if state is None else encode(state)
        self.checkpoint_timings.synced(n, copy_started)
        self._spawn(self._write_and_ack(n, blobs))

    async def _write_and_ack(self, checkpoint_id: CheckpointId, blobs: dict[str, bytes | None]) -> None:
        try:
            handles = {}
            for uid, data in blobs.items():
                handles[uid] = (
                    None
                    if data is None or self.storage is None
                    else await offload.tracked(self.storage.write_state(checkpoint_id, f"{uid}-{self.subtask}", data))
                )
        except Exception as exc:  # a failed write fails the checkpoint, not the job
            log.warning("task %s could not write state of checkpoint %d: %r", self.name, checkpoint_id, exc)
            self._decline(checkpoint_id, f"state write failed: {exc!r}")
            return
        self.checkpoint_timings.written(checkpoint_id, sum(h.size for h in handles.values() if h is not None))
        for uid, handle in handles.items():
            self.coordinator.acknowledge(checkpoint_id, (uid, self.subtask), handle)


class SourceTask(Task):
    """Polls a source reader and pushes its batches through the chain behind it.

    After each batch's records: records the reader could not decode go to the source's
    error policy (``batch.failures``), then the reader's watermark is forwarded when it
    advanced (``batch.watermark``).
    """

    def __init__(
        self,
        *,
        source_uid: str,
        reader_factory: Callable[[list[Any] | None, list[Any] | None], SourceReader],
        parallelism: int,
        batch_size: int,
        poll_wait: float,
        error_policy: ErrorPolicy = FAIL,
        **kwargs: Any,
    ) -> None:
        self.source_uid = source_uid
        super().__init__(**kwargs)
        self.parallelism = parallelism
        self._reader_factory = reader_factory
        self.reader: SourceReader | None = None
        self._batch_size = batch_size
        self._poll_wait = poll_wait
        self._error_policy = error_policy
        self.source_metrics = OperatorMetrics()  # records_skipped / records_dead_lettered
        self.records_out = 0
        self.exhausted = False
        self.suspended_at: int | None = None  # checkpoint id of a stop with savepoint in flight

    async def _open(self) -> None:
        restored = self._restored_for(self.source_uid)
        splits = everything = None
        if restored is not None:
            lists = [s.get("source") or [] for s in restored]
            splits = redistribute_split(lists, self.parallelism)[self.subtask]
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
        emit = self._emit
        origin_cache: dict[str, SourceRef] = {}
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
            if batch is not None and not batch.records:
                self.stats.empty_poll_seconds += time.perf_counter() - polled
            if batch is None:
                self.exhausted = True
                # As in Flink, bounded input ends with the final watermark: every pending
                # event-time timer fires before end_input (processing-time timers do not).
                await self._advance_watermark(float("inf"))
                await self._end_of_input()
            else:
                if batch.records:
                    origin = origin_cache.get(batch.split)
                    if origin is None:
                        origin = origin_cache[batch.split] = SourceRef(self.source_uid, self.subtask, batch.split)
                    self.records_out += len(batch.records)
                    await emit(Batch(batch.records, batch.positions, origin))
                if batch.failures:
                    await self._on_failures(batch)
                if batch.watermark is not None and batch.watermark > self._watermark:
                    await self._advance_watermark(batch.watermark)
            # A reader with data at hand and a chain that never blocks would otherwise run
            # the whole input without yielding: no checkpoint trigger, cancel or other task,
            # and no worker thread (see offload) would get the GIL.
            await offload.pause()

    async def _on_failures(self, batch: SourceBatch) -> None:
        """Apply the source's error policy to the records the reader could not decode."""
        policy = self._error_policy
        origin = SourceRef(self.source_uid, self.subtask, batch.split)
        dead: list[Any] = []
        for failure in batch.failures or ():
            where = origin.at(failure.position)
            error = failure.error
            if policy.action is ErrorAction.FAIL or not isinstance(error, policy.on):
                raise DeserializationError(
                    f"source {self.source_uid!r} (subtask {self.subtask}) could not deserialize the record at "
                    f"{where}: {type(error).__name__}: {error}. The job attempt fails and the restart strategy "
                    "decides; fix the producer or the deserializer, or route bad records aside with "
                    ".with_error_policy(ErrorPolicy.skip()) or ErrorPolicy.dead_letter(sink) on the source.",
                    operator=self.source_uid,
                    subtask=self.subtask,
                    position=where,
                    record=short_repr(failure.record),
                ) from error
            if policy.action is ErrorAction.SKIP:
                self.source_metrics.records_skipped += 1
                skipped = self.source_metrics.records_skipped
                if skipped <= 10 or skipped % 1000 == 0:
                    log.warning(
                        "source %r (subtask %d) skipped the record at %s: %s: %s (%d skipped so far)",
                        self.source_uid, self.subtask, where, type(error).__name__, error, skipped,
                    )
                continue
            self.source_metrics.records_dead_lettered += 1
            dead.append(
                {
                    "operator": self.source_uid,
                    "subtask": self.subtask,
                    "position": where,
                    "error": f"{type(error).__name__}: {error}",
                    "record": failure.record,
                }
            )
        if dead and self._dead_letter is not None:
            await self._dead_letter.emit(Batch(dead))

    async def _on_mail(self, mail: Any) -> None:
        if type(mail) is TriggerCheckpoint:
            barrier = mail.barrier
            assert self.reader is not None
            if mail.stop:
                self.suspended_at = barrier.checkpoint_id
            splits = self.reader.snapshot_splits(barrier.checkpoint_id)
            await self._checkpoint(barrier, {self.source_uid: {"source": list(splits)}})
            faults.hit("after_barrier", barrier.checkpoint_id)
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
