"""The operator contract: what a task calls on each operator of its chain, in order.

Lifecycle, driven by the owning task, one call at a time:
``open(restored)`` -> ``process(batch)`` / ``on_watermark`` / ``on_processing_time``
-> ``snapshot(n)`` at barrier n -> ``notify_checkpoint_complete(n)`` /
``notify_checkpoint_aborted(n)`` -> ... -> ``end_input()`` when all input ended ->
``finish()`` after the final checkpoint -> ``close()``. ``close`` is not guaranteed
after a crash.

An operator hands its output to ``self.emit`` (the next operator's ``process`` in the
chain, or the task's network output). The kinds are in the modules next to this one:
:mod:`.function` (map, flat_map, filter, process, reduce), :mod:`.broadcast` (the
two-input broadcast operator) and :mod:`.sink`.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.core.elements import Batch, Watermark
from streamflow.graph.spec import OperatorSpec
from streamflow.runtime.operators.contexts import OperatorContext

__all__ = ["Emit", "OperatorMetrics", "Restored", "StreamOperator", "short_repr"]

Emit = Callable[[Batch], Awaitable[None]]
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
    dead_letter: Emit | None = None

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        self.spec = spec
        self.uid = spec.effective_uid
        self.ctx = ctx
        self.metrics = OperatorMetrics()

    async def open(self, restored: Restored | None) -> None:
        return None

    async def process(self, batch: Batch) -> None:
        raise NotImplementedError

    def input_handlers(self) -> tuple[Emit, ...]:
        """What the task calls with a batch from input 0, 1, ... (only a chain head has
        more than one input; see :mod:`streamflow.runtime.operators.broadcast`)."""
        return (self.process,)

    async def on_watermark(self, watermark: Watermark) -> None:
        return None

    def next_timer(self) -> float | None:
        return None

    async def on_processing_time(self, now: float) -> None:
        return None

    async def snapshot(self, checkpoint_id: int) -> OperatorSnapshot | None:
        return None

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        return None

    async def end_input(self) -> None:
        return None

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None


def short_repr(record: Any, limit: int = 200) -> str:
    """``repr(record)`` cut to ``limit`` characters, for error messages and logs."""
    text = repr(record)
    return text if len(text) <= limit else text[: limit - 3] + "..."
