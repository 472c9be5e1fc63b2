"""An async operator driven the way a task drives it, for the async I/O unit tests.

:class:`AsyncHarness` builds an :class:`AsyncOperator` from the same settings
``map_async`` takes, feeds it batches and watermarks, serves its wake-ups (as the task's
mailbox would: ``on_wakeup`` from the test's own task, never from a call), and records
everything it emits, records (with their timestamps), watermarks and watermark statuses,
in one list in emission order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from streamflow.api.async_io import AsyncIOConfig, AsyncOrdering, AsyncRetry
from streamflow.api.errors_policy import FAIL, ErrorPolicy
from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.clock import ManualClock
from streamflow.core.elements import Batch, SourceRef, Watermark
from streamflow.eventtime.status import WatermarkStatus
from streamflow.graph.spec import OperatorKind, OperatorSpec
from streamflow.runtime.operators import make_operator
from streamflow.runtime.operators.async_io import AsyncOperator
from streamflow.runtime.operators.contexts import OperatorContext

MAX_PARALLELISM = 128
ORIGIN = SourceRef("src", 0, "split-0")


@dataclass(frozen=True)
class Out:
    """One emitted record, with the source position and event timestamp it carries."""

    record: Any
    position: Any
    origin: SourceRef | None
    timestamp: float | None = None


class AsyncHarness:
    def __init__(
        self,
        fn: Any,
        *,
        capacity: int = 10,
        timeout: float = 1.0,
        ordered: bool | str = False,
        retry: AsyncRetry | None = None,
        flat: bool = False,
        key_selector: Callable[[Any], Any] | None = None,
        policy: ErrorPolicy = FAIL,
        subtask: int = 0,
        parallelism: int = 1,
    ) -> None:
        config = AsyncIOConfig(
            capacity=capacity,
            timeout=timeout,
            ordering=AsyncOrdering.of(ordered, keyed=key_selector is not None),
            retry=retry,
            flat=flat,
        )
        spec = OperatorSpec(
            node_id=1, kind=OperatorKind.ASYNC, name="map_async", function=fn, uid="enrich",
            key_selector=key_selector, error_policy=policy, async_io=config,
        )  # fmt: skip
        ctx = OperatorContext(
            job_name="async-test", spec=spec, subtask_index=subtask, parallelism=parallelism,
            max_parallelism=MAX_PARALLELISM, clock=ManualClock(), keyed_backend=None, checkpointing=True,
            checkpoint_interval=1.0,
        )  # fmt: skip
        operator = make_operator(spec, ctx)
        assert isinstance(operator, AsyncOperator)
        self.operator = operator
        self.fn: Any = operator.fn  # the subtask's own copy of ``fn``: the one that is called
        self.out: list[Out | Watermark | WatermarkStatus] = []
        self.dead: list[dict[str, Any]] = []
        self.wakeups = 0
        self._woken = asyncio.Event()
        operator.emit = self._emit
        operator.emit_watermark = self._emit_watermark
        operator.emit_watermark_status = self._emit_status
        operator.dead_letter = self._dead_letter
        operator.request_wakeup = self._request_wakeup
        self._next_position = 0

    async def _emit(self, batch: Batch) -> None:
        positions = batch.positions or [None] * len(batch.records)
        stamps = batch.timestamps or [None] * len(batch.records)
        self.out.extend(Out(r, p, batch.origin, t) for r, p, t in zip(batch.records, positions, stamps))

    async def _emit_watermark(self, watermark: Watermark) -> None:
        self.out.append(watermark)

    async def _emit_status(self, status: WatermarkStatus) -> None:
        self.out.append(status)

    async def _dead_letter(self, batch: Batch) -> None:
        self.dead.extend(batch.records)

    def _request_wakeup(self) -> None:
        self.wakeups += 1
        self._woken.set()

    @property
    def records(self) -> list[Any]:
        return [o.record for o in self.out if isinstance(o, Out)]

    async def open(self, restored: list[OperatorSnapshot] | None = None) -> None:
        await self.operator.open(restored)

    async def process(
        self, records: list[Any], *, keys: list[Any] | None = None, timestamps: list[float | None] | None = None
    ) -> None:
        """One batch from ORIGIN; positions count on from the previous batch."""
        first = self._next_position
        self._next_position += len(records)
        positions = list(range(first, self._next_position))
        await self.operator.process(Batch(list(records), positions, ORIGIN, keys=keys, timestamps=timestamps))

    async def watermark(self, timestamp: float) -> None:
        await self.operator.process_watermark(Watermark(timestamp))

    async def status(self, status: WatermarkStatus) -> None:
        await self.operator.process_watermark_status(status)

    async def serve(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        """Serve wake-ups (``on_wakeup``, as the task does) until ``until()`` holds."""
        async with asyncio.timeout(timeout):
            while not until():
                await self._woken.wait()
                self._woken.clear()
                await self.operator.on_wakeup()

    async def snapshot(self) -> OperatorSnapshot:
        return await self.operator.snapshot(1, SnapshotType.CHECKPOINT)

    async def close(self) -> None:
        await self.operator.close()
