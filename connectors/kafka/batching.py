"""Sending a batch of records through an aiokafka producer without one await per record.

:class:`RecordSender` serializes each record, picks its partition, and appends it to a
per-partition record batch built with aiokafka's batch API (``create_batch`` /
``send_batch``): a full batch is submitted at once, the rest when the written batch ends.
Submitting does not wait for delivery; the delivery futures collect in a
:class:`Deliveries` that the writer awaits at its flush points (a barrier, end of input).

Backpressure comes from aiokafka: ``send_batch`` waits while an earlier batch of the same
partition has not been taken by the producer's sender, and the sender keeps one request
in flight per broker, so at most about two batches per partition are in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from streamflow.connectors.kafka.serializers import KeyHashPartitioner, Partitioner, as_bytes
from streamflow.errors import ConnectorError, UserFunctionError

__all__ = ["Deliveries", "RecordCodec", "RecordSender"]

METADATA_TIMEOUT = 10.0
"""Seconds to wait for a topic's partitions before saying it does not exist."""


@dataclass(frozen=True, slots=True)
class RecordCodec:
    """How a record becomes a Kafka record: the sink's settings, resolved to callables."""

    topic: str | Callable[[Any], str]
    key: Callable[[Any], Any] | None
    key_serializer: Callable[[Any], bytes]
    value_serializer: Callable[[Any], bytes]
    partitioner: Partitioner | None


class Deliveries:
    """Delivery futures of submitted batches, awaited at flush points.

    :meth:`check` surfaces a failed delivery early (every write calls it) and forgets
    delivered batches, so a writer that never flushes (delivery guarantee none) does not
    pile up futures.
    """

    __slots__ = ("_pending", "_where")

    def __init__(self, where: str) -> None:
        self._pending: list[asyncio.Future[Any]] = []
        self._where = where

    def add(self, future: asyncio.Future[Any]) -> None:
        self._pending.append(future)

    def __len__(self) -> int:
        return len(self._pending)

    def check(self) -> None:
        """Raise ConnectorError if a delivered batch failed; drop the delivered ones."""
        if not self._pending:
            return
        still: list[asyncio.Future[Any]] = []
        failed: BaseException | None = None
        for future in self._pending:
            if not future.done():
                still.append(future)
            elif not future.cancelled():
                failed = failed or future.exception()  # every one retrieved: no asyncio error log
        self._pending = still
        if failed is not None:
            raise self._error(failed)

    async def wait(self) -> None:
        """Wait until every submitted batch is acknowledged; ConnectorError on a failure."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        await asyncio.wait(pending)
        if any(future.cancelled() for future in pending):
            _retrieve_all(pending)
            raise ConnectorError(f"{self._where}: a batch send was cancelled; its records may be lost")
        failed = _retrieve_all(pending)
        if failed is not None:
            raise self._error(failed)

    def discard(self) -> None:
        """Forget pending futures (their transaction is being aborted). Those still in
        flight fail when the producer stops: their errors are retrieved then, unlogged."""
        for future in self._pending:
            if future.done():
                _retrieve(future)
            else:
                future.add_done_callback(_retrieve)
        self._pending = []

    def _error(self, exc: BaseException) -> ConnectorError:
        return ConnectorError(
            f"{self._where}: Kafka did not accept a batch of records: {exc!r}. Check that the "
            "topic exists and the producer settings (max_request_size, acks) suit the broker.",
        )


def _no_topic_function(record: Any) -> str:
    raise AssertionError("the sink has a fixed topic")


class RecordSender:
    """Serializes, partitions and submits records; one per writer.

    A sink with a fixed topic and Kafka's default partitioner (the common case) takes
    :meth:`_send_to_topic`, a loop with nothing per record beyond the user's functions,
    the key's cached hash and the batch's ``append``; any other sink takes
    :meth:`_send_each`. Both write the same records to the same partitions.
    """

    __slots__ = ("_codec", "_counts", "_default", "_operator", "_subtask", "_where")

    def __init__(self, codec: RecordCodec, *, operator: str, subtask: int) -> None:
        self._codec = codec
        self._operator = operator
        self._subtask = subtask
        self._where = f"KafkaSink {operator!r}[{subtask}]"
        # Start the sticky rotation at the subtask index so subtasks spread out.
        self._default = KeyHashPartitioner(start=subtask)
        self._counts: dict[str, int] = {}

    async def send(self, producer: AIOKafkaProducer, records: list[Any], deliveries: Deliveries) -> None:
        """Submit ``records``; their delivery futures go into ``deliveries``."""
        codec = self._codec
        if isinstance(codec.topic, str) and codec.partitioner is None:
            await self._send_to_topic(producer, codec.topic, records, deliveries)
        else:
            await self._send_each(producer, records, deliveries)
        deliveries.check()

    async def _send_to_topic(
        self, producer: AIOKafkaProducer, topic: str, records: list[Any], deliveries: Deliveries
    ) -> None:
        """Every record to ``topic``, keyed records by murmur2 of the key, the others to
        one sticky partition. A ``"bytes"`` serializer is the type check inline (its
        function runs only for what is not ``bytes``, to convert or to raise)."""
        codec = self._codec
        count = self._counts.get(topic)
        if count is None:
            count = await self._partition_count(producer, topic)
        key_fn = codec.key
        key_ser: Callable[[Any], bytes] | None = codec.key_serializer
        value_ser: Callable[[Any], bytes] | None = codec.value_serializer
        if key_ser is as_bytes:
            key_ser = None
        if value_ser is as_bytes:
            value_ser = None
        hashes, default = self._default.hashes, self._default
        builders: dict[int, Any] = {}
        sticky = -1
        for record in records:
            try:
                if key_fn is None:
                    key = None
                else:
                    key = key_fn(record)
                    if key_ser is not None:
                        key = key_ser(key)
                    elif type(key) is not bytes:
                        key = as_bytes(key)
                if value_ser is not None:
                    value = value_ser(record)
                elif type(record) is bytes:
                    value = record
                else:
                    value = as_bytes(record)
            except Exception as exc:
                raise self._user_error("serializing", record, exc) from exc
            if key is None:
                if sticky < 0:
                    sticky = default.sticky(count)
                partition = sticky
            else:
                try:
                    hashed = hashes.get(key)
                    if hashed is None:
                        hashed = default.hash_of(key)
                except Exception as exc:
                    raise self._user_error("partitioning", record, exc) from exc
                partition = hashed % count
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            try:
                appended = builder.append(timestamp=None, key=key, value=value)
            except TypeError as exc:
                raise self._user_error("serializing", record, exc) from exc
            if appended is None:  # full: submit it, start the next (an empty batch takes any record)
                deliveries.add(await self._submit(producer, builder, (topic, partition)))
                builder = builders[partition] = producer.create_batch()
                builder.append(timestamp=None, key=key, value=value)
        for partition, builder in builders.items():
            if builder.record_count():
                deliveries.add(await self._submit(producer, builder, (topic, partition)))

    async def _send_each(self, producer: AIOKafkaProducer, records: list[Any], deliveries: Deliveries) -> None:
        """Any sink: a topic function and a custom partitioner asked per record."""
        codec = self._codec
        fixed_topic: str | None = None
        topic_fn: Callable[[Any], str] = _no_topic_function
        if isinstance(codec.topic, str):
            fixed_topic = codec.topic
        else:
            topic_fn = codec.topic
        key_fn, key_ser, value_ser = codec.key, codec.key_serializer, codec.value_serializer
        partitioner = codec.partitioner
        builders: dict[tuple[str, int], Any] = {}
        sticky: dict[str, int] = {}
        for record in records:
            try:
                topic = fixed_topic if fixed_topic is not None else topic_fn(record)
                key = None if key_fn is None else key_ser(key_fn(record))
                value = value_ser(record)
            except Exception as exc:
                raise self._user_error("serializing", record, exc) from exc
            count = self._counts.get(topic)
            if count is None:
                count = await self._partition_count(producer, topic)
            if partitioner is not None:
                try:
                    partition = partitioner(record, key, count)
                except Exception as exc:
                    raise self._user_error("partitioning", record, exc) from exc
                if not isinstance(partition, int) or not 0 <= partition < count:
                    raise self._user_error(
                        "partitioning", record,
                        ValueError(f"partitioner returned {partition!r}; {topic!r} has partitions 0..{count - 1}"),
                    )
            elif key is None:
                stuck = sticky.get(topic)
                if stuck is None:
                    stuck = sticky[topic] = self._default.sticky(count)
                partition = stuck
            else:
                try:
                    partition = self._default(record, key, count)
                except Exception as exc:
                    raise self._user_error("partitioning", record, exc) from exc
            slot = (topic, partition)
            builder = builders.get(slot)
            if builder is None:
                builder = builders[slot] = producer.create_batch()
            try:
                appended = builder.append(timestamp=None, key=key, value=value)
            except TypeError as exc:
                raise self._user_error("serializing", record, exc) from exc
            if appended is None:  # full: submit it, start the next (an empty batch takes any record)
                deliveries.add(await self._submit(producer, builder, slot))
                builder = builders[slot] = producer.create_batch()
                builder.append(timestamp=None, key=key, value=value)
        for slot, builder in builders.items():
            if builder.record_count():
                deliveries.add(await self._submit(producer, builder, slot))

    async def _submit(self, producer: AIOKafkaProducer, builder: Any, slot: tuple[str, int]) -> asyncio.Future[Any]:
        # Closed, a batch is sent as soon as the partition is free: linger_ms would only
        # delay a batch that this sender already filled as far as the records allow.
        builder.close()
        try:
            future: asyncio.Future[Any] = await producer.send_batch(builder, slot[0], partition=slot[1])
            return future
        except KafkaError as exc:
            raise ConnectorError(
                f"{self._where}: cannot send to {slot[0]!r} partition {slot[1]}: {exc!r}",
                operator=self._operator,
                subtask=self._subtask,
            ) from exc

    async def _partition_count(self, producer: AIOKafkaProducer, topic: str) -> int:
        if not isinstance(topic, str) or not topic:
            raise ConnectorError(
                f"{self._where}: the topic function returned {topic!r}; it must return a topic name (str)",
                operator=self._operator,
                subtask=self._subtask,
            )
        try:
            async with asyncio.timeout(METADATA_TIMEOUT):
                partitions = await producer.partitions_for(topic)
        except (TimeoutError, UnknownTopicOrPartitionError):
            partitions = None
        if not partitions:
            raise ConnectorError(
                f"{self._where}: topic {topic!r} does not exist (no partitions after "
                f"{METADATA_TIMEOUT:.0f} s); create it before the job starts: the sink never "
                "creates topics",
                operator=self._operator,
                subtask=self._subtask,
            )
        # Partitions are numbered 0..n-1; a topic that grows is seen at the next lookup.
        self._counts[topic] = len(partitions)
        return len(partitions)

    def forget_topics(self) -> None:
        """Look partition counts up again (called at flush points: topics may grow)."""
        self._counts.clear()

    def _user_error(self, step: str, record: Any, exc: Exception) -> UserFunctionError:
        return UserFunctionError(
            f"{self._where}: {step} record {record!r:.200} failed: {exc!r}. Check the sink's "
            "topic, key, key_serializer, value_serializer and partitioner for this record.",
            operator=self._operator,
            subtask=self._subtask,
            position=None,
            record=repr(record)[:200],
        )


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark ``future``'s outcome as seen: asyncio logs "exception was never retrieved" at
    ERROR for a failed future nobody asked, one line per batch of an aborted transaction."""
    if not future.cancelled():
        future.exception()


def _retrieve_all(futures: list[asyncio.Future[Any]]) -> BaseException | None:
    """Retrieve every done future's outcome; the first error, if any."""
    first: BaseException | None = None
    for future in futures:
        if future.done() and not future.cancelled():
            first = first or future.exception()
    return first
