"""Tasks: one asyncio task per chain per parallel instance.

(About 560 lines, over the usual size: the loop and the steps of a checkpoint in it,
aligned and unaligned, are one state machine over the same fields - the gate, the
aligner, the recorder of channel state, the writers - and read best in one place.)

A :class:`Task` reads its input gate, pushes batches through its chain of operators and
writes the output to its record writers. A
:class:`~streamflow.runtime.source_task.SourceTask` polls a source reader instead of a
gate. Both serve their mailbox (checkpoint triggers and notifications from
the coordinator, wake-ups from their own operators' background work) between batches
and nowhere else, so no operator is ever called concurrently with itself.

Checkpoint n in a task, in order:
1. barrier n aligned (every input delivered it; a source: triggered by the coordinator);
2. barrier n forwarded to every output channel;
3. every operator's state copied synchronously (pickled to bytes) - a sink pre-commits;
   state that cannot be serialized declines checkpoint n (nothing is written); a
   keyed part may leave work for the background (a RocksDB backend's snapshot files);
4. in the background: that work (files into the job's ``shared/`` folder, or a
   canonical snapshot read from them), then the bytes written to checkpoint storage,
   then acked per operator; a failure declines checkpoint n, the job goes on.

Event time: a task combines the watermarks and WatermarkStatus elements of its input
channels (a :class:`~streamflow.eventtime.WatermarkCombiner` over the channels, Flink's
StatusWatermarkValve: the minimum over the active channels; an idle channel holds
nothing back; all idle makes the task idle) and hands what changes to its head
operator; each operator of the chain forwards it to the next (see
:mod:`streamflow.runtime.operators.base`), the tail to every output channel.

End of input: a source reader that is exhausted sends the final watermark (+inf) and
END_OF_INPUT; a task whose every input ended calls ``end_input`` on its operators (they
may still emit), forwards END_OF_INPUT and reports to the coordinator. Channels stay
open: the final checkpoint's barriers still travel them. When that checkpoint completed
(or at once without checkpointing) the coordinator posts FINISH; the task finishes its
operators (a sink makes everything visible) and ends.

Unaligned checkpoints (``CheckpointConfig.unaligned``): a task takes barrier n out of its
input channel as soon as it is queued there (after ``aligned_timeout`` since the trigger,
when one is set), past the elements ahead of it, and at the first barrier n snapshots at
once and puts barrier n on its outputs without waiting for space. What it overtook and
what it reads on the channels whose barrier n is still to come is recorded
(:class:`~streamflow.runtime.channel_state.InFlightRecorder`); once the last barrier n
came, that channel state joins the head operator's snapshot and the task acks.

Stop with savepoint: a source task whose trigger says ``stop`` reads nothing after that
barrier (no end of input, no final watermark: timers and windows stay in the state). If
the savepoint completes, every task gets STOP after the completion notice and ends
without ``finish`` (nothing written after the barrier becomes visible; ``close`` aborts
it). If it is aborted, the source reads on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from streamflow.checkpoint.serde import decode, encode
from streamflow.checkpoint.snapshot import OperatorSnapshot, PendingKeyedState, SnapshotType
from streamflow.config import CheckpointingMode
from streamflow.core.clock import Clock
from streamflow.core.elements import END_OF_INPUT, Barrier, Batch, EndOfInput, Watermark
from streamflow.core.ids import CheckpointId
from streamflow.core.services import JobServices
from streamflow.errors import CheckpointError, StateSerializationError
from streamflow.eventtime.combiner import WatermarkCombiner
from streamflow.eventtime.status import Emissions, WatermarkStatus
from streamflow.runtime.alignment import AlignmentStep, BarrierAligner
from streamflow.runtime.checkpoint_timing import CheckpointTimings
from streamflow.runtime.channel import MAIL, TIMEOUT, InputGate
from streamflow.runtime.channel_state import InFlightRecorder
from streamflow.runtime.mailbox import (
    FINISH,
    STOP,
    CheckpointAborted,
    CheckpointCompleted,
    CoordinatorLink,
    OperatorWakeup,
)
from streamflow.runtime.operators.base import Emit, EmitStatus, EmitWatermark, Restored, StreamOperator
from streamflow.runtime.partitioners import RecordWriter

if TYPE_CHECKING:
    from streamflow.checkpoint.metadata import StateHandle
    from streamflow.checkpoint.shared_files import SharedFile
    from streamflow.checkpoint.storage import CheckpointStorage

log = logging.getLogger("streamflow.task")

_NEG_INF = float("-inf")
_INF = float("inf")


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
        restored: dict[str, Restored] | None,
        services: JobServices | None = None,
        channel_inputs: list[int] | None = None,
        tagged_outputs: dict[str, dict[str, list[RecordWriter]]] | None = None,
        unaligned: bool = False,
        aligned_timeout: float | None = None,
    ) -> None:
        self.name = name
        self.subtask = subtask
        self.operators = operators
        self.gate = gate
        self.outputs = outputs
        self.side_outputs = side_outputs  # dead letters, by the uid of the operator (or source) routing them
        self.tagged_outputs = tagged_outputs or {}  # uid -> side output tag name -> writers
        self.coordinator = coordinator
        self.storage = storage
        self.clock = clock
        self._spawn = spawn
        self._restored = restored
        self.services = services if services is not None else JobServices()  # the job run's
        self.offload = self.services.offload
        self.aligner = BarrierAligner(len(gate.channels), mode, unaligned=unaligned and aligned_timeout is None)
        self._unaligned = unaligned
        self._aligned_timeout = aligned_timeout
        self._in_flight: InFlightRecorder | None = None  # channel state of the unaligned checkpoint being taken
        self.restored_in_flight = 0  # elements put back into the input channels by the restore
        if unaligned and aligned_timeout is None:
            gate.on_urgent = self._release_outputs_for
        self.stats = TaskStats()
        self.checkpoint_timings = CheckpointTimings()  # phases of recent checkpoints (metrics)
        self._finished = False
        self._stopped = False
        self._ended_inputs: set[int] = set()
        self.valve = WatermarkCombiner.for_channels(len(gate.channels))
        self.input_watermark = _NEG_INF  # what the head operator got last (currentInputWatermark)
        self.input_status = WatermarkStatus.ACTIVE
        self.output_watermark = _NEG_INF  # what the tail forwarded last (currentOutputWatermark)
        self.output_status = WatermarkStatus.ACTIVE
        # channel_inputs[i]: which input of the head operator gate channel i feeds (a
        # broadcast operator has two); None: all feed input 0.
        self._channel_inputs = channel_inputs if channel_inputs is not None else [0] * len(gate.channels)
        self._wire()

    # -- set-up -----------------------------------------------------------------------

    def _wire(self) -> None:
        ops = self.operators
        for op in ops:
            writer = self.side_outputs.get(op.uid)
            if writer is not None:
                op.dead_letter = writer.emit
            op.request_wakeup = functools.partial(self.gate.post, OperatorWakeup(op))
            op.side_outputs = {tag: _fan_out(writers) for tag, writers in self.tagged_outputs.get(op.uid, {}).items()}
        for op, following in zip(ops, ops[1:]):
            op.emit = following.process
            op.emit_watermark, op.emit_watermark_status = self._event_time_outputs(
                op.uid, following.process_watermark, following.process_watermark_status
            )
        if ops:
            tail = ops[-1]
            tail.emit = self._network_emit()
            tail.emit_watermark, tail.emit_watermark_status = self._event_time_outputs(
                tail.uid, self._network_watermark, self._network_status
            )
            self._head_watermark: EmitWatermark = ops[0].process_watermark
            self._head_status: EmitStatus = ops[0].process_watermark_status
        else:
            self._head_watermark, self._head_status = self._network_watermark, self._network_status

    def _event_time_outputs(
        self, uid: str, watermark: EmitWatermark, status: EmitStatus
    ) -> tuple[EmitWatermark, EmitStatus]:
        """Where operator ``uid``'s event time goes: ``watermark`` / ``status`` (the next
        operator, or the network) and its own dead-letter and side-output channels."""
        side = [w for ws in self.tagged_outputs.get(uid, {}).values() for w in ws]
        dead_letters = self.side_outputs.get(uid)
        if dead_letters is not None:
            side.append(dead_letters)
        if not side:
            return watermark, status

        async def watermark_to_all(element: Watermark) -> None:
            for writer in side:
                await writer.broadcast_control(element)
            await watermark(element)

        async def status_to_all(element: WatermarkStatus) -> None:
            for writer in side:
                await writer.broadcast_control(element)
            await status(element)

        return watermark_to_all, status_to_all

    def _network_emit(self) -> Callable[[Batch], Coroutine[Any, Any, None]]:
        outputs = self.outputs
        if len(outputs) == 1:
            return outputs[0].emit

        async def emit_all(batch: Batch) -> None:
            for writer in outputs:
                await writer.emit(batch)

        return emit_all

    async def _network_watermark(self, watermark: Watermark) -> None:
        self.output_watermark = watermark.timestamp
        for writer in self.outputs:
            await writer.broadcast_control(watermark)

    async def _network_status(self, status: WatermarkStatus) -> None:
        self.output_status = status
        for writer in self.outputs:
            await writer.broadcast_control(status)

    def _restored_for(self, uid: str) -> Restored | None:
        """The snapshots of ``uid`` per old subtask, or None when it starts fresh.

        An operator whose uid the restored checkpoint does not hold (one added to the job
        since, or one that kept no state) starts exactly as on a first run, as in Flink:
        a source reads from its start, ``is_restored`` is False. Sources and sinks that
        were in the checkpoint always have an entry there (possibly of empty lists), so a
        reader can still tell "restored, owns nothing now" from "fresh".
        """
        if self._restored is None:
            return None
        return self._restored.get(uid)

    async def _open(self) -> None:
        for op in self.operators:
            await op.open(self._restored_for(op.uid))

    @property
    def all_writers(self) -> list[RecordWriter]:
        tagged = [w for by_tag in self.tagged_outputs.values() for ws in by_tag.values() for w in ws]
        return [*self.outputs, *self.side_outputs.values(), *tagged]

    def output_blocked_seconds(self) -> float:
        return sum(c.current_blocked_seconds() for w in self.all_writers for c in w.channels)

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
            self._drop_in_flight()
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
        if self._aligned_timeout is not None:  # wake up when a waiting barrier may overtake
            barrier = self._waiting_barrier()
            if barrier is not None:
                t = barrier.timestamp + self._aligned_timeout
                deadline = t if deadline is None else min(deadline, t)
        return None if deadline is None else max(0.0, deadline - self.clock.now())

    def _waiting_barrier(self) -> Barrier | None:
        """The barrier an aligned timeout applies to: the one aligning, or one queued."""
        current = self.aligner.current
        if current is not None and not self.aligner.in_flight:
            return None if current.is_savepoint else current
        if self.gate.channels and any(c.barriers for c in self.gate.channels):
            queued = self.gate.queued_barrier()
            if queued is not None and not queued[1].is_savepoint:  # savepoints align, never time out
                return queued[1]
        return None

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
        offload = self.offload
        handlers = self._input_handlers()  # per channel: one list index per batch
        overtaking = self._unaligned
        while not self._finished:
            if overtaking and await self._overtake():
                continue
            index, element = await gate.next(self._timer_timeout())
            if index == MAIL:
                if element is TIMEOUT:
                    await self._fire_timers()
                else:
                    await self._on_mail(element)
                continue
            if self._in_flight is not None:
                self._in_flight.note(index, element)
            kind = type(element)
            if kind is Batch:
                await handlers[index](element)
                # Let go of the batch before waiting: its records are freed now, while
                # upstream builds the next batch, so the allocator hands that batch the
                # memory (still in the CPU's caches) these records held. Held until the
                # next element came, two batches' worth of records would alternate.
                element = None
                if offload.in_flight():
                    await offload.pause()
            elif kind is Barrier:
                await self._on_barrier(index, element)
            elif kind is Watermark:
                await self._forward_input(self.valve.on_watermark(index, element.timestamp))
            elif kind is WatermarkStatus:
                await self._forward_input(self.valve.on_status(index, element))
            elif kind is EndOfInput:
                # An ended channel holds event time back no more (its upstream sent +inf
                # before it ended; this covers one that did not).
                await self._forward_input(self.valve.on_watermark(index, _INF))
                self._ended_inputs.add(index)
                if len(self._ended_inputs) == len(gate.channels):
                    await self._end_of_input()

    def _release_outputs_for(self, element: Any) -> None:
        """A barrier reached this task (queued in an input channel, or a source's trigger
        in its mailbox) while it may be blocked writing a full output channel: that write
        goes in past capacity, so that the barrier is not held back by the backpressure
        it is meant to overtake."""
        barrier = element if type(element) is Barrier else getattr(element, "barrier", None)
        if type(barrier) is Barrier and not barrier.is_savepoint:
            for writer in self.all_writers:
                for channel in writer.channels:
                    channel.release_writer()

    async def _overtake(self) -> bool:
        """Unaligned checkpoints: take a queued barrier out of its channel, past the
        elements ahead of it, once it may overtake them; or switch an alignment that
        took longer than the aligned timeout. True when it did something."""
        gate, aligner = self.gate, self.aligner
        timeout = self._aligned_timeout
        if timeout is not None and aligner.current is not None and not aligner.in_flight:
            current = aligner.current
            if not current.is_savepoint and self.clock.now() - current.timestamp >= timeout:
                await self._apply(aligner.go_unaligned(), None, [])
                return True
        if not any(c.barriers for c in gate.channels):
            return False
        queued = gate.queued_barrier()
        if queued is None:
            return False
        index, barrier = queued
        if barrier.is_savepoint:
            return False  # savepoints align: it is read in its turn
        in_flight = aligner.in_flight and aligner.current is not None
        if timeout is not None and not in_flight and self.clock.now() - barrier.timestamp < timeout:
            return False
        taken = gate.channels[index].take_barrier()
        assert taken is not None and taken[0] is barrier  # internal invariant: queued_barrier found it
        await self._on_barrier(index, barrier, taken[1])
        return True

    async def _on_barrier(self, channel: int, barrier: Barrier, ahead: list[Any] | None = None) -> None:
        self.checkpoint_timings.barrier_arrived(barrier.checkpoint_id, barrier.timestamp, self.clock.now())
        step = self.aligner.on_barrier(channel, barrier, overtaking=ahead is not None)
        recorder = self._in_flight
        if recorder is not None and barrier.checkpoint_id < recorder.checkpoint_id:
            # a stale barrier (of an aborted checkpoint) closes no channel of the one in
            # flight: what was ahead of it is recorded as it is read
            await self._apply(step, None, [])
        else:
            await self._apply(step, channel, ahead or [])

    async def _apply(self, step: AlignmentStep, channel: int | None, ahead: list[Any]) -> None:
        """Carry out what the aligner said after barrier n came on ``channel`` with
        ``ahead`` overtaken (``channel`` None: an aligned timeout switched to unaligned)."""
        if step.abandoned is not None:
            self._decline(step.abandoned, "a newer barrier overtook its alignment")
            self._drop_in_flight()
            # inputs held for the abandoned checkpoint must deliver the newer barrier too
            self.gate.release_all()
        if step.hold:
            assert channel is not None
            self.gate.hold(channel)
        if step.trigger is not None and step.unaligned:
            self.gate.release_all()
            n = step.trigger.checkpoint_id
            open_channels = set(range(len(self.gate.channels))) - self.aligner.arrived
            if channel is not None:
                open_channels.add(channel)  # closes below, after what it overtook
            recorder = InFlightRecorder(n, [c.name for c in self.gate.channels], open_channels)
            self._in_flight = recorder
            self._note_overtaken(channel, ahead)
            await self._checkpoint(step.trigger, {}, recorder)
        elif step.trigger is not None:
            self.gate.release_all()
            await self._checkpoint(step.trigger, {})
        else:
            self._note_overtaken(channel, ahead)
        if step.in_flight_done is not None and self._in_flight is not None:
            self._in_flight = None  # complete: its ack goes out from the background write

    def _note_overtaken(self, channel: int | None, ahead: list[Any]) -> None:
        recorder = self._in_flight
        if recorder is not None and channel is not None:
            try:
                recorder.overtaken(channel, ahead)
            except StateSerializationError as exc:
                self._decline(recorder.checkpoint_id, str(exc.in_operator(self._state_owners()[0], self.subtask)))
                self._drop_in_flight()

    def _drop_in_flight(self) -> None:
        if self._in_flight is not None:
            self._in_flight.cancel()
            self._in_flight = None

    async def _forward_input(self, emissions: Emissions) -> None:
        """Hand the input's new event time (watermarks and statuses, in order) to the head."""
        for emission in emissions:
            if isinstance(emission, WatermarkStatus):
                self.input_status = emission
                await self._head_status(emission)
            else:
                self.input_watermark = emission
                await self._head_watermark(Watermark(emission))

    async def _final_watermark(self) -> None:
        """Event time ends (+inf) for the chain, active: every pending event-time timer
        fires before ``end_input``, as in Flink."""
        if self.input_watermark == _INF:
            return
        if self.input_status is WatermarkStatus.IDLE:
            await self._forward_input((WatermarkStatus.ACTIVE,))
        await self._forward_input((_INF,))

    async def _end_of_input(self) -> None:
        await self._final_watermark()
        for op in self.operators:
            await op.end_input()
        for writer in self.all_writers:
            await writer.broadcast_control(END_OF_INPUT)
        self.coordinator.end_of_input(self.name)

    async def _on_mail(self, mail: Any) -> None:
        kind = type(mail)
        if kind is CheckpointCompleted:
            for op in self.operators:
                await self.offload.tracked(op.notify_checkpoint_complete(mail.checkpoint_id))
        elif kind is CheckpointAborted:
            if self.aligner.abort(mail.checkpoint_id):
                self.gate.release_all()
            if self._in_flight is not None and self._in_flight.checkpoint_id <= mail.checkpoint_id:
                self._drop_in_flight()
            for op in self.operators:
                if mail.shared_files_lost:
                    op.notify_shared_files_lost()
                await op.notify_checkpoint_aborted(mail.checkpoint_id)
        elif kind is OperatorWakeup:
            await mail.operator.on_wakeup()
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

    async def _checkpoint(
        self, barrier: Barrier, extra: dict[str, OperatorSnapshot], in_flight: InFlightRecorder | None = None
    ) -> None:
        """Steps 2-4 of the docstring: forward, copy synchronously, write in background.
        ``in_flight``: the checkpoint is unaligned; its channel state is recorded there."""
        n = barrier.checkpoint_id
        snapshot_type = SnapshotType.SAVEPOINT if barrier.is_savepoint else SnapshotType.CHECKPOINT
        self.checkpoint_timings.aligned(n, barrier.timestamp, self.clock.now())
        if in_flight is not None or (self._unaligned and not barrier.is_savepoint):
            for writer in self.all_writers:  # the reader takes it out past what is queued
                for channel in writer.channels:
                    channel.put_now(barrier)
        else:
            for writer in self.all_writers:
                await writer.broadcast_control(barrier)
        copy_started = time.perf_counter()
        blobs: dict[str, bytes | None] = {}
        pending: dict[str, PendingKeyedState] = {}
        failure: StateSerializationError | CheckpointError | None = None
        for uid, state in extra.items():
            try:
                blobs[uid] = encode(state.to_stored(), operator=uid, subtask=self.subtask)
            except StateSerializationError as exc:
                failure = failure or exc
        for op in self.operators:
            # Every operator snapshots even after a failure, so that each sees checkpoint
            # n taken and then aborted, as when another task declines it.
            try:
                snapshot = await self.offload.tracked(op.snapshot(n, snapshot_type))
                if snapshot is not None and snapshot.pending is not None:
                    pending[op.uid] = snapshot.pending
                blobs[op.uid] = (
                    None if snapshot is None else encode(snapshot.to_stored(), operator=op.uid, subtask=self.subtask)
                )
            except StateSerializationError as exc:
                failure = failure or exc.in_operator(op.uid, self.subtask)
            except CheckpointError as exc:
                failure = failure or exc
        if failure is not None:
            log.error("task %s declines checkpoint %d: %s", self.name, n, failure)
            self._decline(n, str(failure))
            for work in pending.values():
                self._spawn(work.discard())
            if in_flight is not None:
                self._drop_in_flight()
            return
        self.checkpoint_timings.synced(n, copy_started)
        self._spawn(self._write_and_ack(n, blobs, pending, in_flight))

    async def _with_channel_state(
        self, checkpoint_id: CheckpointId, blobs: dict[str, bytes | None], in_flight: InFlightRecorder
    ) -> dict[str, bytes | None] | None:
        """``blobs`` with the channel state in the head operator's snapshot, once every
        barrier came; None when the checkpoint was given up meanwhile."""
        try:
            channel_state = await in_flight.result()
        except asyncio.CancelledError:
            if in_flight.given_up():
                return None
            raise
        head = self._state_owners()[0]
        data = blobs.get(head)
        stored = {} if data is None else decode(data)
        stored["channel_state"] = channel_state
        timing = self.checkpoint_timings.get(checkpoint_id)
        if timing is not None:
            timing.unaligned = True
            timing.persisted_bytes = in_flight.persisted_bytes
        return {**blobs, head: encode(stored, operator=head, subtask=self.subtask)}

    async def _write_and_ack(
        self,
        checkpoint_id: CheckpointId,
        blobs: dict[str, bytes | None],
        pending: dict[str, PendingKeyedState],
        in_flight: InFlightRecorder | None = None,
    ) -> None:
        try:
            if in_flight is not None:
                with_channels = await self._with_channel_state(checkpoint_id, blobs, in_flight)
                if with_channels is None:
                    return  # aborted or abandoned while barriers were still to come
                blobs = with_channels
            handles: dict[str, StateHandle | None] = {}
            for uid, data in blobs.items():
                self.services.faults.state_write(uid, checkpoint_id)
                if data is None or self.storage is None:
                    handles[uid] = None
                    continue
                shared: tuple[SharedFile, ...] = ()
                work = pending.get(uid)
                if work is not None:
                    await work.ready()  # a forked child's pickling: the task need not make room for it
                    finished = await self.offload.tracked(work.finish(self.storage.shared))
                    shared = finished.shared
                    if finished.keyed is not None:  # a canonical snapshot read from native files
                        stored = {**decode(data), "keyed": finished.keyed}
                        data = encode(stored, operator=uid, subtask=self.subtask)
                written_handle = await self.offload.tracked(
                    self.storage.write_state(checkpoint_id, f"{uid}-{self.subtask}", data, shared)
                )
                if in_flight is not None and uid == self._state_owners()[0]:
                    written_handle = written_handle.with_channel_state(in_flight.persisted_bytes)
                handles[uid] = written_handle
        except StateSerializationError as exc:  # a snapshot encoded in the background (a forked child) refused
            log.error("task %s declines checkpoint %d: %s", self.name, checkpoint_id, exc)
            self._decline(checkpoint_id, str(exc))
            return
        except Exception as exc:  # a failed write fails the checkpoint, not the job
            log.warning("task %s could not write state of checkpoint %d: %r", self.name, checkpoint_id, exc)
            self._decline(checkpoint_id, f"state write failed: {exc!r}")
            return
        finally:
            for work in pending.values():
                await work.discard()
        written = sum(h.written_for(checkpoint_id) for h in handles.values() if h is not None)
        self.checkpoint_timings.written(checkpoint_id, written)
        for uid, acked in handles.items():
            self.coordinator.acknowledge(checkpoint_id, (uid, self.subtask), acked)


def _fan_out(writers: list[RecordWriter]) -> Emit:
    """One emit for the writers of a side output (several streams may read one tag)."""
    if len(writers) == 1:
        return writers[0].emit

    async def emit_all(batch: Batch) -> None:
        for writer in writers:
            await writer.emit(batch)

    return emit_all
