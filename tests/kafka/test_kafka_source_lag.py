"""KafkaSource's consumer lag (pendingRecords) on the real broker: reported per source
subtask while a slow sink holds the reader back, and down to 0 once all is read."""

from __future__ import annotations

import asyncio
import time

from streamflow.connectors.kafka import KafkaSource
from streamflow.metrics.definitions import Scope
from streamflow.testing.kafka import unique_topic
from streamflow.testing.slow_sink import SlowSink
from kafka_source_kit import fill, job


async def test_pending_records_follow_the_backlog_down_to_zero(kafka_bootstrap: str) -> None:
    topic = unique_topic("lag")
    await fill(kafka_bootstrap, topic, partitions=2, per_partition=1000)
    sink = SlowSink(per_batch=0.02)
    env = job(1).set_source_batch_size(50).set_channel_capacity(2)
    (
        env.from_source(KafkaSource(kafka_bootstrap, topics=topic, value_deserializer="str"), name="orders").uid("src")
        .sink_to(sink).uid("slow")
    )
    client = env.execute_async("lag")
    seen: list[tuple[int, float]] = []  # (records written so far, pendingRecords)
    deadline = time.monotonic() + 30
    try:
        while not (seen and seen[-1][1] == 0 and sink.written == 2000):
            assert time.monotonic() < deadline, f"lag readings {seen[-5:]}, {sink.written} written"
            pending = client.metrics()["operators"].get("src[0]", {}).get("connector", {}).get("pendingRecords")
            if pending is not None:
                seen.append((sink.written, pending))
            await asyncio.sleep(0.02)
        reading = client.metrics_registry.sample()
    finally:
        await client.cancel()
    assert max(p for _, p in seen) > 500  # the backlog was seen while the sink held the reader back
    # the backlog and what was written account for the whole topic (up to the batches in flight)
    assert all(written + pending >= 2000 - 50 * 6 for written, pending in seen)
    assert [p for _, p in seen] == sorted((p for _, p in seen), reverse=True)  # it only drains
    assert reading.value(Scope.OPERATOR, "pendingRecords", "src", "src", "0") == 0
