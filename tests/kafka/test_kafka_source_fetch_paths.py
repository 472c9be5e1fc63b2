"""KafkaSource against the real broker on both of its read paths: record batches decoded
without aiokafka's ConsumerRecords (the normal path, ``connectors/kafka/fetch.py``) and
aiokafka's public ``getmany`` (the fallback when aiokafka's internals differ). Each test
runs on both and must see the same records: transactions of two producers interleaved
and aborted (read_committed and read_uncommitted), a start inside a record batch (plain
and gzip-compressed), and every field of a KafkaRecord."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from streamflow.connectors.debug import CollectSink
from streamflow.connectors.kafka import KafkaOutput, KafkaRecord, KafkaSource, StartingOffsets
from streamflow.connectors.kafka import fetch
from streamflow.connectors.kafka import reader as reader_module
from streamflow.testing.kafka import create_topic, unique_topic
from kafka_source_kit import job


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"kafka-source-paths::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


@pytest.fixture(params=["batches", "public"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The read path under test; checks afterwards that every reader took it."""
    taken: list[bool] = []
    if request.param == "public":
        monkeypatch.setattr(fetch, "_unsupported", lambda: "forced by the test")
    real = reader_module.read_batches

    def spy(consumer: Any, where: str) -> bool:
        taken.append(real(consumer, where))
        return taken[-1]

    monkeypatch.setattr(reader_module, "read_batches", spy)
    yield request.param
    assert taken and all(ok == (request.param == "batches") for ok in taken)


async def transactions_of_two_producers(bootstrap: str, topic: str) -> None:
    """Partition 0 gets, in this order: a1 (A), b1 (B), A commits, B aborts, b2 (B),
    a2 (A), B commits, a3 (A), A aborts. Committed: a1, b2; aborted: b1, a2, a3."""
    a = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-a")
    b = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-b")
    await a.start()
    await b.start()
    try:
        await a.begin_transaction()
        await b.begin_transaction()
        await a.send_and_wait(topic, b"a1", partition=0)
        await b.send_and_wait(topic, b"b1", partition=0)
        await a.commit_transaction()
        await b.abort_transaction()
        await b.begin_transaction()
        await a.begin_transaction()
        await b.send_and_wait(topic, b"b2", partition=0)
        await a.send_and_wait(topic, b"a2", partition=0)
        await b.commit_transaction()
        await a.send_and_wait(topic, b"a3", partition=0)
        await a.abort_transaction()
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.parametrize(
    ("isolation_level", "expected"),
    [("read_committed", ["a1", "b2"]), ("read_uncommitted", ["a1", "b1", "b2", "a2", "a3"])],
)
async def test_interleaved_transactions_are_read_as_their_isolation_level_says(
    kafka_bootstrap: str, out: str, path: str, isolation_level: str, expected: list[str]
) -> None:
    topic = unique_topic("paths-txn")
    await create_topic(kafka_bootstrap, topic, 1)
    await transactions_of_two_producers(kafka_bootstrap, topic)
    env = job(1)
    env.from_source(
        KafkaSource(kafka_bootstrap, topics=topic, bounded=True, isolation_level=isolation_level,
                    value_deserializer="str")
    ).uid("src").sink_to(CollectSink(out))
    await env.execute(f"paths-txn-{path}")
    assert CollectSink.results(out) == expected


@pytest.mark.parametrize("compression", [None, "gzip"])
async def test_a_start_inside_a_record_batch_reads_from_that_offset_on(
    kafka_bootstrap: str, out: str, path: str, compression: str | None
) -> None:
    """Kafka answers a fetch with whole record batches: the records of the batch before
    the start offset come back too and must not be handed out (a compressed batch too)."""
    topic = unique_topic("paths-inside")
    await create_topic(kafka_bootstrap, topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type=compression)
    await producer.start()
    try:
        one_batch = producer.create_batch()
        for i in range(10):
            assert one_batch.append(key=None, value=b"%d" % i, timestamp=None) is not None
        one_batch.close()
        await (await producer.send_batch(one_batch, topic, partition=0))
    finally:
        await producer.stop()
    env = job(1)
    env.from_source(
        KafkaSource(kafka_bootstrap, topics=topic, bounded=True, value_deserializer="str",
                    starting_offsets=StartingOffsets.offsets({(topic, 0): 6}))
    ).uid("src").sink_to(CollectSink(out))
    await env.execute(f"paths-inside-{path}")
    assert CollectSink.results(out) == ["6", "7", "8", "9"]


@pytest.mark.parametrize("deserialize", [False, True], ids=["bytes", "deserialized"])
async def test_records_carry_every_field(kafka_bootstrap: str, out: str, path: str, deserialize: bool) -> None:
    topic = unique_topic("paths-record")
    await create_topic(kafka_bootstrap, topic, 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"n": 1}', key=b"user-1", partition=1, timestamp_ms=1_700_000_000_123,
                                     headers=[("trace", b"abc"), ("trace", b"def")])
        await producer.send_and_wait(topic, None, key=b"user-2", partition=1, timestamp_ms=1_700_000_000_456)
    finally:
        await producer.stop()
    options: dict[str, Any] = {"key_deserializer": "str", "value_deserializer": "json"} if deserialize else {}
    env = job(1)
    env.from_source(
        KafkaSource(kafka_bootstrap, topics=topic, bounded=True, output=KafkaOutput.RECORD, **options)
    ).uid("src").sink_to(CollectSink(out))
    await env.execute(f"paths-record-{path}")
    key1, key2, value = ("user-1", "user-2", {"n": 1}) if deserialize else (b"user-1", b"user-2", b'{"n": 1}')
    assert CollectSink.results(out) == [
        KafkaRecord(topic, 1, 0, 1_700_000_000.123, key1, value, (("trace", b"abc"), ("trace", b"def"))),
        KafkaRecord(topic, 1, 1, 1_700_000_000.456, key2, None, ()),  # a tombstone
    ]
    assert all(type(r) is KafkaRecord for r in CollectSink.results(out))
