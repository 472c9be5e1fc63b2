"""The streamflow job of bench/windows_kafka.py: Kafka -> parse -> key_by(user) -> tumbling
1-minute window (count and sum of amounts) -> Kafka, exactly once:

    streamflow run windows_kafka_job:build --checkpoint-interval 1 ...

with ``WINDOWS_BOOTSTRAP``, ``WINDOWS_INPUT`` and ``WINDOWS_OUTPUT`` in the environment,
run from ``bench/``. Event time is the Kafka record timestamp, watermarks per partition
with 0.5 s of allowed disorder (Quix Streams' contender: a grace of 500 ms). The source is
unbounded, as Quix's: a window is emitted once event time passes its end, the last,
still open minute never is; the harness stops the job once the output is complete. The
parse map reports ``first`` on the harness's pipe (kafka_work.stamped), as every
contender does.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from kafka_work import stamped
from streamflow import StreamEnvironment, WatermarkStrategy
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.windowing import AggregateFunction, TumblingEventTimeWindows

MINUTE = 60.0
DISORDER = 0.5

Totals = tuple[int, float, str, int]  # count, sum of amounts, user, event time (ms) of a record in the window


class CountAndSum(AggregateFunction[dict[str, Any], Totals | None, dict[str, Any]]):
    """Count and sum of amounts per window; the result names the user and the window
    start (in ms, as Quix's window results do) from a record of the window."""

    def create_accumulator(self) -> Totals | None:
        return None

    def add(self, value: dict[str, Any], accumulator: Totals | None) -> Totals:
        if accumulator is None:
            return (1, value["amount"], value["user"], value["ts"])
        return (accumulator[0] + 1, accumulator[1] + value["amount"], accumulator[2], accumulator[3])

    def get_result(self, accumulator: Totals | None) -> dict[str, Any]:
        assert accumulator is not None  # a window holds a record
        count, total, user, ts = accumulator
        return {"user": user, "start": ts - ts % 60_000, "count": count, "total": total}

    def merge(self, a: Totals | None, b: Totals | None) -> Totals | None:
        if a is None or b is None:
            return a or b
        return (a[0] + b[0], a[1] + b[1], a[2], a[3])


def parse(raw: bytes) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(raw)
    return record


def user_of(record: dict[str, Any]) -> str:
    return str(record["user"])


def key(result: dict[str, Any]) -> bytes:
    return str(result["user"]).encode()


def value(result: dict[str, Any]) -> bytes:
    return orjson.dumps(result)


def build(env: StreamEnvironment) -> None:
    bootstrap, topic, output = (os.environ[f"WINDOWS_{name}"] for name in ("BOOTSTRAP", "INPUT", "OUTPUT"))
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(DISORDER)
    (
        env.from_source(KafkaSource(bootstrap, topics=topic, watermark_strategy=strategy), name="input").uid("input")
        .map(stamped(parse)).uid("parse")
        .key_by(user_of)
        .window(TumblingEventTimeWindows.of(MINUTE))
        .aggregate(CountAndSum()).uid("window")
        .sink_to(KafkaSink(
            bootstrap, output, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, transactional_id_prefix=output,
            key=key, key_serializer="bytes", value_serializer=value,
        )).uid("out")
    )
