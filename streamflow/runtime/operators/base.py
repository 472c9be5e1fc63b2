"""The operator contract: what a task calls on each operator of its chain, in order.

Lifecycle, driven by the owning task, one call at a time:
``open(restored)`` -> ``process(batch)`` / ``process_watermark`` (which calls
``on_watermark``) / ``on_processing_time`` / ``on_wakeup`` -> ``snapshot(n, type)`` at
barrier n -> ``notify_checkpoint_complete(n)`` / ``notify_checkpoint_aborted(n)`` (after
``notify_shared_files_lost()`` when the coordinator says so) -> ... -> ``end_input()``
when all input ended ->
``finish()`` after the final checkpoint -> ``close()``. ``close`` is not guaranteed
after a crash.

An operator hands its output to ``self.emit`` (the next operator's ``process`` in the
chain, or the task's network output), and watermarks to ``self.emit_watermark`` (the
next operator's ``process_watermark``, or the task's outputs): by default
``process_watermark`` calls ``on_watermark`` and passes the watermark on at once; an
operator that must hold it back until earlier records are out overrides it.

An operator with work of its own in the background (the calls of an async operator)
never emits from there: it calls ``self.request_wakeup()``, and its task calls
``on_wakeup()`` between two batches, from the task's own asyncio task, so no operator
is ever called concurrently with itself. The kinds are in the modules next to this
one: :mod:`.function` (map, flat_map, filter, process, reduce), :mod:`.async_io`
(map_async, flat_map_async), :mod:`.broadcast` (the two-input broadcast operator) and
:mod:`.sink`.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.elements import Batch, Watermark
from streamflow.graph.spec import OperatorSpec
from streamflow.runtime.operators.contexts import OperatorContext

__all__ = ["Emit", "EmitWatermark", "OperatorMetrics", "Restored", "StreamOperator", "short_repr"]

Emit = Callable[[Batch], Awaitable[None]]
EmitWatermark = Callable[[Watermark], Awaitable[None]]
Restored = list[OperatorSnapshot]  # one per old subtask (with no parts if it had no state)


class OperatorMetrics:
    """Counters of one operator subtask; read by the metrics registry."""

    __slots__ = ("records_in", "records_out", "records_skipped", "records_dead_lettered", "records_late_dropped")

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0
        self.records_skipped = 0
        self.records_dead_lettered = 0
        self.records_late_dropped = 0  # event-time records behind the watermark that were dropped


class StreamOperator:
    """Base of every chained operator."""

    emit: Emit
    emit_watermark: EmitWatermark
    dead_letter: Emit | None = None

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        self.spec = spec
        self.uid = spec.effective_uid
        self.ctx = ctx
        self.metrics = OperatorMetrics()
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

    async def process_watermark(self, watermark: Watermark) -> None:
        """Event time reached ``watermark``: react (:meth:`on_watermark`), then pass it on."""
        await self.on_watermark(watermark)
        await self.emit_watermark(watermark)

    async def on_watermark(self, watermark: Watermark) -> None:
        return None

    async def on_wakeup(self) -> None:
        """Called by the task, between batches, after :attr:`request_wakeup`."""
        return None

    def extra_metrics(self) -> dict[str, Any]:
        """Metrics of this kind of operator, beside the record counters (read on demand)."""
        return {}

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
