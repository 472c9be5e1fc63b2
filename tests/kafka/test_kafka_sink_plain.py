"""KafkaSink with delivery guarantees NONE and AT_LEAST_ONCE, and how records become
Kafka records (serializers, keys, partitions, a topic per record), on a real broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from kafka_sink_kit import EO, ctx, new_topic, opened
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink
from streamflow.errors import ConnectorError, UserFunctionError
from streamflow.testing.kafka import read_committed, unique_topic

ALO = DeliveryGuarantee.AT_LEAST_ONCE
NONE = DeliveryGuarantee.NONE
TOO_BIG = b"x" * (2 * 1024 * 1024)  # over the broker's default message.max.bytes (1 MiB)


async def test_at_least_once_waits_for_every_record_at_the_barrier(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=3)
    sink = KafkaSink(kafka_bootstrap, topic, delivery_guarantee=ALO, value_serializer="str",
                     producer_config={"linger_ms": 60_000})  # a lingering batch must not stall the flush
    w = await opened(sink, ctx())
    try:
        records = [f"r{i}" for i in range(2000)]
        await w.write(records[:1000])
        await w.write(records[1000:])
        assert w.in_flight > 0  # write() submits and returns; nothing awaited delivery yet
        assert await w.snapshot(1) == []  # at-least-once keeps no state ...
        assert w.in_flight == 0  # ... but the barrier returns only once Kafka acknowledged all
        got = [r.value.decode() for r in await read_committed(kafka_bootstrap, topic)]
        assert sorted(got) == sorted(records)
    finally:
        await w.close()


async def test_at_least_once_fails_the_checkpoint_when_kafka_rejects_a_batch(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(KafkaSink(kafka_bootstrap, topic, delivery_guarantee=ALO), ctx())
    try:
        await w.write([b"fine", TOO_BIG])
        with pytest.raises(ConnectorError, match="Kafka did not accept a batch of records"):
            await w.snapshot(1)
    finally:
        await w.close()


async def test_none_does_not_wait_but_still_surfaces_send_errors(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(KafkaSink(kafka_bootstrap, topic, delivery_guarantee=NONE), ctx())
    try:
        await w.write([b"a"])
        await w.snapshot(1)  # no waiting; fine
        await w.write([TOO_BIG])
        with pytest.raises(ConnectorError, match="Kafka did not accept a batch of records"):
            await w.finish()
    finally:
        await w.close()
    assert [r.value for r in await read_committed(kafka_bootstrap, topic)] == [b"a"]


async def test_keys_values_and_the_default_partitioner_match_kafkas(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=4)
    sink = KafkaSink(kafka_bootstrap, topic, key=lambda r: r["user"], key_serializer="str",
                     value_serializer="json")
    records = [{"user": f"u{i % 7}", "n": i} for i in range(70)]
    w = await opened(sink, ctx())
    try:
        await w.write(records)
        await w.finish()
    finally:
        await w.close()
    got = await read_committed(kafka_bootstrap, topic)
    kafka = DefaultPartitioner()
    assert sorted((orjson.loads(r.value)["n"] for r in got)) == list(range(70))
    for r in got:
        assert r.key is not None
        assert orjson.loads(r.value)["user"] == r.key.decode()
        assert r.partition == kafka(r.key, [0, 1, 2, 3], [0, 1, 2, 3])  # as any Kafka producer
    # Per key, order is kept (one partition per key).
    for user in {r["user"] for r in records}:
        ns = [orjson.loads(r.value)["n"] for r in got if r.key == user.encode()]
        assert ns == sorted(ns)


async def test_custom_partitioner_and_serializer_and_unkeyed_records(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=3)

    def by_field(record: Any, key: bytes | None, count: int) -> int:
        assert key is None and count == 3
        return int(record[0]) % count

    sink = KafkaSink(kafka_bootstrap, topic, partitioner=by_field, value_serializer=lambda r: f"{r[0]}:{r[1]}".encode())
    w = await opened(sink, ctx())
    try:
        await w.write([(i, "v") for i in range(30)])
        await w.finish()
    finally:
        await w.close()
    got = await read_committed(kafka_bootstrap, topic)
    assert len(got) == 30
    assert all(int(r.value.split(b":")[0]) % 3 == r.partition for r in got)
    # Unkeyed records without a partitioner: one partition per written batch, rotating.
    w = await opened(KafkaSink(kafka_bootstrap, topic, value_serializer="str"), ctx())
    try:
        for batch in range(3):
            await w.write([f"b{batch}-{i}" for i in range(10)])
        await w.finish()
    finally:
        await w.close()
    unkeyed = [r for r in await read_committed(kafka_bootstrap, topic) if r.value.startswith(b"b")]
    by_batch = {r.value.split(b"-")[0]: set() for r in unkeyed}
    for r in unkeyed:
        by_batch[r.value.split(b"-")[0]].add(r.partition)
    assert all(len(p) == 1 for p in by_batch.values())
    assert len({next(iter(p)) for p in by_batch.values()}) == 3


@pytest.mark.parametrize("guarantee", [ALO, EO])
async def test_a_topic_per_record(kafka_bootstrap: str, guarantee: DeliveryGuarantee) -> None:
    evens, odds = await new_topic(kafka_bootstrap, 1), await new_topic(kafka_bootstrap, 1)
    sink = KafkaSink(kafka_bootstrap, lambda n: evens if n % 2 == 0 else odds, delivery_guarantee=guarantee,
                     value_serializer=lambda n: str(n).encode(), transactional_id_prefix=evens)
    w = await opened(sink, ctx())
    try:
        await w.write(list(range(10)))
        await w.snapshot(1)
        await w.notify_checkpoint_complete(1)
    finally:
        await w.close()
    assert [int(r.value) for r in await read_committed(kafka_bootstrap, evens)] == [0, 2, 4, 6, 8]
    assert [int(r.value) for r in await read_committed(kafka_bootstrap, odds)] == [1, 3, 5, 7, 9]


async def test_a_missing_topic_and_bad_records_are_clear_errors(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    missing = unique_topic("missing")
    sink = KafkaSink(kafka_bootstrap, lambda r: missing if r == "lost" else topic, value_serializer="str",
                     producer_config={"request_timeout_ms": 1000})
    w = await opened(sink, ctx())
    try:
        with pytest.raises(ConnectorError, match=f"topic '{missing}' does not exist.*the sink never creates topics"):
            await w.write(["lost"])
        with pytest.raises(UserFunctionError, match=r"serializing record 42 failed: TypeError\(.expected str, got int"):
            await w.write([42])
    finally:
        await w.close()
    bad = KafkaSink(kafka_bootstrap, topic, partitioner=lambda r, k, n: 5)
    w = await opened(bad, ctx())
    try:
        with pytest.raises(UserFunctionError, match=r"partitioner returned 5; '.*' has partitions 0..0"):
            await w.write([b"x"])
    finally:
        await w.close()
