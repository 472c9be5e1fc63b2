"""The streamflow job of bench/workers.py: Kafka -> parse -> key_by(user) -> keyed count ->
Kafka, exactly once. One worker process of it (or the job on one process):

    streamflow run scaleout_job:build --workers N --worker-index I --exchange-bootstrap B ...

with ``SCALEOUT_BOOTSTRAP``, ``SCALEOUT_INPUT`` and ``SCALEOUT_OUTPUT`` in the environment,
run from ``bench/``. The source is bounded (it stops at the input's end offsets seen at
start), so the job ends once every record is counted and committed. ``SCALEOUT_BOUNDED=0``
leaves it running (the latency runs). The parse map reports ``first`` on the harness's
pipe (kafka_work.stamped), as every contender does.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from kafka_work import stamped
from streamflow import KeyedProcessFunction, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.state import ValueStateDescriptor

COUNT = ValueStateDescriptor[int]("count", default=0)


def parse(raw: bytes) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(raw)
    return record


def user_of(record: dict[str, Any]) -> str:
    return str(record["user"])


class CountPerUser(KeyedProcessFunction):
    """Each record becomes ``{"user", "count", "ts"}``: the user's records so far."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(COUNT)

    def process_element(self, record: dict[str, Any], ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect({"user": record["user"], "count": n, "ts": record["ts"]})


def key(result: dict[str, Any]) -> bytes:
    return str(result["user"]).encode()


def value(result: dict[str, Any]) -> bytes:
    return orjson.dumps(result)


def build(env: StreamEnvironment) -> None:
    bootstrap, topic, output = (os.environ[f"SCALEOUT_{name}"] for name in ("BOOTSTRAP", "INPUT", "OUTPUT"))
    bounded = os.environ.get("SCALEOUT_BOUNDED", "1") == "1"
    (
        env.from_source(KafkaSource(bootstrap, topics=topic, bounded=bounded), name="input").uid("input")
        .map(stamped(parse)).uid("parse")
        .key_by(user_of)
        .process(CountPerUser()).uid("count")
        .sink_to(KafkaSink(
            bootstrap, output, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, transactional_id_prefix=output,
            key=key, key_serializer="bytes", value_serializer=value,
        )).uid("out")
    )
