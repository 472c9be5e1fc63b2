"""The operator contract: what a task calls on each operator of its chain, in order.

Lifecycle, driven by the owning task, one call at a time:
``open(restored)`` -> ``process(batch)`` / ``process_watermark`` /
``process_watermark_status`` / ``on_processing_time`` / ``on_wakeup`` ->
``snapshot(n, type)`` at barrier n -> ``notify_checkpoint_complete(n)`` /
``notify_checkpoint_aborted(n)`` (after ``notify_shared_files_lost()`` when the
coordinator says so) -> ... -> ``end_input()`` when all input ended -> ``finish()`` after
the final checkpoint -> ``close()``. ``close`` is not guaranteed after a crash.

An operator hands its records to ``self.emit`` (the next operator's ``process`` in the
chain, or the task's network output), records for a side output to
``self.side_outputs[tag name]`` (present only when a stream consumes that tag), and its
event time to ``self.emit_watermark`` / ``self.emit_watermark_status`` (the next
operator's ``process_watermark`` / ``process_watermark_status``, or the network; the
operator's own side outputs get them too).

Event time flows through the chain operator by operator. By default an operator reacts
to a watermark (``on_watermark``: fire event-time timers, emit what they produce) and
then forwards it, so everything it emitted for event time up to the watermark precedes
the watermark downstream. An operator that must hold a watermark back overrides
``process_watermark`` and calls ``emit_watermark`` itself once it may pass (the async
operator forwards it after emitting the results of the records before it); one that
makes its own event time (``assign_timestamps_and_watermarks``) drops what comes from
upstream and emits its own.

An operator with work of its own in the background (the calls of an async operator)
never emits from there: it calls ``self.request_wakeup()``, and its task calls
``on_wakeup()`` between two batches, from the task's own asyncio task, so no operator
is ever called concurrently with itself. The kinds are in the modules next to this
one: :mod:`.function` (map, flat_map, filter, process, reduce), :mod:`.async_io`
(map_async, flat_map_async), :mod:`.broadcast` (the two-input broadcast operator),
:mod:`.timestamps`, :mod:`.window`, :mod:`.interval_join` and :mod:`.sink`.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.elements import Batch, Watermark
from streamflow.eventtime.status import Emissions, WatermarkStatus
from streamflow.graph.spec import OperatorSpec
from streamflow.runtime.operators.contexts import OperatorContext

__all__ = ["Emit", "EmitStatus", "EmitWatermark", "OperatorMetrics", "Restored", "StreamOperator", "short_repr"]

Emit = Callable[[Batch], Awaitable[None]]
EmitWatermark = Callable[[Watermark], Awaitable[None]]
EmitStatus = Callable[[WatermarkStatus], Awaitable[None]]
Restored = list[OperatorSnapshot]  # one per old subtask (with no parts if it had no state)


class OperatorMetrics:
    """Counters of one operator subtask; read by the metrics registry.

    ``records_late_dropped`` is Flink's numLateRecordsDropped: records a window or join
    operator dropped because event time had passed them (and no late-data side output
    took them).
    """

    __slots__ = ("records_in", "records_out", "records_skipped", "records_dead_lettered", "records_late_dropped")

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0
        self.records_skipped = 0
        self.records_dead_lettered = 0
        self.records_late_dropped = 0


class StreamOperator:
    """Base of every chained operator."""

    emit: Emit
    emit_watermark: EmitWatermark
    emit_watermark_status: EmitStatus
    dead_letter: Emit | None = None

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        self.spec = spec
        self.uid = spec.effective_uid
        self.ctx = ctx
        self.metrics = OperatorMetrics()
        self.side_outputs: dict[str, Emit] = {}
        self.request_wakeup: Callable[[], None] = _no_task
        """Ask the owning task to call :meth:`on_wakeup` between batches (set by the task)."""

    async def open(self, restored: Restored | None) -> None:
        return None

    async def process(self, batch: Batch) -> None:
        raise NotImplementedError

    def input_handlers(self) -> tuple[Emit, ...]:
        """What the task calls with a batch from input 0, 1, ... (only a chain head has
        more than one input; see :mod:`streamflow.runtime.operators.broadcast`)."""
        return (self.process,)

    # -- event time -------------------------------------------------------------------

    async def process_watermark(self, watermark: Watermark) -> None:
        """Event time reached ``watermark`` on this operator's input (never lower than
        before): react, then forward. Override to hold the watermark back."""
        await self.on_watermark(watermark)
        await self.emit_watermark(watermark)

    async def on_watermark(self, watermark: Watermark) -> None:
        """React to a watermark before it is forwarded (fire event-time timers)."""
        return None

    async def process_watermark_status(self, status: WatermarkStatus) -> None:
        """The input turned idle or active again: react, then forward."""
        await self.on_watermark_status(status)
        await self.emit_watermark_status(status)

    async def on_watermark_status(self, status: WatermarkStatus) -> None:
        return None

    async def forward_event_time(self, emissions: Emissions) -> None:
        """Forward what a pure event-time component answered (watermarks and statuses), in order."""
        for emission in emissions:
            if isinstance(emission, WatermarkStatus):
                await self.emit_watermark_status(emission)
            else:
                await self.emit_watermark(Watermark(emission))

    async def emit_side_output(self, tag_name: str, batch: Batch) -> None:
        """Send ``batch`` to side output ``tag_name``; nothing when no stream reads it (as
        in Flink, an unread side output costs nothing and keeps nothing)."""
        emit = self.side_outputs.get(tag_name)
        if emit is not None:
            await emit(batch)

    async def on_wakeup(self) -> None:
        """Called by the task, between batches, after :attr:`request_wakeup`."""
        return None

    def extra_metrics(self) -> dict[str, Any]:
        """Metrics of this kind of operator, beside the record counters (read on demand)."""
        return {}

    # -- timers and checkpoints -------------------------------------------------------

    def next_timer(self) -> float | None:
        return None

    async def on_processing_time(self, now: float) -> None:
        return None

    async def snapshot(self, checkpoint_id: int, snapshot_type: SnapshotType) -> OperatorSnapshot | None:
        """The state at barrier ``checkpoint_id``; a savepoint needs it self-contained."""
        return None

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        return None

    def notify_shared_files_lost(self) -> None:
        """Shared files of earlier checkpoints may be gone: write every file anew."""
        return None

    async def end_input(self) -> None:
        return None

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _no_task() -> None:
    """``request_wakeup`` of an operator no task owns (yet)."""


def short_repr(record: Any, limit: int = 200) -> str:
    """``repr(record)`` cut to ``limit`` characters, for error messages and logs."""
    text = repr(record)
    return text if len(text) <= limit else text[: limit - 3] + "..."
