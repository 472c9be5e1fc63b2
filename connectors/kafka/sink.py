"""KafkaSink: write records to Kafka with delivery guarantee none, at-least-once or
exactly-once.

* ``NONE``: records are handed to the producer and not waited for (send errors still fail
  the job when they are noticed, at the next write or at end of input).
* ``AT_LEAST_ONCE``: every barrier (and end of input) waits until Kafka acknowledged every
  record written before it; a restore replays records after the checkpoint, which may
  write some twice.
* ``EXACTLY_ONCE``: Kafka transactions committed when the checkpoint completes (two-phase
  commit, docs/architecture.md; see :mod:`.sink_exactly_once`). Consumers must read with
  ``isolation_level="read_committed"``; records become visible one checkpoint interval
  later than with the other guarantees.

Records are serialized by ``value_serializer`` (the record itself) and ``key_serializer``
(``key(record)``), each ``"bytes"``, ``"str"`` (UTF-8), ``"json"`` (orjson) or a callable
returning bytes. The partition is Kafka's default (murmur2 of the key; unkeyed records
spread batch by batch) unless ``partitioner(record, key_bytes, partition_count)`` says
otherwise. Topics must exist: the sink never creates them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from streamflow.api.connector import SinkContext, SinkWriter
from streamflow.api.delivery import DeliveryGuarantee, parse_guarantee
from streamflow.connectors.kafka.batching import RecordCodec
from streamflow.connectors.kafka.serializers import Partitioner, Serializer, resolve_serializer
from streamflow.connectors.kafka.sink_exactly_once import KafkaTransactionalWriter
from streamflow.connectors.kafka.sink_plain import KafkaProducerWriter
from streamflow.errors import ConfigError

__all__ = ["DeliveryGuarantee", "KafkaSink", "MIN_TRANSACTION_TIMEOUT_MARGIN"]

MIN_TRANSACTION_TIMEOUT_MARGIN = 60.0
"""Seconds a transaction timeout must exceed the checkpoint interval by: a transaction
lives from its first record (up to one interval before the barrier) until its checkpoint
completes, or until a restarted job commits it after downtime."""

# Settings the sink owns; a producer_config entry for one of them is a mistake to report.
_OWNED = {
    "bootstrap_servers": "the bootstrap_servers argument",
    "transactional_id": "transactional_id_prefix (ids come from a per-subtask pool)",
    "transaction_timeout_ms": "transaction_timeout (seconds)",
    "key_serializer": "key_serializer",
    "value_serializer": "value_serializer",
    "partitioner": "partitioner",
    "loop": "nothing: the writer uses the running loop",
}
_PRODUCER_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    # Larger batches than aiokafka's 16 KiB: one produce request carries more records.
    "max_batch_size": 128 * 1024,
    "linger_ms": 0,
})


@dataclass(frozen=True, slots=True)
class KafkaSink:
    """Write each record to ``topic`` (a name, or a function record -> name).

    Example::

        KafkaSink("localhost:9092", "orders-out",
                  delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                  transactional_id_prefix="orders-job",
                  key=lambda o: o["user"], key_serializer="str", value_serializer="json")

    Args:
        bootstrap_servers: ``host:port[,host:port...]`` of the Kafka cluster.
        topic: the topic of every record, or ``record -> topic``.
        delivery_guarantee: NONE, AT_LEAST_ONCE (default) or EXACTLY_ONCE.
        key: ``record -> key`` (then serialized by ``key_serializer``); ``None``: no key.
        key_serializer, value_serializer: ``"bytes"`` (default), ``"str"``, ``"json"`` or
            a callable returning bytes.
        partitioner: ``(record, key_bytes, partition_count) -> partition``; ``None``:
            Kafka's default (murmur2 of the key, as every Kafka producer does).
        transactional_id_prefix: required for EXACTLY_ONCE; must be unique per job on the
            cluster (a second job with the same prefix and sink uid fences this one).
        transaction_timeout: seconds (or timedelta) before the broker aborts an unfinished
            transaction; must exceed the checkpoint interval by
            :data:`MIN_TRANSACTION_TIMEOUT_MARGIN` and stay within the broker's
            ``transaction.max.timeout.ms`` (900 s by default).
        transactional_id_pool_size: transactional ids per subtask (at least 3: the open
            transaction, one awaiting its checkpoint, one just committed). Raise it if
            checkpoints are often aborted or several run concurrently.
        producer_config: further aiokafka producer settings (``acks``, ``compression_type``,
            ``max_batch_size``, ``linger_ms``, security settings...).
    """

    bootstrap_servers: str
    topic: str | Callable[[Any], str]
    _: KW_ONLY
    delivery_guarantee: DeliveryGuarantee = DeliveryGuarantee.AT_LEAST_ONCE
    key: Callable[[Any], Any] | None = None
    key_serializer: Serializer = "bytes"
    value_serializer: Serializer = "bytes"
    partitioner: Partitioner | None = None
    transactional_id_prefix: str | None = None
    transaction_timeout: float | timedelta = 900.0
    transactional_id_pool_size: int = 8
    producer_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.bootstrap_servers, str) or not self.bootstrap_servers.strip():
            raise ConfigError(
                f"KafkaSink bootstrap_servers must be 'host:port[,host:port]', got {self.bootstrap_servers!r}",
                value=repr(self.bootstrap_servers),
            )
        if not (isinstance(self.topic, str) and self.topic) and not callable(self.topic):
            raise ConfigError(
                f"KafkaSink topic must be a topic name or a callable record -> topic, got {self.topic!r}",
                value=repr(self.topic),
            )
        guarantee = parse_guarantee(self.delivery_guarantee, "KafkaSink")
        object.__setattr__(self, "delivery_guarantee", guarantee)
        for name in ("key", "partitioner"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(f"KafkaSink {name} must be a callable or None, got {value!r}", value=repr(value))
        resolve_serializer(self.key_serializer, "key_serializer")
        resolve_serializer(self.value_serializer, "value_serializer")
        timeout = self.transaction_timeout
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(
                f"KafkaSink transaction_timeout must be a positive number of seconds or a "
                f"timedelta, got {self.transaction_timeout!r}",
                value=repr(self.transaction_timeout),
            )
        object.__setattr__(self, "transaction_timeout", float(timeout))
        pool = self.transactional_id_pool_size
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 3:
            raise ConfigError(
                f"KafkaSink transactional_id_pool_size must be an int >= 3 (the open transaction, "
                f"one awaiting its checkpoint, one just committed), got {pool!r}",
                value=repr(pool),
            )
        if guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            prefix = self.transactional_id_prefix
            if not isinstance(prefix, str) or not prefix.strip():
                raise ConfigError(
                    "KafkaSink with EXACTLY_ONCE needs transactional_id_prefix: a name unique to "
                    f"this job on the Kafka cluster (e.g. the job name), got {prefix!r}",
                    value=repr(prefix),
                )
        self._check_producer_config(guarantee)

    def _check_producer_config(self, guarantee: DeliveryGuarantee) -> None:
        config = self.producer_config
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"KafkaSink producer_config must be a mapping of aiokafka producer settings, got {config!r}",
                value=repr(config),
            )
        for name in config:
            if name in _OWNED:
                raise ConfigError(
                    f"KafkaSink producer_config must not set {name!r}; use {_OWNED[name]} instead",
                    value=name,
                )
        acks = config.get("acks", "all")
        if guarantee is not DeliveryGuarantee.NONE and acks not in ("all", -1):
            raise ConfigError(
                f"KafkaSink with {guarantee.name} needs acks='all' (a record acknowledged by the "
                f"leader alone can be lost), got producer_config acks={acks!r}; use "
                "DeliveryGuarantee.NONE for weaker acks",
                value=repr(acks),
            )
        object.__setattr__(self, "producer_config", MappingProxyType(dict(config)))

    # -- what the writers use --------------------------------------------------------------

    @property
    def guarantee(self) -> DeliveryGuarantee:
        return self.delivery_guarantee

    @property
    def stateful(self) -> bool:
        """Only EXACTLY_ONCE keeps state (prepared transactions; its transactional ids
        derive from the uid): the others need no ``.uid(...)`` for savepoints."""
        return self.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE

    @property
    def transaction_timeout_seconds(self) -> float:
        timeout = self.transaction_timeout
        return timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)

    def codec(self) -> RecordCodec:
        return RecordCodec(
            topic=self.topic,
            key=self.key,
            key_serializer=resolve_serializer(self.key_serializer, "key_serializer"),
            value_serializer=resolve_serializer(self.value_serializer, "value_serializer"),
            partitioner=self.partitioner,
        )

    def producer_settings(self) -> dict[str, Any]:
        """aiokafka producer keyword arguments shared by every producer of this sink."""
        settings: dict[str, Any] = {**_PRODUCER_DEFAULTS}
        if self.guarantee is DeliveryGuarantee.AT_LEAST_ONCE:
            # Idempotence: a retried batch is not written twice, and order per partition holds.
            settings.update(acks="all", enable_idempotence=True)
        settings.update(self.producer_config)
        return settings

    def check_transaction_timeout(self, ctx: SinkContext) -> None:
        """ConfigError if the transaction timeout cannot outlive a checkpoint interval."""
        interval = ctx.checkpoint_interval
        if not ctx.checkpointing or interval is None:
            return
        needed = interval + MIN_TRANSACTION_TIMEOUT_MARGIN
        if self.transaction_timeout_seconds < needed:
            raise ConfigError(
                f"KafkaSink {ctx.operator_uid!r}: transaction_timeout={self.transaction_timeout_seconds:g} s "
                f"is too short for checkpoints every {interval:g} s: a transaction stays open "
                f"until its checkpoint completes, plus downtime before a restart commits it, "
                f"and the broker aborts it after transaction_timeout (data loss). Set the sink's "
                f"transaction_timeout to at least {needed:g} s (interval + "
                f"{MIN_TRANSACTION_TIMEOUT_MARGIN:g} s), or checkpoint more often.",
                value=self.transaction_timeout_seconds,
                operator=ctx.operator_uid,
            )

    def create_writer(self, ctx: SinkContext) -> SinkWriter:
        writer: SinkWriter
        if self.guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            self.check_transaction_timeout(ctx)
            writer = KafkaTransactionalWriter(ctx, self)
        else:
            writer = KafkaProducerWriter(ctx, self)
        return writer
