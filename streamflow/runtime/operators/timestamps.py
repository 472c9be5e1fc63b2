"""Runtime of ``stream.assign_timestamps_and_watermarks(strategy)``.

Each subtask keeps one :class:`~streamflow.eventtime.WatermarkTracker`: it stamps every
batch (records whose timestamp cannot be had go to the operator's error policy, naming
the record and its source position), forwards what the tracker answers before the
batch, the batch with its new timestamps, then what it answers after, and asks it for
the periodic watermark every ``strategy.emit_interval`` seconds of processing time (a
timer of the task, like any processing-time timer).

The operator makes the stream's event time: watermarks and idleness from upstream are
dropped, as in Flink, except the final watermark (+inf) at the end of bounded input,
which is forwarded so that every timer downstream still fires. Not checkpointed, as in
Flink: after a restore event time starts again from the records read.
"""

from __future__ import annotations

import logging
from typing import cast

from streamflow.core.elements import Batch, Watermark
from streamflow.eventtime.status import WatermarkStatus
from streamflow.eventtime.strategy import WatermarkStrategy
from streamflow.eventtime.tracker import WatermarkTracker
from streamflow.graph.spec import OperatorSpec
from streamflow.runtime.operators.base import Restored, StreamOperator
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.record_errors import RecordErrorHandler
from streamflow.runtime.timestamping import drop_failed, timestamp_error

__all__ = ["TimestampsOperator"]

log = logging.getLogger("streamflow.operator")

_INF = float("inf")


class TimestampsOperator(StreamOperator):
    """Assigns timestamps and makes watermarks with one tracker per subtask."""

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        self.strategy = cast(WatermarkStrategy, spec.function)
        self.tracker = WatermarkTracker(self.strategy, ctx.clock.now())
        self._next_emit = _INF
        self.errors = RecordErrorHandler(
            spec.error_policy, owner="operator", uid=self.uid, subtask=ctx.subtask_index, metrics=self.metrics,
            logger=log,
        )

    async def open(self, restored: Restored | None) -> None:
        now = self.ctx.clock.now()
        self.tracker = WatermarkTracker(self.strategy, now)  # idle time counts from the start of the attempt
        self._next_emit = now + self.strategy.emit_interval

    async def process(self, batch: Batch) -> None:
        records = batch.records
        self.metrics.records_in += len(records)
        stamped = self.tracker.stamp(records, batch.timestamps, self.ctx.clock.now())
        await self.forward_event_time(stamped.before)
        positions = batch.positions
        if stamped.failures:
            errors = self.errors
            for failure in stamped.failures:
                record = records[failure.index]
                where = batch.describe_position(failure.index)
                if not errors.takes(failure.error):
                    raise timestamp_error(
                        "operator", self.uid, self.ctx.subtask_index, record, where, failure.error
                    ) from failure.error
                errors.set_aside(failure.error, record, where, f"record {record!r:.200} at {where}")
            await errors.flush(self.dead_letter)
            records, positions = drop_failed(records, positions, stamped.failures)
        if records:
            self.metrics.records_out += len(records)
            timestamps: list[float | None] = list(stamped.timestamps)
            await self.emit(Batch(records, positions, batch.origin, timestamps=timestamps))
        await self.forward_event_time(stamped.after)

    async def process_watermark(self, watermark: Watermark) -> None:
        """Upstream event time is not this stream's; only the end of input passes."""
        if watermark.timestamp == _INF:
            self._next_emit = _INF  # event time is over: no more periodic watermarks
            if self.tracker.status is WatermarkStatus.IDLE:
                await self.emit_watermark_status(WatermarkStatus.ACTIVE)
            await self.emit_watermark(watermark)

    async def process_watermark_status(self, status: WatermarkStatus) -> None:
        return None

    def next_timer(self) -> float | None:
        return None if self._next_emit == _INF else self._next_emit

    async def on_processing_time(self, now: float) -> None:
        self._next_emit = now + self.strategy.emit_interval
        await self.forward_event_time(self.tracker.on_periodic_emit(now))
