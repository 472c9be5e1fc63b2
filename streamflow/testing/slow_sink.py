"""A sink that is slow on purpose, for tests and experiments about backpressure."""

from __future__ import annotations

import asyncio
from typing import Any

from streamflow.api.connector import SinkContext, SinkWriterBase

__all__ = ["SlowSink", "SlowWriter"]


class SlowSink:
    """Waits ``per_batch`` seconds per batch plus ``per_record`` seconds per record (an
    awaited sleep: the sink task is busy, the event loop stays free), like a slow
    database, and counts what its writers received in ``written`` (in-process jobs)."""

    def __init__(self, *, per_batch: float = 0.0, per_record: float = 0.0) -> None:
        self.per_batch = per_batch
        self.per_record = per_record
        self.written = 0

    def create_writer(self, ctx: SinkContext) -> SlowWriter:
        return SlowWriter(self)


class SlowWriter(SinkWriterBase):
    """One subtask's writer of a :class:`SlowSink` (declared as create_writer's return
    type, which ``sink_to`` checks against the writer contract)."""

    def __init__(self, sink: SlowSink) -> None:
        self._sink = sink

    async def write(self, records: list[Any]) -> None:
        await asyncio.sleep(self._sink.per_batch + len(records) * self._sink.per_record)
        self._sink.written += len(records)

