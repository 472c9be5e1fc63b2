"""KafkaSource against the real broker: what a record looks like (values, KafkaRecord),
records that do not deserialize under each error policy, timestamps and per-partition
watermarks from Kafka timestamps, and the errors for a missing topic and an unreachable broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamflow import ErrorPolicy, JobFailedError, KeyedProcessFunction
from streamflow.connectors.debug import CollectSink
from streamflow.connectors.kafka import KafkaOutput, KafkaRecord, KafkaSource
from streamflow.errors import ConnectorError, DeserializationError
from streamflow.eventtime import WatermarkStrategy
from streamflow.testing.kafka import create_topic, produce, unique_topic
from kafka_source_kit import job


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"kafka-source-records::{request.node.name}"
    CollectSink.clear(name)
    CollectSink.clear(f"{name}-dead")
    yield name
    CollectSink.clear(name)
    CollectSink.clear(f"{name}-dead")


# -- records ---------------------------------------------------------------------------


async def test_record_output_carries_key_value_headers_timestamp_and_position(
    kafka_bootstrap: str, out: str
) -> None:
    topic = unique_topic("record")
    await create_topic(kafka_bootstrap, topic, 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, b'{"n": 1}', key=b"user-1", partition=1, timestamp_ms=1_700_000_000_123,
            headers=[("trace", b"abc"), ("trace", b"def")],
        )
        await producer.send_and_wait(topic, None, key=b"user-1", partition=1, timestamp_ms=1_700_000_000_456)
    finally:
        await producer.stop()
    env = job(1)
    env.from_source(
        KafkaSource(
            kafka_bootstrap, topics=topic, bounded=True, output=KafkaOutput.RECORD,
            key_deserializer="str", value_deserializer="json",
        )
    ).uid("src").sink_to(CollectSink(out))
    await env.execute("record")
    assert CollectSink.results(out) == [
        KafkaRecord(topic, 1, 0, 1_700_000_000.123, "user-1", {"n": 1}, (("trace", b"abc"), ("trace", b"def"))),
        KafkaRecord(topic, 1, 1, 1_700_000_000.456, "user-1", None, ()),  # a tombstone
    ]


async def test_custom_value_deserializer(kafka_bootstrap: str, out: str) -> None:
    topic = unique_topic("custom")
    await create_topic(kafka_bootstrap, topic, 1)
    await produce(kafka_bootstrap, topic, [b"3", b"4"])
    env = job(1)
    env.from_source(
        KafkaSource(kafka_bootstrap, topics=topic, bounded=True, value_deserializer=lambda raw: int(raw) * 10)
    ).uid("src").sink_to(CollectSink(out))
    await env.execute("custom")
    assert CollectSink.results(out) == [30, 40]


# -- records that do not deserialize ---------------------------------------------------


async def topic_with_bad_json(bootstrap: str) -> str:
    topic = unique_topic("bad-json")
    await create_topic(bootstrap, topic, 1)
    await produce(bootstrap, topic, [b'{"n": 0}', b"not json", b'{"n": 2}', b"\xff", b'{"n": 4}'])
    return topic


def json_source(bootstrap: str, topic: str) -> KafkaSource:
    return KafkaSource(bootstrap, topics=topic, bounded=True, value_deserializer="json")


async def test_undecodable_record_fails_the_job_naming_source_topic_partition_and_offset(
    kafka_bootstrap: str, out: str
) -> None:
    topic = await topic_with_bad_json(kafka_bootstrap)
    env = job(1)
    env.from_source(json_source(kafka_bootstrap, topic)).uid("orders-src").sink_to(CollectSink(out))
    with pytest.raises(JobFailedError) as failed:
        await env.execute("bad-fail")
    cause = failed.value.__cause__
    assert isinstance(cause, DeserializationError)
    assert cause.operator == "orders-src" and cause.position == f"orders-src[0] {topic}-0 @ 1"
    assert f"could not deserialize the record at orders-src[0] {topic}-0 @ 1: JSONDecodeError" in str(cause)
    assert "b'not json'" in cause.record


async def test_skip_policy_drops_undecodable_records_and_counts_them(kafka_bootstrap: str, out: str) -> None:
    topic = await topic_with_bad_json(kafka_bootstrap)
    env = job(1)
    env.from_source(json_source(kafka_bootstrap, topic)).uid("src").with_error_policy(ErrorPolicy.skip()).sink_to(
        CollectSink(out)
    )
    result = await env.execute("bad-skip")
    assert CollectSink.results(out) == [{"n": 0}, {"n": 2}, {"n": 4}]
    assert result.metrics["operators"]["src[0]"]["records_skipped"] == 2


async def test_dead_letter_policy_sends_raw_records_with_position_and_error(kafka_bootstrap: str, out: str) -> None:
    topic = await topic_with_bad_json(kafka_bootstrap)
    dead = f"{out}-dead"
    env = job(1)
    (
        env.from_source(json_source(kafka_bootstrap, topic)).uid("src")
        .with_error_policy(ErrorPolicy.dead_letter(CollectSink(dead)))
        .map(lambda r: r["n"]).uid("n")
        .sink_to(CollectSink(out))
    )
    result = await env.execute("bad-dead-letter")
    assert CollectSink.results(out) == [0, 2, 4]
    letters = CollectSink.results(dead)
    assert [(d["operator"], d["subtask"], d["position"]) for d in letters] == [
        ("src", 0, f"src[0] {topic}-0 @ 1"),
        ("src", 0, f"src[0] {topic}-0 @ 3"),
    ]
    assert all(d["error"].startswith("JSONDecodeError") for d in letters)
    raw = [d["record"] for d in letters]
    assert [(r.topic, r.partition, r.offset, r.value) for r in raw] == [(topic, 0, 1, b"not json"), (topic, 0, 3, b"\xff")]
    assert result.metrics["operators"]["src[0]"]["records_dead_lettered"] == 2


# -- watermarks ------------------------------------------------------------------------


class StampAndProbe(KeyedProcessFunction):
    """Emits (value, its timestamp) and registers two event-time timers per record: one
    the bound (plus the microsecond that makes watermarks exclusive) behind its
    timestamp, which the watermark reaches once the newest record is in; one a little
    less far behind, which the newest record's never reaches."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value.value, ctx.timestamp()))
        ctx.timer_service.register_event_time_timer(ctx.timestamp() - 1.000001)
        ctx.timer_service.register_event_time_timer(ctx.timestamp() - 0.999)

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        out.collect(("timer", timestamp))


async def test_records_carry_their_kafka_timestamp_and_the_watermark_trails_the_newest_by_the_bound(
    kafka_bootstrap: str, out: str
) -> None:
    topic = unique_topic("watermarks")
    await create_topic(kafka_bootstrap, topic, 1)
    base = 1_700_000_000_000
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for name, at in (("a", 0), ("b", 2000), ("c", 1000), ("d", 5000)):  # "c" is out of order
            await producer.send_and_wait(topic, name.encode(), partition=0, timestamp_ms=base + at)
    finally:
        await producer.stop()
    env = job(1)
    env.from_source(
        KafkaSource(
            kafka_bootstrap, topics=topic, output=KafkaOutput.RECORD, value_deserializer="str",
            watermark_strategy=WatermarkStrategy.for_bounded_out_of_orderness(1.0),
        )
    ).uid("src").key_by(lambda r: r.partition).process(StampAndProbe()).uid("probe").sink_to(CollectSink(out))
    client = env.execute_async("watermarks")
    b = base / 1000
    # The watermark ends at b + 5 - 1.000001 (d's timestamp less the bound): every first
    # timer fires, the second of a, b and c fire, d's second (at b + 4.001) never does.
    fired = [b - 1.000001, b + 0.999999, b - 0.000001, b + 3.999999, b - 0.999, b + 1.001, b + 0.001]
    try:
        deadline = time.monotonic() + 10
        while len([r for r in CollectSink.results(out) if r[0] == "timer"]) < len(fired):
            assert time.monotonic() < deadline, CollectSink.results(out)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)  # three more periodic watermarks: nothing more fires
    finally:
        await client.cancel()
    got = CollectSink.results(out)
    assert [r for r in got if r[0] != "timer"] == [(n, pytest.approx(b + t)) for n, t in (("a", 0), ("b", 2), ("c", 1), ("d", 5))]
    assert sorted(t for name, t in got if name == "timer") == pytest.approx(sorted(fired))


class FireAtRecordTime(KeyedProcessFunction):
    """Registers an event-time timer at each record's timestamp; emits it when it fires."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.timer_service.register_event_time_timer(value.timestamp)

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        out.collect(timestamp)


async def keep_writing(bootstrap: str, topic: str, base_ms: int) -> None:
    """Partition 0 gets a record every 50 ms, timestamps 1 s apart, until cancelled."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(10_000):
            await producer.send_and_wait(topic, b"x", partition=0, timestamp_ms=base_ms + i * 1000)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()


@pytest.mark.parametrize("idle_timeout", [None, 0.3])
async def test_a_partition_without_records_holds_the_watermark_until_it_is_idle(
    kafka_bootstrap: str, out: str, idle_timeout: float | None
) -> None:
    topic = unique_topic("idle")
    await create_topic(kafka_bootstrap, topic, 2)  # partition 1 stays empty
    base = 1_700_000_000_000
    strategy = WatermarkStrategy.for_monotonous_timestamps()
    if idle_timeout is not None:
        strategy = strategy.with_idleness(idle_timeout)
    env = job(1)
    env.from_source(
        KafkaSource(
            kafka_bootstrap, topics=topic, output=KafkaOutput.RECORD,
            watermark_strategy=strategy,
        )
    ).uid("src").key_by(lambda r: r.partition).process(FireAtRecordTime()).uid("timers").sink_to(CollectSink(out))
    client = env.execute_async("idle")
    writer = asyncio.create_task(keep_writing(kafka_bootstrap, topic, base))
    try:
        if idle_timeout is None:
            await asyncio.sleep(1.5)
            assert CollectSink.results(out) == []  # the empty partition holds event time at -inf
        else:
            deadline = time.monotonic() + 10
            while len(CollectSink.results(out)) < 4:
                assert time.monotonic() < deadline, CollectSink.results(out)
                await asyncio.sleep(0.02)
            # Event time follows partition 0 alone, in order: timers fire up to its newest record.
            fired = CollectSink.results(out)
            assert fired == pytest.approx([base / 1000 + i for i in range(len(fired))])
    finally:
        writer.cancel()
        await client.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer


async def test_a_source_subtask_without_partitions_is_idle_and_holds_no_event_time_back(
    kafka_bootstrap: str, out: str
) -> None:
    topic = unique_topic("no-partitions")
    await create_topic(kafka_bootstrap, topic, 1)  # two source subtasks, one partition: subtask 1 has none
    base = 1_700_000_000_000
    env = job(2)
    env.from_source(
        KafkaSource(kafka_bootstrap, topics=topic, output=KafkaOutput.RECORD),
        watermark_strategy=WatermarkStrategy.for_monotonous_timestamps(),  # no idle timeout
    ).uid("src").key_by(lambda r: r.partition).process(FireAtRecordTime()).uid("timers").sink_to(CollectSink(out))
    client = env.execute_async("no-partitions")
    writer = asyncio.create_task(keep_writing(kafka_bootstrap, topic, base))
    try:
        deadline = time.monotonic() + 10
        while len(CollectSink.results(out)) < 4:
            assert time.monotonic() < deadline, CollectSink.results(out)
            await asyncio.sleep(0.02)
        fired = CollectSink.results(out)
        assert fired == pytest.approx([base / 1000 + i for i in range(len(fired))])
        tasks = client.metrics()["tasks"]
        idle = [name for name, task in tasks.items() if name.startswith("src[") and task["output_watermark"] == float("-inf")]
        assert len(idle) == 1  # the subtask without a partition sent no watermark, only IDLE
    finally:
        writer.cancel()
        await client.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer


# -- errors ----------------------------------------------------------------------------


async def test_a_missing_topic_fails_the_job_at_once_naming_it(kafka_bootstrap: str, out: str) -> None:
    present, missing = unique_topic("present"), unique_topic("missing")
    await create_topic(kafka_bootstrap, present, 1)
    env = job(2)
    env.from_source(KafkaSource(kafka_bootstrap, topics=[present, missing])).uid("src").sink_to(CollectSink(out))
    started = time.monotonic()
    with pytest.raises(JobFailedError) as failed:
        await env.execute("missing-topic")
    assert time.monotonic() - started < 10
    cause = failed.value.__cause__
    assert isinstance(cause, ConnectorError) and cause.topic == missing
    assert f"topic {missing!r} does not exist on the brokers at {kafka_bootstrap!r}" in str(cause)
    assert "create it first" in str(cause)


@pytest.mark.parametrize(
    ("servers", "why"),
    [
        ("127.0.0.1:1", "Unable to bootstrap"),  # nothing listens: refused at once
        ("10.255.255.1:9092", ""),  # nothing answers (or no route): bounded by request_timeout
    ],
)
async def test_an_unreachable_broker_fails_the_job_in_reasonable_time_naming_the_servers(
    out: str, servers: str, why: str
) -> None:
    env = job(1)
    env.from_source(KafkaSource(servers, topics="t", request_timeout=1.0)).uid("src").sink_to(CollectSink(out))
    started = time.monotonic()
    with pytest.raises(JobFailedError) as failed:
        await env.execute("unreachable")
    assert time.monotonic() - started < 10
    message = str(failed.value.__cause__)
    assert isinstance(failed.value.__cause__, ConnectorError)
    assert f"cannot reach a Kafka broker at bootstrap_servers={servers!r}" in message
    assert why in message


def test_dead_letter_records_encode_for_a_json_sink() -> None:
    """A dead letter's raw KafkaRecord is a plain dataclass: a JSON sink can write it
    (bytes aside, which callers turn into text)."""
    record = KafkaRecord("t", 0, 1, 1.5, None, None, ())
    assert orjson.loads(orjson.dumps(record)) == {
        "topic": "t", "partition": 0, "offset": 1, "timestamp": 1.5, "key": None, "value": None, "headers": [],
    }
