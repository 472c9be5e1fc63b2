"""The Kafka sink writer for delivery guarantees NONE and AT_LEAST_ONCE: one plain
(non-transactional) producer per subtask.

Writes never wait for delivery (see :mod:`.batching`). AT_LEAST_ONCE waits for every
record written so far at each barrier, before the checkpoint is acknowledged, and at end
of input: a completed checkpoint then implies its records are in Kafka. NONE only
surfaces send errors it has seen, and waits at end of input so a bounded job's output is
complete when it finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streamflow.api.connector import SinkContext, SinkWriterBase
from streamflow.api.delivery import DeliveryGuarantee
from streamflow.connectors.kafka.batching import Deliveries, RecordCodec, RecordSender
from streamflow.connectors.kafka.clients import start_client, watch_client
from streamflow.errors import ConnectorError

__all__ = ["KafkaProducerWriter", "ProducerSinkSettings", "start_producer", "stop_producer"]

_log = logging.getLogger(__name__)
STOP_TIMEOUT = 10.0
"""Seconds ``close`` waits for a producer to flush before dropping its connections."""


async def start_producer(producer: AIOKafkaProducer, where: str) -> None:
    """``producer.start()``, stopping it again if that fails or is cancelled (no leaked
    sender task or connection), with a backoff on reconnects (see :mod:`.clients`)."""
    watch_client(producer.client, where)
    try:
        await start_client(producer.start(), where)
    except BaseException as exc:
        await stop_producer(producer, where)
        if isinstance(exc, KafkaError):
            raise ConnectorError(f"{where}: cannot start a Kafka producer: {exc!r}; is the broker reachable?") from exc
        raise


async def stop_producer(producer: AIOKafkaProducer, where: str, timeout: float = STOP_TIMEOUT) -> None:
    """Stop ``producer`` within ``timeout`` seconds, whatever state it is in.

    ``stop()`` flushes first, and a transactional producer retries a batch forever while
    the broker is away; past the timeout the sender is cancelled and the connections are
    closed without the flush. Never raises (closing must not hide the original failure).
    """
    try:
        async with asyncio.timeout(timeout):
            await producer.stop()
        return
    except asyncio.CancelledError:
        # The attempt is being torn down: still close the sockets (a producer dropped with
        # open connections leaks them until garbage collection), then let the cancel go on.
        await _drop_connections(producer, where)
        raise
    except Exception as exc:  # noqa: BLE001 - best effort; TimeoutError included
        _log.warning("%s: stopping a Kafka producer failed (%r); dropping its connections", where, exc)
    await _drop_connections(producer, where)


async def _drop_connections(producer: AIOKafkaProducer, where: str) -> None:
    sender = producer._sender.sender_task  # no public way to stop without a flush
    if sender is not None and not sender.done():
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    try:
        await producer.client.close()
    except Exception as exc:  # noqa: BLE001
        _log.debug("%s: closing producer connections raised %r", where, exc)


class ProducerSinkSettings(Protocol):
    """What a writer reads of its :class:`~streamflow.connectors.kafka.sink.KafkaSink`
    (declared here so that the writers do not import the sink that makes them)."""

    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def guarantee(self) -> DeliveryGuarantee: ...
    @property
    def producer_config(self) -> Mapping[str, Any]: ...
    def codec(self) -> RecordCodec: ...
    def producer_settings(self) -> dict[str, Any]: ...


class KafkaProducerWriter(SinkWriterBase):
    """One subtask's writer for NONE / AT_LEAST_ONCE."""

    def __init__(self, ctx: SinkContext, sink: ProducerSinkSettings) -> None:
        self.ctx = ctx
        self._sink = sink
        self._flush_on_barrier = sink.guarantee is DeliveryGuarantee.AT_LEAST_ONCE
        self._where = f"KafkaSink {ctx.operator_uid!r}[{ctx.subtask_index}]"
        self._sender = RecordSender(sink.codec(), operator=ctx.operator_uid, subtask=ctx.subtask_index)
        self._deliveries = Deliveries(self._where)
        self._producer: AIOKafkaProducer | None = None

    async def open(self) -> None:
        settings = self._sink.producer_settings()
        settings.setdefault("client_id", f"streamflow-{self.ctx.operator_uid}-{self.ctx.subtask_index}")
        producer = AIOKafkaProducer(bootstrap_servers=self._sink.bootstrap_servers, **settings)
        await start_producer(producer, self._where)
        self._producer = producer

    async def write(self, records: list[Any]) -> None:
        if not records:
            return
        if self._producer is None:
            raise ConnectorError(f"{self._where}: write() before open() or after close()")
        await self._sender.send(self._producer, records, self._deliveries)

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        if self._flush_on_barrier:
            await self._deliveries.wait()
        else:
            self._deliveries.check()
        self._sender.forget_topics()
        return []

    async def finish(self) -> None:
        await self._deliveries.wait()

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            self._deliveries.discard()
            await stop_producer(producer, self._where)

    @property
    def in_flight(self) -> int:
        """Submitted batches not yet known to be delivered (for tests and metrics)."""
        return len(self._deliveries)
