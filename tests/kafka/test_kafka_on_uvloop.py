"""A Kafka -> map -> Kafka exactly-once job on uvloop (``streamflow.run(main(), loop="uvloop")``)
against the real broker, with a failure in the middle: the output a read_committed
consumer sees is every record once, as on asyncio's loop."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest

import streamflow
from kafka_sink_kit import new_topic, values
from streamflow import RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaOutput, KafkaRecord, KafkaSink, KafkaSource
from streamflow.testing.kafka import create_topic, produce, unique_topic

if sys.platform == "win32":  # pragma: no cover - uvloop has no Windows build
    pytest.skip("uvloop does not run on Windows", allow_module_level=True)

N = 2000


def test_an_exactly_once_kafka_job_on_uvloop_survives_a_failure(kafka_bootstrap: str, tmp_path: Path) -> None:
    loops: set[str] = set()
    calls = [0]

    def upper(record: object) -> tuple[bytes, bytes]:
        """Fails once, halfway: the attempt fails and the job restores its checkpoint."""
        loops.add(type(asyncio.get_running_loop()).__module__)
        calls[0] += 1
        if calls[0] == N // 2:
            raise RuntimeError("the failure in the middle")
        assert isinstance(record, KafkaRecord)
        return record.key, record.value.upper()

    async def main() -> tuple[str, int]:
        source = unique_topic("uvloop-in")
        await create_topic(kafka_bootstrap, source, 3)
        await produce(kafka_bootstrap, source, [b"v%d" % i for i in range(N)],
                      keys=[b"k%d" % (i % 7) for i in range(N)])
        sink = await new_topic(kafka_bootstrap, partitions=3)
        env = StreamEnvironment(parallelism=2)
        env.enable_checkpointing(0.05, directory=tmp_path)
        env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=2, delay=0))
        env.set_source_batch_size(50)
        (
            env.from_source(KafkaSource(kafka_bootstrap, topics=source, bounded=True, output=KafkaOutput.RECORD))
            .uid("in")
            .map(upper).uid("upper")
            .sink_to(KafkaSink(kafka_bootstrap, sink, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                               transactional_id_prefix=sink, key=lambda pair: pair[0],
                               value_serializer=lambda pair: pair[1])).uid("out")
        )
        result = await env.execute("on-uvloop")
        return sink, result.attempts

    sink, attempts = streamflow.run(main(), loop="uvloop")
    assert attempts == 2  # the failure happened and the job restored from a checkpoint
    assert loops == {"uvloop"}
    got = streamflow.run(values(kafka_bootstrap, sink), loop="uvloop")
    assert Counter(got) == Counter(f"V{i}" for i in range(N))
