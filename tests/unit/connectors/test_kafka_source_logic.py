"""KafkaSource's pure logic, without a broker: partition ownership, starting-offset and
configuration validation, split states, deserialization of fetched records, event time
(timestamps and the deprecated ``watermarks=``).

Fetched records are real ``aiokafka.structs.ConsumerRecord`` values built by hand.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord

from streamflow.connectors.kafka import (
    BoundedOutOfOrderness,
    KafkaOutput,
    KafkaRecord,
    KafkaSource,
    OffsetReset,
    StartingOffsets,
)
from streamflow.connectors.kafka.deserializers import decode_batch, resolve_deserializer
from streamflow.connectors.kafka.offsets import KafkaSplit, OffsetKind, owner_of
from streamflow.connectors.kafka.records import new_record
from streamflow.errors import ConfigError, StateError
from streamflow.eventtime import WatermarkStrategy

# -- ownership -------------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 2, 3, 4, 5])
def test_every_partition_has_exactly_one_owner_and_a_topic_is_dealt_evenly(parallelism: int) -> None:
    for topic in ("orders", "clicks", "a", "t-123-456"):
        owners = [owner_of(topic, p, parallelism) for p in range(8)]
        assert all(0 <= o < parallelism for o in owners)
        load = Counter(owners)
        assert max(load.values()) - min(load.get(i, 0) for i in range(parallelism)) <= 1


def test_ownership_is_stable_across_calls_and_does_not_depend_on_other_partitions() -> None:
    # The same answer in every process (crc32, not Python's salted hash) ...
    assert [owner_of("orders", p, 3) for p in range(6)] == [owner_of("orders", p, 3) for p in range(6)]
    assert owner_of("orders", 0, 3) == __import__("zlib").crc32(b"orders") % 3
    # ... and partitions of one topic are consecutive subtasks, round robin.
    start = owner_of("orders", 0, 3)
    assert [owner_of("orders", p, 3) for p in range(6)] == [(start + p) % 3 for p in range(6)]


# -- starting offsets ------------------------------------------------------------------


def test_starting_offsets_constructors() -> None:
    assert StartingOffsets.earliest().kind is OffsetKind.EARLIEST
    assert StartingOffsets.latest().kind is OffsetKind.LATEST
    committed = StartingOffsets.committed(reset="latest")
    assert committed.kind is OffsetKind.COMMITTED and committed.reset is OffsetReset.LATEST
    assert StartingOffsets.timestamp(1.5).timestamp_ms == 1500
    at = datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert StartingOffsets.timestamp(at).timestamp_ms == int(at.timestamp() * 1000)
    given = StartingOffsets.offsets({("t", 0): 5}, default=OffsetReset.LATEST)
    assert given.specific == {("t", 0): 5} and given.reset is OffsetReset.LATEST


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: StartingOffsets.committed(reset="middle"), "must be 'earliest' or 'latest'"),
        (lambda: StartingOffsets.timestamp(datetime(2024, 5, 1)), "aware datetime"),
        (lambda: StartingOffsets.timestamp(-1), "before 1970"),
        (lambda: StartingOffsets.timestamp("yesterday"), "epoch seconds or a datetime"),
        (lambda: StartingOffsets.offsets({("t", 0): -1}), "offset >= 0"),
        (lambda: StartingOffsets.offsets({"t-0": 3}), r"maps \(topic, partition\)"),
    ],
)
def test_starting_offsets_reject_bad_values(build: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


# -- configuration ---------------------------------------------------------------------


def test_source_normalises_its_arguments() -> None:
    source = KafkaSource(
        ["h1:9092", "h2:9092"], topics="orders", output="record", discovery_interval=timedelta(seconds=5)
    )
    assert source.bootstrap_servers == "h1:9092,h2:9092"
    assert source.topics == ("orders",)
    assert source.output is KafkaOutput.RECORD
    assert source.discovery_interval == 5.0
    by_pattern = KafkaSource("h:1", topic_pattern="orders-.*")
    assert isinstance(by_pattern.topic_pattern, re.Pattern)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of topics"),
        ({"topics": "a", "topic_pattern": "a.*"}, "exactly one of topics"),
        ({"topics": []}, "topic name or a list"),
        ({"topic_pattern": "("}, "not a valid regex"),
        ({"topics": "a", "starting_offsets": StartingOffsets.committed()}, "needs a group_id"),
        ({"topics": "a", "starting_offsets": "earliest"}, "must be a StartingOffsets"),
        ({"topics": "a", "isolation_level": "serializable"}, "isolation_level"),
        ({"topics": "a", "value_deserializer": "yaml"}, "not a known deserializer"),
        ({"topics": "a", "key_deserializer": 42}, "or a callable"),
        ({"topics": "a", "output": "both"}, "KafkaOutput.VALUE or KafkaOutput.RECORD"),
        ({"topics": "a", "discovery_interval": 0}, "positive number of seconds"),
        ({"topics": "a", "request_timeout": None}, "request_timeout is required"),
        ({"topics": "a", "consumer_options": {"group_id": "g"}}, r"may not set \['group_id'\]"),
        ({"topics": "a", "watermarks": 5.0}, "BoundedOutOfOrderness"),
        ({"topics": "a", "watermark_strategy": 5.0}, "must be a WatermarkStrategy"),
        ({"topics": "a", "bounded": "yes"}, "True or False"),
    ],
)
def test_source_rejects_bad_configuration(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        KafkaSource("127.0.0.1:9092", **kwargs)


def test_source_rejects_empty_bootstrap_servers() -> None:
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        KafkaSource("", topics="a")


# -- split states ----------------------------------------------------------------------


def test_split_state_round_trips_and_knows_when_it_is_finished() -> None:
    split = KafkaSplit("orders", 3, 17, stop=20)
    assert KafkaSplit.restore(split.state(), "src") == split
    assert split.name == "orders-3" and not split.finished
    split.offset = 20
    assert split.finished
    assert not KafkaSplit("orders", 3, 99).finished  # unbounded: never


@pytest.mark.parametrize(
    "state",
    [{"path": "f.txt", "offset": 0, "line": 1}, {"topic": "t", "partition": 0, "offset": -1}, "t-0", None],
)
def test_restoring_a_foreign_split_is_a_state_error_naming_the_source(state: Any) -> None:
    with pytest.raises(StateError, match="KafkaSource 'src': restored split .* is not a Kafka split"):
        KafkaSplit.restore(state, "src")


# -- deserializers ---------------------------------------------------------------------


def record(offset: int, value: bytes | None, key: bytes | None = None, ts: int = 1_000) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic="t", partition=2, offset=offset, timestamp=ts, timestamp_type=0, key=key, value=value,
        checksum=None, serialized_key_size=0, serialized_value_size=0, headers=(("h", b"1"),),
    )


def decode(fetched: list[Any], output: KafkaOutput, value_fn: Any, key_fn: Any) -> Any:
    """decode_batch for partition 2 of topic "t", the partition ``record`` makes."""
    return decode_batch(fetched, output, value_fn, key_fn, topic="t", partition=2)


def test_values_pass_through_or_deserialize_and_tombstones_stay_none() -> None:
    fetched = [record(10, b'{"a": 1}'), record(11, None), record(12, b"[2]")]
    assert decode(fetched, KafkaOutput.VALUE, resolve_deserializer("bytes", "v"), None) == (
        [b'{"a": 1}', None, b"[2]"], [10, 11, 12], [1.0, 1.0, 1.0], None,
    )
    assert decode(fetched, KafkaOutput.VALUE, resolve_deserializer("json", "v"), None) == (
        [{"a": 1}, None, [2]], [10, 11, 12], [1.0, 1.0, 1.0], None,
    )
    assert decode(fetched, KafkaOutput.VALUE, resolve_deserializer("str", "v"), None)[0] == [
        '{"a": 1}', None, "[2]",
    ]


def test_records_that_fail_are_set_aside_with_offset_and_raw_record_and_the_rest_go_on() -> None:
    fetched = [record(10 + i, value, ts=1000 * i) for i, value in enumerate([b"1", b"{bad", b"3", b"\xff", b"5"])]
    values, offsets, timestamps, failures = decode(fetched, KafkaOutput.VALUE, resolve_deserializer("json", "v"), None)
    assert values == [1, 3, 5] and offsets == [10, 12, 14] and timestamps == [0.0, 2.0, 4.0]
    assert failures is not None and [f.position for f in failures] == [11, 13]
    assert all(isinstance(f.error, orjson.JSONDecodeError) for f in failures)
    assert failures[0].record == KafkaRecord("t", 2, 11, 1.0, None, b"{bad", (("h", b"1"),))  # ts 1000 ms


def test_a_custom_callable_sees_every_value_once_including_none() -> None:
    seen: list[Any] = []

    def upper(raw: bytes | None) -> str:
        seen.append(raw)
        if raw == b"boom":
            raise ValueError("boom")
        return "NONE" if raw is None else raw.decode().upper()

    fetched = [record(0, b"a"), record(1, b"boom"), record(2, None)]
    values, offsets, _, failures = decode(fetched, KafkaOutput.VALUE, upper, None)
    assert values == ["A", "NONE"] and offsets == [0, 2]
    assert seen == [b"a", b"boom", None]
    assert failures is not None and str(failures[0].error) == "boom"


def test_record_output_has_every_field_and_a_bad_key_fails_the_record() -> None:
    fetched = [record(7, b'{"x": 1}', key=b"k1", ts=1_700_000_000_123), record(8, b"{}", key=b"\xff")]
    values, offsets, timestamps, failures = decode(
        fetched, KafkaOutput.RECORD, resolve_deserializer("json", "v"), resolve_deserializer("str", "k")
    )
    assert values == [KafkaRecord("t", 2, 7, 1_700_000_000.123, "k1", {"x": 1}, (("h", b"1"),))]
    assert offsets == [7] and timestamps == [1_700_000_000.123]
    assert failures is not None and failures[0].position == 8
    assert isinstance(failures[0].error, UnicodeDecodeError)


def test_record_output_of_bytes_as_read_by_the_record_batch_reader() -> None:
    """The records the source gets from its batch path are aiokafka's record-batch reader's
    own (no topic or partition on them): the KafkaRecords say which partition they are from."""
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    builder.append(0, 1_700_000_000_123, b"k1", b"v1", [("h", b"1")])
    builder.append(1, 1_700_000_000_456, None, None, [])
    fetched = list(DefaultRecordBatch(bytes(builder.build())))
    bytes_as_read = resolve_deserializer("bytes", "v")
    values, offsets, timestamps, failures = decode(fetched, KafkaOutput.RECORD, bytes_as_read, bytes_as_read)
    assert values == [
        KafkaRecord("t", 2, 0, 1_700_000_000.123, b"k1", b"v1", (("h", b"1"),)),
        KafkaRecord("t", 2, 1, 1_700_000_000.456, None, None, ()),
    ]
    assert offsets == [0, 1] and timestamps == [1_700_000_000.123, 1_700_000_000.456] and failures is None
    assert decode(fetched, KafkaOutput.VALUE, bytes_as_read, None) == ([b"v1", None], [0, 1], [1_700_000_000.123, 1_700_000_000.456], None)


def test_new_record_builds_an_ordinary_kafka_record() -> None:
    args: tuple[Any, ...] = ("t", 3, 42, 1.5, b"k", "v", (("h", b"x"),))
    fast, slow = new_record(*args), KafkaRecord(*args)
    assert new_record is not KafkaRecord  # the fast constructor is in use
    assert type(fast) is KafkaRecord and fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.offset = 43  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(fast)) == slow
    as_text: tuple[Any, ...] = ("t", 3, 42, 1.5, "k", "v", ())  # orjson writes no bytes
    assert orjson.dumps(new_record(*as_text)) == orjson.dumps(KafkaRecord(*as_text))
    assert dataclasses.replace(fast, offset=43) == KafkaRecord("t", 3, 43, 1.5, b"k", "v", (("h", b"x"),))


# -- event time ------------------------------------------------------------------------


def test_the_deprecated_watermarks_argument_becomes_the_equal_watermark_strategy() -> None:
    with pytest.warns(DeprecationWarning, match=r"watermark_strategy=WatermarkStrategy\.for_bounded_out_of_orderness\(2\.0\)\.with_idleness\(5\.0\)"):
        source = KafkaSource("127.0.0.1:9092", topics="a", watermarks=BoundedOutOfOrderness(2.0, idle_timeout=5.0))
    assert source.watermark_strategy == WatermarkStrategy.for_bounded_out_of_orderness(2.0).with_idleness(5.0)


def test_both_event_time_arguments_at_once_are_refused_saying_which_to_drop() -> None:
    with pytest.raises(ConfigError, match="drop watermarks"):
        KafkaSource(
            "127.0.0.1:9092", topics="a", watermarks=BoundedOutOfOrderness(1.0),
            watermark_strategy=WatermarkStrategy.for_monotonous_timestamps(),
        )


@pytest.mark.parametrize(
    "kwargs", [{"max_out_of_orderness": -1}, {"idle_timeout": 0}, {"max_out_of_orderness": "1s"}]
)
def test_bounded_out_of_orderness_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="BoundedOutOfOrderness"):
        BoundedOutOfOrderness(**kwargs)
