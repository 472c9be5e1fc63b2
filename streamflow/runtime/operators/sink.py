"""The operator that feeds a sink's writer (see :mod:`streamflow.api.connector`).

Besides the SinkWriter protocol, a writer may have hooks, called when it defines them:

- ``write_timestamped(records, timestamps)`` instead of ``write(records)`` for a batch
  whose records carry event timestamps (``timestamps[i]`` is record i's, float seconds
  or None); batches without any still go to ``write``;
- ``on_watermark(timestamp)`` when event time advances at the sink;
- ``on_watermark_status(status)`` when the sink's input turns idle or active again;
- ``end_input()`` when the sink's input ended, before the final checkpoint (so what it
  writes then is committed by that checkpoint, unlike what ``finish`` writes after it).

The exchange writer of a job on several workers uses them all: records keep their event
time on the next worker, watermarks and idleness cross to it, and its end of input is
committed where the readers can see it.
"""

from __future__ import annotations

from typing import Any, Callable

from streamflow.api.connector import SinkContext
from streamflow.api.connector_checks import check_writer
from streamflow.api.functions import is_checkpointed_function
from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.elements import Batch, Watermark
from streamflow.eventtime.status import WatermarkStatus
from streamflow.graph.spec import OperatorSpec
from streamflow.runtime.operators.base import Restored, StreamOperator
from streamflow.runtime.operators.contexts import InitContext, OperatorContext, SnapshotContext, maybe_await
from streamflow.state.operator import OperatorStateStore, redistribute_split, restore_operator_state

__all__ = ["SinkOperator"]


class SinkOperator(StreamOperator):
    """Feeds a SinkWriter; its snapshot is the writer's (a 2PC writer pre-commits there).

    A writer that is a CheckpointedFunction keeps operator state as a function does
    (Flink's BufferingSink): ``initialize_state`` after ``open``, ``snapshot_state`` at
    each barrier after ``snapshot``, so a writer that flushes in ``snapshot`` stores what
    is left after the flush. The snapshot holds both (its ``sink`` and ``operator`` parts).
    """

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        self.writer: Any = None
        self.operator_state = OperatorStateStore()
        self._checkpointed = False
        self._write_timestamped: Callable[[list[Any], list[float | None]], Any] | None = None
        self._on_watermark: Callable[[float], Any] | None = None
        self._on_watermark_status: Callable[[WatermarkStatus], Any] | None = None
        self._end_input: Callable[[], Any] | None = None

    async def open(self, restored: Restored | None) -> None:
        restored_state = None
        if restored is not None:
            lists = [s.sink or [] for s in restored]
            restored_state = redistribute_split(lists, self.ctx.parallelism)[self.ctx.subtask_index]
            self.operator_state = restore_operator_state(
                [s.operator or {} for s in restored], self.ctx.subtask_index, self.ctx.parallelism
            )
        sink_ctx = SinkContext(
            job_name=self.ctx.job_name,
            run_id=self.ctx.run_id,
            operator_uid=self.uid,
            subtask_index=self.ctx.subtask_index,
            parallelism=self.ctx.parallelism,
            checkpointing=self.ctx.checkpointing,
            checkpoint_interval=self.ctx.checkpoint_interval,
            restored_state=restored_state,
            clock=self.ctx.clock,
            services=self.ctx.services,
        )
        self.writer = self.spec.function.create_writer(sink_ctx)
        check_writer(self.writer, self.uid)  # before open: a writer that breaks the contract fails the job at once
        self._checkpointed = is_checkpointed_function(self.writer)
        self._write_timestamped = _hook(self.writer, "write_timestamped")
        self._on_watermark = _hook(self.writer, "on_watermark")
        self._on_watermark_status = _hook(self.writer, "on_watermark_status")
        self._end_input = _hook(self.writer, "end_input")
        await self.writer.open()
        if self._checkpointed:
            await maybe_await(self.writer.initialize_state(InitContext(self.operator_state, None)))

    async def process(self, batch: Batch) -> None:
        count = len(batch.records)
        self.metrics.records_in += count
        if batch.timestamps is not None and self._write_timestamped is not None:
            await maybe_await(self._write_timestamped(batch.records, batch.timestamps))
        else:
            await self.writer.write(batch.records)
        self.ctx.services.faults.records_written(count)

    async def snapshot(self, checkpoint_id: int, snapshot_type: SnapshotType) -> OperatorSnapshot | None:
        state = await self.writer.snapshot(checkpoint_id)
        if self._checkpointed:
            await maybe_await(self.writer.snapshot_state(SnapshotContext(checkpoint_id)))
        self.ctx.services.faults.hit("after_pre_commit", checkpoint_id)
        operator = self.operator_state.snapshot()
        return OperatorSnapshot(sink=list(state), operator=operator if operator.get("states") else None)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await self.writer.notify_checkpoint_complete(checkpoint_id)
        self.ctx.services.faults.hit("after_commit", checkpoint_id)

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        await self.writer.notify_checkpoint_aborted(checkpoint_id)

    async def on_watermark(self, watermark: Watermark) -> None:
        if self._on_watermark is not None:
            await maybe_await(self._on_watermark(watermark.timestamp))

    async def on_watermark_status(self, status: WatermarkStatus) -> None:
        if self._on_watermark_status is not None:
            await maybe_await(self._on_watermark_status(status))

    async def end_input(self) -> None:
        if self._end_input is not None:
            await maybe_await(self._end_input())

    async def finish(self) -> None:
        await self.writer.finish()

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()


def _hook(writer: Any, name: str) -> Callable[..., Any] | None:
    """The writer's optional hook ``name``, or None."""
    hook = getattr(writer, name, None)
    return hook if callable(hook) else None
