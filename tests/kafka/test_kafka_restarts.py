"""In-process restarts close every Kafka client of the failed attempt.

Another sink fails while opening (as a database sink does while its server is down), at
a different moment of each attempt, so the attempt's Kafka source and sinks are cancelled
at every stage of their own start: before connecting, while aiokafka bootstraps (the
window where a cancel used to drop a connection unclosed: ``Unclosed
AIOKafkaConnection`` on each restart), while transactions are initialised, and after.
No connection may be left unclosed, and the exactly-once output is exact once the
flaky sink opens.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from kafka_sink_kit import new_topic, no_unclosed_connections, values
from streamflow import RestartStrategy, StreamEnvironment
from streamflow.api.connector import SinkContext, SinkWriterBase
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.errors import ConnectorError
from streamflow.testing.kafka import produce

FAILED_OPENS = 160  # two subtasks: 80 failed attempts
N = 200


class FlakySink:
    """Fails its first FAILED_OPENS opens, each after a different short delay (0 to 15
    ms in 0.25 ms steps), with a retriable error."""

    def __init__(self) -> None:
        self.opens = 0

    def create_writer(self, ctx: SinkContext) -> Any:
        return FlakyWriter(self)


class FlakyWriter(SinkWriterBase):
    def __init__(self, sink: FlakySink) -> None:
        self.sink = sink

    async def open(self) -> None:
        self.sink.opens += 1
        if self.sink.opens <= FAILED_OPENS:
            await asyncio.sleep((self.sink.opens % 60) * 0.00025)
            raise ConnectorError("the database is down")

    async def write(self, records: list[Any]) -> None:
        return None


async def test_restarts_while_kafka_clients_start_leave_no_connection_unclosed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    source_topic = await new_topic(kafka_bootstrap, partitions=2, prefix="restarts-in")
    eo_topic = await new_topic(kafka_bootstrap, partitions=2, prefix="restarts-eo")
    alo_topic = await new_topic(kafka_bootstrap, partitions=2, prefix="restarts-alo")
    await produce(kafka_bootstrap, source_topic, [str(i).encode() for i in range(N)])

    with no_unclosed_connections():
        env = StreamEnvironment(parallelism=2)
        env.disable_operator_chaining()  # every operator its own task: they open concurrently
        env.enable_checkpointing(0.05, directory=tmp_path)
        env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=FAILED_OPENS, delay=0))
        numbers = env.from_source(KafkaSource(kafka_bootstrap, topics=source_topic, bounded=True,
                                              value_deserializer="str")).uid("in")
        numbers.sink_to(FlakySink()).uid("flaky")
        numbers.sink_to(KafkaSink(kafka_bootstrap, eo_topic, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                                  transactional_id_prefix=eo_topic, value_serializer="str")).uid("eo")
        numbers.sink_to(KafkaSink(kafka_bootstrap, alo_topic, value_serializer="str")).uid("alo")
        result = await env.execute("restarts")

    assert result.attempts == FAILED_OPENS // 2 + 1
    assert Counter(await values(kafka_bootstrap, eo_topic)) == Counter(str(i) for i in range(N))
    assert set(await values(kafka_bootstrap, alo_topic)) == {str(i) for i in range(N)}
