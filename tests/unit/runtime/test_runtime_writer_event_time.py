"""Event time a reader reports reaching a sink writer's optional hooks: records with
their timestamps (``write_timestamped``), watermarks and the reader's own idleness
(``watermark_status``), in order with the records, as an exchange between workers needs
them. A scripted in-process reader and a recording writer stand in for the exchange's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.api.connector import SinkContext, SinkWriterBase, SourceBatch, SourceContext, SourceReaderBase
from streamflow.eventtime import WatermarkStatus

ACTIVE, IDLE = WatermarkStatus.ACTIVE, WatermarkStatus.IDLE


@dataclass(frozen=True)
class StatusSource:
    """Each poll returns the next scripted batch; the reader's ``watermark_status`` is
    then the status scripted beside it."""

    script: list[tuple[SourceBatch, WatermarkStatus]]

    def create_reader(self, ctx: SourceContext) -> StatusReader:
        return StatusReader(list(self.script))


class StatusReader(SourceReaderBase):
    def __init__(self, script: list[tuple[SourceBatch, WatermarkStatus]]) -> None:
        self.script = script
        self.watermark_status = ACTIVE

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        if not self.script:
            return None
        batch, self.watermark_status = self.script.pop(0)
        return batch

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return []


@dataclass(frozen=True)
class RecordingSink:
    events: ClassVar[list[tuple[Any, ...]]] = []
    timestamped: bool = True

    def create_writer(self, ctx: SinkContext) -> PlainWriter:
        return TimestampedWriter() if self.timestamped else PlainWriter()


class PlainWriter(SinkWriterBase):
    async def write(self, records: list[Any]) -> None:
        RecordingSink.events.append(("write", records))

    async def on_watermark(self, timestamp: float) -> None:
        RecordingSink.events.append(("watermark", timestamp))

    async def on_watermark_status(self, status: WatermarkStatus) -> None:
        RecordingSink.events.append(("status", status))


class TimestampedWriter(PlainWriter):
    async def write_timestamped(self, records: list[Any], timestamps: list[float | None]) -> None:
        RecordingSink.events.append(("write_timestamped", records, timestamps))


SCRIPT = [
    (SourceBatch(["a", "b"], [0, 1], "s", watermark=1.0, timestamps=[1.0, None]), ACTIVE),
    (SourceBatch([], [], "s", watermark=1.0), IDLE),  # every writer idle: nothing held back
    (SourceBatch([], [], "s"), IDLE),  # still idle: said once
    (SourceBatch(["c"], [2], "s", watermark=5.0), ACTIVE),  # back: ACTIVE before its records
]


async def run(timestamped: bool) -> list[tuple[Any, ...]]:
    RecordingSink.events.clear()
    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    env.from_source(StatusSource(SCRIPT)).uid("src").sink_to(RecordingSink(timestamped)).uid("out")
    await env.execute("writer-event-time")
    return list(RecordingSink.events)


async def test_a_writer_hears_timestamps_watermarks_and_idleness_in_order_with_the_records() -> None:
    assert await run(timestamped=True) == [
        ("write_timestamped", ["a", "b"], [1.0, None]),
        ("watermark", 1.0),
        ("status", IDLE),
        ("status", ACTIVE),
        ("write", ["c"]),  # a batch without timestamps costs nothing extra
        ("watermark", 5.0),
        ("watermark", float("inf")),
    ]


async def test_a_writer_without_the_timestamp_hook_gets_the_records_through_write() -> None:
    events = await run(timestamped=False)
    assert [e for e in events if e[0] == "write"] == [("write", ["a", "b"]), ("write", ["c"])]
