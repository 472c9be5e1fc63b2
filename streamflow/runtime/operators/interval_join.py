"""Runtime of ``a.interval_join(b).between(lower, upper).process(fn)``: a keyed two-input
operator around :class:`~streamflow.joins.IntervalJoinLogic`.

Input 0 carries the left stream, input 1 the right one, each hashed by its own key (the
task reads both through one input gate and calls :meth:`IntervalJoinOperator.process`
or :meth:`~IntervalJoinOperator.process_right` by the channel's input, as the broadcast
operator does). The buffers of both sides are keyed state and their cleanup timers the
operator's timers (:mod:`.window_state`), so checkpoints, savepoints and rescaling carry
them like any keyed state, with the event time reached (as the window operator saves
it). The watermark is the minimum of both inputs' (the task's input valve); at each one
the due cleanup timers drop what can no longer match.

A record without a timestamp, or one the join function raises on, goes to the
operator's error policy. Lifecycle as for every keyed FunctionOperator.
"""

from __future__ import annotations

from typing import Any, Callable, cast

from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.elements import Batch, Watermark
from streamflow.errors import ConfigError
from streamflow.graph.spec import OperatorSpec
from streamflow.joins.interval_join import IntervalJoinConfig, IntervalJoinLogic
from streamflow.runtime.operators.base import Emit, Restored
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.operators.function import FunctionOperator
from streamflow.runtime.operators.window import emit_window_output, feed_records
from streamflow.runtime.operators.window_state import KeyedWindowStore, KeyedWindowTimers, SavedWatermark
from streamflow.windowing.logic import ElementFate

__all__ = ["IntervalJoinOperator"]


class IntervalJoinOperator(FunctionOperator):
    """Runs the interval join of one operator subtask (see the module docstring)."""

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        if ctx.keyed_backend is None:
            raise ConfigError(f"interval join {self.uid!r} needs keyed inputs: key_by(...) both streams")
        self.config = cast(IntervalJoinConfig, self.fn)
        self.logic: IntervalJoinLogic | None = None
        self.saved_watermark: SavedWatermark | None = None

    def input_handlers(self) -> tuple[Emit, ...]:
        return self.process, self.process_right

    async def _open(self, restored: Restored | None) -> None:
        await super()._open(restored)
        backend = self.ctx.keyed_backend
        assert backend is not None  # checked in __init__
        self.logic = IntervalJoinLogic(self.config, KeyedWindowStore(backend), KeyedWindowTimers(self))
        self.saved_watermark = SavedWatermark(self.operator_state)
        self.logic.advance_watermark(self.saved_watermark.restored())
        self.watermark = self.logic.watermark

    async def snapshot(self, checkpoint_id: int, snapshot_type: SnapshotType) -> OperatorSnapshot | None:
        if self.saved_watermark is not None and self.logic is not None:
            self.saved_watermark.save(self.logic.watermark)
        return await super().snapshot(checkpoint_id, snapshot_type)

    async def process(self, batch: Batch) -> None:
        """Records of the left input."""
        logic = self.logic
        assert logic is not None  # opened
        await self._process_side(batch, logic.process_left)

    async def process_right(self, batch: Batch) -> None:
        """Records of the right input."""
        logic = self.logic
        assert logic is not None  # opened
        await self._process_side(batch, logic.process_right)

    async def _process_side(self, batch: Batch, process: Callable[[Any, Any, float | None], ElementFate]) -> None:
        logic = self.logic
        assert logic is not None and batch.keys is not None and batch.key_groups is not None  # a hash edge keys it
        self.metrics.records_in += len(batch.records)
        late_positions = feed_records(self, batch, batch.keys, batch.key_groups, process, logic.output)
        self.metrics.records_late_dropped = logic.late_records_dropped
        if self.errors.pending:
            await self.errors.flush(self.dead_letter)
        self.metrics.records_out += await emit_window_output(self, logic.take_output(), batch.origin, late_positions)

    async def on_watermark(self, watermark: Watermark) -> None:
        logic = self.logic
        assert logic is not None  # opened
        logic.advance_watermark(watermark.timestamp)
        time = self.watermark = logic.watermark  # (after a restore, not below the saved one)
        pop_next = self.event_timers.pop_next
        while (due := pop_next(time)) is not None:
            at, key_group, (key, namespace) = due
            self.set_key(key, key_group)
            logic.on_event_time(key, namespace, at)
