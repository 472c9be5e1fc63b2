"""The project's own broker: it starts, takes transactions, survives a restart with its
data, and hides aborted records from read_committed consumers (the property every
exactly-once test relies on)."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaProducer

from streamflow.devtools.kafka_broker import KafkaBroker
from streamflow.testing.kafka import create_topic, produce, read_committed, unique_topic


async def _one_committed_one_aborted(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", partition=0)
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def test_read_committed_hides_aborted_records(kafka_bootstrap: str) -> None:
    topic = unique_topic("broker")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await _one_committed_one_aborted(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [b"plain"], partition=0)

    assert [r.value for r in await read_committed(kafka_bootstrap, topic)] == [
        b"committed",
        b"plain",
    ]


async def test_restart_keeps_topics_and_committed_data(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    try:
        bootstrap = broker.start()
        topic = unique_topic("restart")
        await create_topic(bootstrap, topic, partitions=2)
        await produce(bootstrap, topic, [b"a", b"b"], partition=1)
        broker.stop()
        assert broker.start() == bootstrap  # same ports after a restart

        assert [r.value for r in await read_committed(bootstrap, topic)] == [b"a", b"b"]
    finally:
        broker.stop()
    assert (tmp_path / "kafka" / "log" / "meta.properties").exists()  # a given dir is kept
