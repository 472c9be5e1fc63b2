"""KafkaSink settings: validation, serializers, the partitioner and the start-up check of
the transaction timeout. No broker: nothing here opens a connection."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streamflow.api.connector import SinkContext
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink
from streamflow.connectors.kafka.serializers import KeyHashPartitioner, resolve_serializer
from streamflow.connectors.kafka.sink import MIN_TRANSACTION_TIMEOUT_MARGIN
from streamflow.connectors.kafka.sink_exactly_once import KafkaTransactionalWriter
from streamflow.connectors.kafka.sink_plain import KafkaProducerWriter
from streamflow.errors import ConfigError

EO = DeliveryGuarantee.EXACTLY_ONCE


def ctx(interval: float | None = 1.0, checkpointing: bool = True) -> SinkContext:
    return SinkContext(job_name="j", operator_uid="out", subtask_index=0, parallelism=1,
                       checkpointing=checkpointing, checkpoint_interval=interval)


def test_too_short_transaction_timeout_is_refused_at_start_up_naming_the_setting() -> None:
    sink = KafkaSink("k:9092", "t", delivery_guarantee=EO, transactional_id_prefix="job", transaction_timeout=30)
    with pytest.raises(ConfigError, match=r"transaction_timeout=30 s is too short for checkpoints every 5 s.*"
                                          r"at least 65 s"):
        sink.create_writer(ctx(interval=5.0))
    # Long enough, or no checkpoints (one transaction committed at end of input): accepted.
    assert isinstance(sink.create_writer(ctx(interval=30 - MIN_TRANSACTION_TIMEOUT_MARGIN)), KafkaTransactionalWriter)
    assert isinstance(sink.create_writer(ctx(interval=None, checkpointing=False)), KafkaTransactionalWriter)


def test_default_guarantee_is_at_least_once_with_idempotent_acks_all() -> None:
    sink = KafkaSink("k:9092", "t")
    assert sink.delivery_guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    assert isinstance(sink.create_writer(ctx()), KafkaProducerWriter)
    settings = sink.producer_settings()
    assert settings["acks"] == "all" and settings["enable_idempotence"] is True
    none = KafkaSink("k:9092", "t", delivery_guarantee="none", producer_config={"acks": 1, "linger_ms": 5})
    assert none.delivery_guarantee is DeliveryGuarantee.NONE
    assert none.producer_settings()["acks"] == 1 and none.producer_settings()["linger_ms"] == 5


def test_timedelta_timeout_is_seconds() -> None:
    sink = KafkaSink("k:9092", "t", delivery_guarantee=EO, transactional_id_prefix="p",
                     transaction_timeout=timedelta(minutes=2))
    assert sink.transaction_timeout_seconds == 120.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delivery_guarantee": EO}, "needs transactional_id_prefix"),
        ({"delivery_guarantee": "twice"}, "delivery_guarantee must be a DeliveryGuarantee"),
        ({"transaction_timeout": 0}, "transaction_timeout must be a positive number"),
        ({"transactional_id_pool_size": 2}, "transactional_id_pool_size must be an int >= 3"),
        ({"value_serializer": "avro"}, r"value_serializer='avro' is not a serializer"),
        ({"key_serializer": 42}, "key_serializer must be 'bytes', 'str', 'json' or a callable"),
        ({"key": "user"}, "key must be a callable or None"),
        ({"producer_config": {"transactional_id": "x"}}, "use transactional_id_prefix"),
        ({"producer_config": {"bootstrap_servers": "x"}}, "use the bootstrap_servers argument"),
        ({"producer_config": {"acks": 1}}, "AT_LEAST_ONCE needs acks='all'"),
    ],
)
def test_bad_settings_are_config_errors_saying_what_to_do(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        KafkaSink("k:9092", "t", **kwargs)


@pytest.mark.parametrize(("bootstrap", "topic"), [("", "t"), ("k:9092", ""), ("k:9092", 3)])
def test_bootstrap_and_topic_are_checked(bootstrap: Any, topic: Any) -> None:
    with pytest.raises(ConfigError, match="bootstrap_servers|topic"):
        KafkaSink(bootstrap, topic)


def test_built_in_serializers() -> None:
    assert resolve_serializer("bytes", "v")(b"x") == b"x"
    assert resolve_serializer("bytes", "v")(bytearray(b"x")) == b"x"
    assert resolve_serializer("str", "v")("é") == "é".encode()
    assert resolve_serializer("json", "v")({"a": [1, None]}) == b'{"a":[1,null]}'
    with pytest.raises(TypeError, match="expected bytes, got str; pass serializer 'str'"):
        resolve_serializer("bytes", "v")("text")
    with pytest.raises(TypeError, match="expected str, got int"):
        resolve_serializer("str", "v")(3)
    custom = resolve_serializer(lambda v: str(v * 2).encode(), "v")
    assert custom(21) == b"42"


def test_key_hash_partitioner_agrees_with_kafkas_default() -> None:
    kafka = DefaultPartitioner()
    ours = KeyHashPartitioner()
    partitions = list(range(7))
    for i in range(200):
        key = f"user-{i}".encode()
        assert ours(None, key, 7) == kafka(key, partitions, partitions)
    assert ours(None, b"user-3", 7) == ours(None, b"user-3", 7)  # cached path agrees too


def test_unkeyed_records_rotate_batch_by_batch() -> None:
    p = KeyHashPartitioner(start=0)
    assert [p.sticky(3) for _ in range(4)] == [1, 2, 0, 1]
