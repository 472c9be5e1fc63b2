"""KafkaExchange: Kafka topics as the exchanges between the workers of one job.

It is the :class:`~streamflow.api.exchange.ExchangeFactory` of a job that runs on
several workers: for every edge that redistributes records the worker graph gets an
:class:`~.exchange_sink.ExchangeSink` (exactly-once, Kafka transactions committed with
the writing worker's checkpoints) and an :class:`~.exchange_source.ExchangeSource`
(``read_committed``, offsets in the reading worker's checkpoints).

Costs, stated once: under exactly-once a record becomes visible to the next worker when
the writing worker's checkpoint completes, so each exchange hop adds up to one
checkpoint interval of latency; and the topics hold a copy of the exchanged records
for their retention (which must cover the oldest savepoint you may restore, since a
restored reader resumes from its saved offsets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
from typing import Any

from streamflow.api.exchange import ExchangeSpec
from streamflow.config import seconds
from streamflow.connectors.kafka.exchange_sink import ExchangeSink
from streamflow.connectors.kafka.exchange_source import ExchangeSource
from streamflow.connectors.kafka.exchange_topics import admin_options, ensure_exchange_topic
from streamflow.errors import ConfigError

__all__ = ["KafkaExchange"]


@dataclass(frozen=True, slots=True)
class KafkaExchange:
    """Where and how a job's exchange topics live.

    Args:
        bootstrap_servers: ``host:port[,host:port]`` of the Kafka cluster.
        partitions: partitions of every exchange topic (E): the most workers the job
            can ever run on (each reads whole partitions), fixed for the job's life; at
            most ``max_parallelism``.
        replication_factor: of topics the job creates; ``None``: the brokers'
            ``default.replication.factor``.
        topic_config: further settings of topics the job creates (``retention.ms``,
            ``min.insync.replicas``...).
        transaction_timeout: seconds (or timedelta) before the broker aborts an
            unfinished exchange transaction; as for KafkaSink, it must exceed the
            checkpoint interval by a margin and stay within the broker's
            ``transaction.max.timeout.ms``.
        producer_config: further aiokafka producer settings (security, ``linger_ms``...).
        consumer_options: further aiokafka consumer settings (security, fetch sizes...).
        request_timeout: seconds a broker request (and creating a topic) may take.
    """

    bootstrap_servers: str
    _: KW_ONLY
    partitions: int = 16
    replication_factor: int | None = None
    topic_config: Mapping[str, str] = field(default_factory=dict)
    transaction_timeout: float | timedelta = 900.0
    producer_config: Mapping[str, Any] = field(default_factory=dict)
    consumer_options: Mapping[str, Any] = field(default_factory=dict)
    request_timeout: float | timedelta = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.bootstrap_servers, str) or not self.bootstrap_servers.strip():
            raise ConfigError(
                f"KafkaExchange bootstrap_servers must be 'host:port[,host:port]', got {self.bootstrap_servers!r}"
            )
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int) or self.partitions < 1:
            raise ConfigError(f"KafkaExchange partitions must be an int >= 1, got {self.partitions!r}")
        factor = self.replication_factor
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, int) or factor < 1):
            raise ConfigError(
                f"KafkaExchange replication_factor must be an int >= 1 or None (the brokers' default), got {factor!r}"
            )
        config = self.topic_config
        if not isinstance(config, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in config.items()):
            raise ConfigError(f"KafkaExchange topic_config maps setting names to str values, got {config!r}")
        object.__setattr__(self, "topic_config", dict(config))
        for name in ("producer_config", "consumer_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"KafkaExchange {name} must be a mapping, got {getattr(self, name)!r}")
        timeout = self.request_timeout
        value = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"KafkaExchange request_timeout must be seconds > 0 or a timedelta, got {timeout!r}")

    @property
    def request_timeout_seconds(self) -> float:
        return seconds(self.request_timeout, "request_timeout")

    def sink(self, spec: ExchangeSpec) -> ExchangeSink:
        self._check(spec)
        return ExchangeSink(self, spec)

    def source(self, spec: ExchangeSpec) -> ExchangeSource:
        self._check(spec)
        return ExchangeSource(self, spec)

    async def prepare(self, specs: Sequence[ExchangeSpec], where: str) -> None:
        """Every exchange topic of a worker created or checked (see :mod:`.exchange_topics`)."""
        for spec in specs:
            await self.ensure_topic(spec, where)

    async def ensure_topic(self, spec: ExchangeSpec, where: str) -> None:
        """Create ``spec``'s topic if it is missing, check it if not (see :mod:`.exchange_topics`)."""
        await ensure_exchange_topic(
            self.admin_args(), topic=spec.topic, partitions=spec.partitions,
            replication_factor=self.replication_factor, topic_config=self.topic_config,
            timeout=self.request_timeout_seconds, where=where,
        )

    def admin_args(self) -> dict[str, Any]:
        """AIOKafkaAdminClient arguments: the servers and the consumer's security settings."""
        return {**admin_options(self.consumer_options), "bootstrap_servers": self.bootstrap_servers,
                "request_timeout_ms": int(self.request_timeout_seconds * 1000)}

    def _check(self, spec: ExchangeSpec) -> None:
        if spec.partitions != self.partitions:
            raise ConfigError(
                f"exchange {spec.topic!r} was planned with {spec.partitions} partitions, but this KafkaExchange has "
                f"{self.partitions}: build the job's exchanges from the same KafkaExchange"
            )
