"""Exchange records and the reader's event time (pure: no broker)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import pickle
import uuid
from typing import NamedTuple

import pytest

from streamflow.connectors.kafka.exchange import KafkaExchange
from streamflow.connectors.kafka.exchange_codec import (
    MAX_PACK_BYTES,
    ExchangeKey,
    RecordKind,
    decode_key,
    decode_watermark,
    encode_key,
    encode_watermark,
    pack_records,
    unpack_records,
)
from streamflow.connectors.kafka.exchange_watermarks import ExchangeWatermarks
from streamflow.errors import ConfigError
from streamflow.eventtime import WatermarkStatus


class Point(NamedTuple):
    x: int
    y: float


@dataclasses.dataclass(frozen=True)
class Order:
    user: str
    items: tuple[str, ...]


VALUES = [
    ("user", 1), (1, (2.5, None)), {1: "a", (2, 3): {True}}, frozenset({b"x"}), decimal.Decimal("1.10"),
    datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc), datetime.date(2024, 1, 2),
    uuid.UUID(int=7), Point(1, 2.0), Order("u", ("a", "b")), bytes(range(5)), 2**80, float("inf"),
]


def test_records_cross_with_exactly_their_types() -> None:
    (pack,) = pack_records(VALUES)
    back, timestamps = unpack_records(pack)
    assert back == VALUES and timestamps is None
    assert [type(v) for v in back] == [type(v) for v in VALUES]
    assert type(back[2][(2, 3)]) is set and isinstance(next(iter(back[2])), int)


def test_a_pack_over_the_limit_is_split_and_a_lone_big_record_travels_alone() -> None:
    records = [f"record-{i}-" + "x" * 100 for i in range(1000)]
    packs = pack_records(records, limit=4096)
    assert len(packs) > 1 and all(len(p) <= 4096 for p in packs)
    assert [r for p in packs for r in unpack_records(p)[0]] == records
    big = ["y" * 10_000, "small"]
    assert [unpack_records(p) for p in pack_records(big, limit=4096)] == [(["y" * 10_000], None), (["small"], None)]
    assert MAX_PACK_BYTES < 1024 * 1024


def test_timestamps_travel_beside_their_records_through_split_packs() -> None:
    records = [f"record-{i}-" + "x" * 100 for i in range(1000)]
    timestamps: list[float | None] = [None if i % 7 == 0 else i * 0.5 for i in range(1000)]
    packs = pack_records(records, timestamps, limit=4096)
    assert len(packs) > 1
    back = [unpack_records(p) for p in packs]
    assert [r for rs, _ in back for r in rs] == records
    assert [t for rs, ts in back for t in (ts or [])] == timestamps
    assert all(ts is not None and len(ts) == len(rs) for rs, ts in back)


def test_a_pack_of_an_older_format_or_with_bad_timestamps_is_refused_by_name() -> None:
    older = b"\x01" + encode_key(RecordKind.DATA, 0, 2, "g")[1:]
    with pytest.raises(ValueError, match="format 1; this streamflow reads format 2 only.*savepoint"):
        decode_key(older)
    with pytest.raises(ValueError, match="not a list of as many"):
        unpack_records(pickle.dumps((["a", "b"], [1.0])))


def test_keys_say_kind_writer_and_generation() -> None:
    key = encode_key(RecordKind.WATERMARK, 3, 8, "gen-ä")
    assert decode_key(key) == ExchangeKey(RecordKind.WATERMARK, 3, 8, "gen-ä")
    assert decode_watermark(encode_watermark(12.5)) == 12.5
    for bad in (None, b"\x01\x00", b"\x03" + key[1:], key[:1] + b"\x09" + key[2:]):
        with pytest.raises(ValueError):
            decode_key(bad)
    with pytest.raises(ValueError, match="8 bytes"):
        decode_watermark(b"\x00")
    with pytest.raises(ValueError, match="pair \\(records, timestamps\\)"):
        unpack_records(pickle.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="pair"):
        unpack_records(pickle.dumps(["a list of format 1"]))


def ctl(kind: RecordKind, writer: int, writers: int = 2, generation: str = "g") -> ExchangeKey:
    return ExchangeKey(kind, writer, writers, generation)


def watermarks(partitions: int = 2, writers: int = 2) -> ExchangeWatermarks:
    marks = ExchangeWatermarks(writers, "g")
    for p in range(partitions):
        marks.add_partition(p)
    return marks


def mark(marks: ExchangeWatermarks, partition: int, writer: int, t: float, **kw: object) -> None:
    marks.on_control(partition, ctl(RecordKind.WATERMARK, writer, **kw), encode_watermark(t))  # type: ignore[arg-type]


def test_the_watermark_is_the_minimum_over_every_writer_in_every_partition() -> None:
    marks = watermarks()
    mark(marks, 0, 0, 10)
    mark(marks, 0, 1, 12)
    assert marks.watermark is None  # partition 1 has heard nobody yet
    mark(marks, 1, 0, 11)
    mark(marks, 1, 1, 9)
    assert marks.watermark == 9
    mark(marks, 1, 1, 20)
    assert marks.watermark == 10
    mark(marks, 0, 0, 5)  # behind: ignored
    assert marks.watermark == 10


def test_an_idle_writer_stops_holding_event_time_back_until_it_speaks_again() -> None:
    marks = watermarks()
    for p in range(2):
        mark(marks, p, 0, 30)
        mark(marks, p, 1, 10)
    assert marks.watermark == 10
    for p in range(2):
        marks.on_control(p, ctl(RecordKind.IDLE, 1), b"")
    assert marks.watermark == 30
    marks.on_data(0, ctl(RecordKind.DATA, 1))  # records again: active, but behind, so not aligned
    mark(marks, 0, 1, 40)
    assert marks.watermark == 30
    for p in range(2):
        marks.on_control(p, ctl(RecordKind.IDLE, 0), b"")
        marks.on_control(p, ctl(RecordKind.IDLE, 1), b"")
    assert marks.status is WatermarkStatus.IDLE and marks.watermark == 30


def test_a_partition_ends_when_every_writer_ended_in_it() -> None:
    marks = watermarks()
    for p in range(2):
        mark(marks, p, 0, 5)
        mark(marks, p, 1, 7)
    marks.on_control(0, ctl(RecordKind.END, 0), b"")
    assert not marks.ended(0) and marks.watermark == 5  # writer 0 still counts in partition 1
    marks.on_control(1, ctl(RecordKind.END, 0), b"")
    assert marks.watermark == 7
    marks.on_control(0, ctl(RecordKind.END, 1), b"")
    assert marks.ended(0) and not marks.ended(1)
    mark(marks, 0, 1, 99)  # after its end: ignored
    assert marks.watermark == 7


def test_control_records_of_another_deployment_are_ignored() -> None:
    marks = watermarks()
    for p in range(2):
        mark(marks, p, 0, 50, generation="old")
        marks.on_control(p, ctl(RecordKind.END, 1, writers=3), b"")  # another number of writers
    assert marks.watermark is None and not marks.ended(0)
    with pytest.raises(ValueError, match="writer 5"):
        mark(marks, 0, 5, 1)


def test_restored_state_keeps_ended_and_idle_writers_of_the_same_deployment_only() -> None:
    marks = watermarks(partitions=1)
    mark(marks, 0, 0, 8)
    marks.on_control(0, ctl(RecordKind.END, 1), b"")
    saved = marks.snapshot(0)
    assert saved == {"generation": "g", "writers": 2, "watermarks": [8, float("-inf")], "idle": [], "ended": [1]}
    again = ExchangeWatermarks(2, "g")
    again.add_partition(0, saved)
    assert again.watermark == 8  # writer 1 ended before the checkpoint: not waited for
    mark(again, 0, 0, 9)
    again.on_control(0, ctl(RecordKind.END, 0), b"")
    assert again.ended(0)
    rescaled = ExchangeWatermarks(2, "new")
    rescaled.add_partition(0, saved)
    assert rescaled.watermark is None and not rescaled.ended(0)


def test_an_exchange_refuses_bad_settings_by_name() -> None:
    for kwargs, message in [
        ({"partitions": 0}, "partitions must be an int >= 1"),
        ({"replication_factor": 0}, "replication_factor"),
        ({"topic_config": {"retention.ms": 1}}, "topic_config"),
        ({"request_timeout": -1}, "request_timeout"),
    ]:
        with pytest.raises(ConfigError, match=message):
            KafkaExchange("127.0.0.1:9092", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        KafkaExchange("")
