"""The broker goes away while an exactly-once Kafka -> Kafka job runs, and comes back.

A broker of the test's own (not the shared one) is stopped mid-run and restarted on the
same ports and data. Checkpoints that cannot finish time out, the attempt fails, the
restart strategy retries from the latest checkpoint until the broker answers again, and
the committed output still holds every record exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.devtools.kafka_broker import KafkaBroker
from streamflow.testing.kafka import create_topic, produce, read_committed, undecided_partitions

N = 6_000


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


async def slow_upper(value: str) -> str:
    """Paced, so the job is still running when the broker goes away."""
    if int(value) % 100 == 0:
        await asyncio.sleep(0.05)
    return f"out-{value}"


async def test_exactly_once_job_survives_a_broker_restart(own_broker: KafkaBroker, tmp_path: Path) -> None:
    bootstrap = own_broker.bootstrap_servers
    await create_topic(bootstrap, "in", partitions=4)
    await create_topic(bootstrap, "out", partitions=4)
    await produce(bootstrap, "in", [str(i).encode() for i in range(N)])

    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.3, directory=tmp_path / "chk", timeout=3.0)
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=30, delay=1.0))
    (
        env.from_source(
            KafkaSource(bootstrap, topics="in", bounded=True, value_deserializer="str", request_timeout=5.0)
        ).uid("in")
        .map(slow_upper).uid("upper")
        .sink_to(KafkaSink(bootstrap, "out", delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                           transactional_id_prefix="outage", value_serializer="str",
                           producer_config={"request_timeout_ms": 5_000})).uid("out")
    )
    client = env.execute_async("broker-outage")
    deadline = time.monotonic() + 30
    while client.metrics()["checkpoints"]["completed"] < 2:  # some output is committed first
        assert time.monotonic() < deadline, "no checkpoint completed before the outage"
        await asyncio.sleep(0.1)

    await asyncio.to_thread(own_broker.stop)
    await asyncio.sleep(3.0)
    await asyncio.to_thread(own_broker.start)
    result = await asyncio.wait_for(client.wait(), 90)

    assert result.attempts >= 2, "the outage should have failed at least one attempt"
    got = Counter(r.value.decode() for r in await read_committed(bootstrap, "out"))
    assert got == Counter(f"out-{i}" for i in range(N))
    assert await undecided_partitions(bootstrap, "out") == {}
