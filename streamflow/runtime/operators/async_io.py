"""The async operator behind ``map_async`` and ``flat_map_async`` (Flink's Async I/O).

Up to ``capacity`` calls of the user's async function run at once per subtask, each an
asyncio task the operator owns (named ``"{uid}[{subtask}] call #{n}"``). The calls never
emit: a call that ends marks its record done in the :class:`AsyncQueue` and wakes the
task (:meth:`StreamOperator.request_wakeup`, or the wait in ``process``), and the
results go out from the task's own asyncio task, in the queue's order. So:

1. ``process(batch)``: each record is held in the queue and its call started; while
   the queue is full, the operator emits what is done and waits for a call to end (a
   full capacity is backpressure: the task reads nothing meanwhile, its input channels
   fill). Waiting time is counted in ``capacity_wait_seconds``.
2. ``process_watermark`` / ``process_watermark_status``: held behind the records before
   it (unordered mode too), and passed on once they are out; so no result crosses a
   watermark. Results keep their input record's event timestamp.
3. ``snapshot(n)`` at barrier n: the inputs of every record still held (call running,
   waiting, or done and not yet emitted) go into ``OperatorSnapshot.async_inputs``, in
   arrival order, with their source positions, keys and timestamps. Their results,
   emitted after the barrier, belong to the next checkpoint.
4. ``open(restored)``: restored inputs are held and called again before any new record
   (ordered mode keeps their order); after a rescale they are dealt out evenly, or by
   key group after ``key_by``.
5. ``end_input``: every call ends and every result goes out before end of input.
6. ``close``: calls still running are cancelled and awaited (a stop or a failure),
   quietly; then the function's ``close``.

A record whose last attempt failed (an exception, a timeout) goes to the error policy:
``fail`` fails the attempt at once with a :class:`~streamflow.errors.UserFunctionError`
naming the operator, the record and its source position; ``skip`` and ``dead_letter``
set it aside as a function operator does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, NoReturn

from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.elements import Batch, Watermark
from streamflow.errors import ConfigError, StateError, UserFunctionError
from streamflow.eventtime.status import WatermarkStatus
from streamflow.graph.spec import OperatorSpec
from streamflow.partitioning.keygroups import KeyGroupAssigner
from streamflow.runtime.operators.async_calls import AsyncCallMetrics, call_with_retries
from streamflow.runtime.operators.async_queue import AsyncEntry, AsyncQueue
from streamflow.runtime.operators.base import Restored, StreamOperator, short_repr
from streamflow.runtime.operators.contexts import CheckpointHooks, OperatorContext, maybe_await
from streamflow.runtime.operators.function import own_copy
from streamflow.runtime.record_errors import RecordErrorHandler
from streamflow.state.operator import redistribute_split

__all__ = ["AsyncFunctionContext", "AsyncOperator"]

log = logging.getLogger("streamflow.operator")


class AsyncFunctionContext(OperatorContext):
    """The runtime context an async function's ``open`` gets: everything but keyed state."""

    def __init__(self, ctx: OperatorContext) -> None:
        self.__dict__.update(vars(ctx))  # a copy of the operator's context
        self.keyed_backend = None

    def get_state(self, descriptor: Any) -> Any:
        raise StateError(
            f"async operator {self.operator_uid!r} asked for keyed state {getattr(descriptor, 'name', descriptor)!r}: "
            "an async function has no keyed state, since calls of many keys run at the same time (as in Flink); "
            "keep the state in a keyed process function before or after it",
            operator=self.operator_uid,
        )


class AsyncOperator(StreamOperator):
    """See the module docstring."""

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        if spec.async_io is None:
            raise ConfigError(f"operator {self.uid!r} is an async operator without async settings")
        self.config = config = spec.async_io
        self.fn = own_copy(spec.function, self.uid)
        self.keyed = spec.key_selector is not None
        self.key_selector = spec.key_selector
        self.queue = AsyncQueue(config.capacity, config.ordering)
        self.calls = AsyncCallMetrics(config.capacity)
        self.errors = RecordErrorHandler(
            spec.error_policy, owner="operator", uid=self.uid, subtask=ctx.subtask_index, metrics=self.metrics,
            logger=log,
        )
        self._key_group_of = KeyGroupAssigner(ctx.max_parallelism)
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._progress: asyncio.Future[None] | None = None  # process / end_input waiting for a call to end
        self._wakeup_posted = False
        self._completions = 0  # calls ended so far: a wait checks none ended since its last emit
        self._failed: AsyncEntry | None = None  # a record the error policy does not take: fail the attempt
        self._task_name = f"{self.uid}[{ctx.subtask_index}] call #"
        self._hooks = CheckpointHooks(self.fn)

    # -- lifecycle ----------------------------------------------------------------

    async def open(self, restored: Restored | None) -> None:
        inputs = self._restored_inputs(restored) if restored is not None else []
        if hasattr(self.fn, "open"):
            await maybe_await(self.fn.open(AsyncFunctionContext(self.ctx)))
        self.calls.restored_inputs = len(inputs)
        if inputs:
            log.info("async operator %r subtask %d calls again %d input(s) held at its restored checkpoint",
                     self.uid, self.ctx.subtask_index, len(inputs))  # fmt: skip
        for stored in inputs:
            # "timestamp": absent in checkpoints written before records carried event time
            self._hold(stored["record"], stored["position"], stored["origin"], stored["key"], stored.get("timestamp"))

    def _restored_inputs(self, restored: Restored) -> list[dict[str, Any]]:
        """This subtask's share of the old subtasks' held inputs: by key group after
        ``key_by`` (a key's records stay on the subtask that owns it, in order), else
        dealt out evenly (unchanged parallelism: each subtask keeps its own)."""
        lists = [s.async_inputs or [] for s in restored]
        ctx = self.ctx
        if not self.keyed:
            return redistribute_split(lists, ctx.parallelism)[ctx.subtask_index]
        owned = ctx.key_groups  # on workers: the key groups its exchange partitions bring
        group_of = self._key_group_of
        return [stored for old in lists for stored in old if group_of(stored["key"]) in owned]

    async def snapshot(self, checkpoint_id: int, snapshot_type: SnapshotType) -> OperatorSnapshot:
        held = [
            {"record": e.record, "position": e.position, "origin": e.origin, "key": e.key, "timestamp": e.timestamp}
            for e in self.queue.held_entries()
        ]
        return OperatorSnapshot(async_inputs=held)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await self._hooks.complete(checkpoint_id)

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        await self._hooks.aborted(checkpoint_id)

    async def end_input(self) -> None:
        """Every call ends and every result (and held watermark) goes out."""
        while not self.queue.empty:
            seen = self._completions
            await self._emit_ready()
            if not self.queue.empty and self._completions == seen:
                await self._wait_for_a_call()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if hasattr(self.fn, "close"):
            await maybe_await(self.fn.close())

    def extra_metrics(self) -> dict[str, Any]:
        self.calls.held = len(self.queue)
        return {"async": self.calls.read()}

    # -- records ------------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        records = batch.records
        self.metrics.records_in += len(records)
        positions, origin, timestamps = batch.positions, batch.origin, batch.timestamps
        keys = self._keys_of(batch) if self.keyed else None
        queue = self.queue
        for index, record in enumerate(records):
            if queue.full:
                await self._wait_for_room()
            self._hold(
                record,
                positions[index] if positions is not None else None,
                origin,
                keys[index] if keys is not None else None,
                timestamps[index] if timestamps is not None else None,
            )
        await self._emit_ready()

    async def process_watermark(self, watermark: Watermark) -> None:
        """Passed on at once when nothing is held, else once the records before it are out."""
        if not self.queue.add_watermark(watermark):
            await self.emit_watermark(watermark)

    async def process_watermark_status(self, status: WatermarkStatus) -> None:
        """Held as a watermark is: an IDLE passed ahead of held results would let event
        time downstream move past them."""
        if not self.queue.add_watermark(status):
            await self.emit_watermark_status(status)

    def _keys_of(self, batch: Batch) -> list[Any]:
        if batch.keys is not None:
            return batch.keys
        selector = self.key_selector
        assert selector is not None  # only called on keyed operators
        return [selector(r) for r in batch.records]

    def _hold(self, record: Any, position: Any, origin: Any, key: Any, timestamp: float | None) -> None:
        self._seq += 1
        for entry in self.queue.add(AsyncEntry(self._seq, record, position, origin, key, timestamp)):
            self._start(entry)

    def _start(self, entry: AsyncEntry) -> None:
        task = asyncio.get_running_loop().create_task(self._call(entry), name=f"{self._task_name}{entry.seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.calls.in_flight += 1

    async def _call(self, entry: AsyncEntry) -> None:
        """One record's attempts; a cancel (close) leaves the entry as it is."""
        try:
            entry.results = await call_with_retries(self.fn, entry, self.config, self.calls)
        except Exception as exc:  # handed to the error policy by the task, never raised here
            self._failed_call(entry, exc)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # close() cancelled it
            # raised by the function (or a library under it) without a cancel: a failure,
            # or the record would be held for ever
            self._failed_call(entry, RuntimeError(f"the call raised {exc!r} without being cancelled"))
        finally:
            self.calls.in_flight -= 1
        self._completions += 1
        for following in self.queue.complete(entry):
            self._start(following)
        self._wake()

    def _failed_call(self, entry: AsyncEntry, error: Exception) -> None:
        entry.error = error
        self.calls.failures += 1
        if self._failed is None and not self.errors.takes(error):
            self._failed = entry

    def _wake(self) -> None:
        progress = self._progress
        if progress is not None:
            if not progress.done():
                progress.set_result(None)
        elif not self._wakeup_posted:
            self._wakeup_posted = True
            self.request_wakeup()

    async def on_wakeup(self) -> None:
        self._wakeup_posted = False
        await self._emit_ready()

    async def _wait_for_room(self) -> None:
        started = time.perf_counter()
        try:
            while True:
                seen = self._completions
                await self._emit_ready()
                if not self.queue.full:
                    return
                if self._completions == seen:  # else a call ended while emitting (its wake-up was mail)
                    await self._wait_for_a_call()
        finally:
            self.calls.capacity_wait_seconds += time.perf_counter() - started

    async def _wait_for_a_call(self) -> None:
        self._progress = asyncio.get_running_loop().create_future()
        try:
            await self._progress
        finally:
            self._progress = None

    # -- emission -----------------------------------------------------------------

    async def _emit_ready(self) -> None:
        """Emit what the queue releases, in its order: results in batches of one origin
        (a source split) with their inputs' timestamps, watermarks and statuses between
        them; failed records to the error policy."""
        if self._failed is not None:
            self._fail(self._failed)
        ready = self.queue.pop_ready()
        if not ready:
            return
        out: list[Any] = []
        positions: list[Any] = []
        stamps: list[float | None] = []
        origin = None
        emitted = 0
        for item in ready:
            if not isinstance(item, AsyncEntry):
                if out:
                    emitted += len(out)
                    await self.emit(_batch(out, positions, origin, stamps))
                    out, positions, stamps = [], [], []
                if isinstance(item, Watermark):
                    await self.emit_watermark(item)
                else:
                    await self.emit_watermark_status(item)
                continue
            entry = item
            if entry.error is not None:
                self._set_aside(entry)
                continue
            results = entry.results
            if not results:
                continue
            if entry.origin is not origin and entry.origin != origin and out:
                emitted += len(out)
                await self.emit(_batch(out, positions, origin, stamps))
                out, positions, stamps = [], [], []
            origin = entry.origin
            out.extend(results)
            positions.extend([entry.position] * len(results))
            stamps.extend([entry.timestamp] * len(results))
        if out:
            emitted += len(out)
            await self.emit(_batch(out, positions, origin, stamps))
        self.metrics.records_out += emitted
        if self.errors.pending:
            await self.errors.flush(self.dead_letter)

    def _describe(self, entry: AsyncEntry) -> tuple[str | None, str]:
        position = entry.describe_position()
        where = f"at {position}" if position else "(no source position: produced by an upstream operator's timer)"
        return position, where

    def _fail(self, entry: AsyncEntry) -> NoReturn:
        error = entry.error
        position, where = self._describe(entry)
        raise UserFunctionError(
            f"async operator {self.uid!r} (subtask {self.ctx.subtask_index}) failed on record "
            f"{short_repr(entry.record)} {where} after {entry.attempts} attempt(s): {type(error).__name__}: {error}. "
            "The job attempt fails and the restart strategy decides; fix the function or the service, allow more "
            "with retry=AsyncRetry... or timeout=, or route such records aside with "
            ".with_error_policy(ErrorPolicy.skip()) or ErrorPolicy.dead_letter(sink) on this operator.",
            operator=self.uid,
            subtask=self.ctx.subtask_index,
            position=position,
            record=short_repr(entry.record),
        ) from error

    def _set_aside(self, entry: AsyncEntry) -> None:
        error = entry.error
        assert error is not None  # only failed entries come here
        if not self.errors.takes(error):
            self._fail(entry)
        position, where = self._describe(entry)
        self.errors.set_aside(
            error, entry.record, position, f"record {short_repr(entry.record)} {where} after {entry.attempts} attempt(s)"
        )


def _batch(records: list[Any], positions: list[Any], origin: Any, stamps: list[float | None]) -> Batch:
    """Results with their inputs' timestamps (no list when none has one, as Batch wants)."""
    has_time = any(stamp is not None for stamp in stamps)
    return Batch(records, positions, origin, timestamps=stamps if has_time else None)
