"""KafkaSink's RecordSender without a broker: the loop for a fixed topic and Kafka's
default partitioner writes exactly what the loop for any sink writes (same partitions,
same records, same batch boundaries), and bad records are clear errors on both.

The producer is a stand-in that hands out aiokafka's real ``BatchBuilder`` (its append
decides what fits and what is not bytes) and records each submitted batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from streamflow.connectors.kafka import KafkaSink
from streamflow.connectors.kafka.batching import Deliveries, RecordSender
from streamflow.errors import UserFunctionError

PARTITIONS = 4
TOPIC = "out"


class RecordedBatch:
    """A real BatchBuilder that remembers what it accepted."""

    def __init__(self, size: int) -> None:
        self.builder = BatchBuilder(size, 0)
        self.entries: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, timestamp: Any, key: Any, value: Any) -> Any:
        accepted = self.builder.append(timestamp=timestamp, key=key, value=value)
        if accepted is not None:
            self.entries.append((None if key is None else bytes(key), None if value is None else bytes(value)))
        return accepted

    def record_count(self) -> int:
        return len(self.entries)

    def close(self) -> None:
        self.builder.close()


class Producer:
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    def create_batch(self) -> RecordedBatch:
        return RecordedBatch(self.batch_size)

    async def send_batch(self, batch: RecordedBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, batch.entries))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))


async def written(sink: KafkaSink, batches: list[list[Any]], batch_size: int = 16_384) -> list[Any]:
    sender = RecordSender(sink.codec(), operator="out", subtask=1)
    producer = Producer(batch_size)
    for records in batches:
        await sender.send(producer, records, Deliveries("test"))  # type: ignore[arg-type]
    return producer.sent


def the_topic(record: Any) -> str:
    return TOPIC


SINKS: dict[str, Callable[[Any], KafkaSink]] = {
    "bytes": lambda topic: KafkaSink("k:9092", topic, key=lambda r: r[0], value_serializer=lambda r: r[1]),
    "bytes-like": lambda topic: KafkaSink("k:9092", topic, key=lambda r: bytearray(r[0]),
                                          value_serializer=lambda r: memoryview(r[1])),
    "str-json": lambda topic: KafkaSink("k:9092", topic, key=lambda r: r[0].decode(), key_serializer="str",
                                        value_serializer=lambda r: orjson.dumps({"v": r[1].decode()})),
    "unkeyed": lambda topic: KafkaSink("k:9092", topic, value_serializer=lambda r: r[1]),
}


@pytest.mark.parametrize("batch_size", [16_384, 200], ids=["roomy", "batches-fill-up"])
@pytest.mark.parametrize("kind", sorted(SINKS))
async def test_a_fixed_topic_writes_what_the_general_loop_writes(kind: str, batch_size: int) -> None:
    records = [(b"user-%d" % (i % 13), b"value-%d" % i) for i in range(300)]
    batches = [records[:120], records[120:]]
    fast = await written(SINKS[kind](TOPIC), batches, batch_size)
    general = await written(SINKS[kind](the_topic), batches, batch_size)
    assert fast == general
    assert sum(len(entries) for _, _, entries in fast) == 300
    if kind != "unkeyed":
        kafka = DefaultPartitioner()
        partitions = list(range(PARTITIONS))
        for _, partition, entries in fast:
            assert all(partition == kafka(key, partitions, partitions) for key, _ in entries)
    if batch_size == 200:
        assert len(fast) > 2 * PARTITIONS  # full batches were submitted and new ones started


async def test_bytes_values_are_written_as_they_are() -> None:
    """The default serializers: bytes pass, bytearray and memoryview become bytes."""
    sink = KafkaSink("k:9092", TOPIC, key=lambda r: b"k" if isinstance(r, bytes) else bytearray(b"k"))
    sent = await written(sink, [[b"a", bytearray(b"b"), memoryview(b"c")]])
    assert [entries for _, _, entries in sent] == [[(b"k", b"a"), (b"k", b"b"), (b"k", b"c")]]


@pytest.mark.parametrize(
    ("sink", "record", "error"),
    [
        (KafkaSink("k:9092", TOPIC), "text", r"serializing record 'text' failed: TypeError\(.expected bytes, "
                                             r"got str; pass serializer 'str', 'json'"),
        (KafkaSink("k:9092", TOPIC), None, r"serializing record None failed: TypeError\(.expected bytes, got NoneType"),
        (KafkaSink("k:9092", TOPIC, key=lambda r: None), b"v", r"serializing record b'v' failed: TypeError\(.expected "
                                                             r"bytes, got NoneType"),
        (KafkaSink("k:9092", TOPIC, key=lambda r: r, key_serializer=lambda k: bytearray(k)), b"v",
         r"partitioning record b'v' failed: TypeError\(\"unhashable type: 'bytearray'"),
        (KafkaSink("k:9092", TOPIC, value_serializer=lambda r: r), 5, r"serializing record 5 failed: TypeError\("),
    ],
    ids=["str-as-bytes", "none-as-bytes", "none-key", "unhashable-key", "int-from-a-serializer"],
)
@pytest.mark.parametrize("topic", [TOPIC, the_topic], ids=["fixed-topic", "topic-function"])
async def test_a_bad_record_is_a_user_error_naming_the_sink_and_the_record(
    sink: KafkaSink, record: Any, error: str, topic: Any
) -> None:
    sink = KafkaSink("k:9092", topic, key=sink.key, key_serializer=sink.key_serializer,
                     value_serializer=sink.value_serializer)
    with pytest.raises(UserFunctionError, match=r"KafkaSink 'out'\[1\]: " + error) as raised:
        await written(sink, [[record]])
    assert raised.value.operator == "out"
