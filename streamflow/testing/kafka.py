"""Small Kafka helpers for tests, examples and benchmarks: make a topic, fill it, read
back what a ``read_committed`` consumer sees.

They use aiokafka directly, never streamflow's own sources and sinks, so a test that
checks a streamflow sink with :func:`read_committed` does not check it with itself. (The
one thing shared is the declaration of Kafka's ListTransactions request.)

A commit returns before its records are visible: ``EndTxn`` is answered once the
transaction coordinator has logged the decision (state PrepareCommit), and the markers
that end the transaction in each partition are written after that, usually within
milliseconds, longer on a loaded broker. Until then a ``read_committed`` consumer stops
at the transaction's first record. So :func:`read_committed` and
:func:`undecided_partitions` first wait until no transaction is between its decision and
its markers (:func:`wait_for_markers`); a transaction still open (Ongoing, e.g. left by a
killed process) is not waited for.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from streamflow.connectors.kafka.txn_listing import ListTransactionsRequest

__all__ = [
    "create_topic", "partitions_of", "produce", "produce_transactions", "read_committed",
    "undecided_partitions", "unique_topic", "wait_for_markers",
]

_counter = itertools.count()
_DECIDING = ["PrepareCommit", "PrepareAbort"]  # decided, markers not yet all written
MARKERS_TIMEOUT = 15.0  # seconds; markers normally take milliseconds


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test (or earlier run on the same broker) has used."""
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}-{next(_counter)}"


async def create_topic(bootstrap: str, topic: str, partitions: int = 4) -> None:
    """Create ``topic`` with replication factor 1 and wait until every partition has a
    leader, so that the first producer does not race the leader election."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        deadline = time.monotonic() + 30.0
        while len(await _led_partitions(admin, topic)) < partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic!r} has no leader for every partition after 30 s")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of ``topic`` that have a leader (empty if it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await _led_partitions(admin, topic)
    finally:
        await admin.close()


async def _led_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    described = await admin.describe_topics([topic])
    led = [
        p["partition"]
        for t in described
        if t["topic"] == topic and t["error_code"] == 0
        for p in t["partitions"]
        if p["error_code"] == 0 and p["leader"] >= 0
    ]
    return sorted(led)


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    *,
    keys: Iterable[bytes | None] | None = None,
    partition: int | None = None,
) -> None:
    """Write ``values`` (with ``keys``, if given) and wait until all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        key_iter = iter(keys) if keys is not None else itertools.repeat(None)
        futures = [
            await producer.send(topic, value, key=next(key_iter), partition=partition)
            for value in values
        ]
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()


async def produce_transactions(
    bootstrap: str, topic: str, transactions: Sequence[tuple[Sequence[bytes], bool]], *, partition: int = 0
) -> None:
    """Write each ``(values, commit)`` as one transaction of one transactional producer to
    ``partition``, committed or aborted: input for read_committed / read_uncommitted tests."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        for values, commit in transactions:
            await producer.begin_transaction()
            for value in values:
                await producer.send_and_wait(topic, value, partition=partition)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def read_committed(
    bootstrap: str, topic: str, *, partitions: Sequence[int] | None = None, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record a ``read_committed`` consumer sees in ``topic``, up to the end offsets
    (last stable offsets) seen at the call, ordered by partition then offset.

    Committed transactions whose markers are not yet written are waited for first
    (:func:`wait_for_markers`), so what a commit returned for is read.

    Raises TimeoutError when the end is not reached within ``timeout`` seconds, which
    happens when a transaction stays open on the topic (the last stable offset is stuck).
    """
    await wait_for_markers(bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        numbers = partitions if partitions is not None else await partitions_of(bootstrap, topic)
        if not numbers:
            raise ValueError(f"topic {topic!r} does not exist or has no partition with a leader")
        assigned = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end = await consumer.end_offsets(assigned)
        records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {
            tp: [] for tp in assigned
        }
        deadline = time.monotonic() + timeout
        while [tp for tp in assigned if await consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_committed({topic!r}) did not reach {end} in {timeout}s")
            batch = await consumer.getmany(timeout_ms=200)
            for tp, got in batch.items():
                records[tp].extend(r for r in got if r.offset < end[tp])
        return [r for tp in assigned for r in records[tp]]
    finally:
        await consumer.stop()


async def undecided_partitions(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """Partitions of ``topic`` where a transaction is still open: their last stable
    offset is below the high watermark. Maps partition -> (last stable, high watermark).
    Transactions decided but without all their markers yet are waited for first."""
    await wait_for_markers(bootstrap)
    numbers = await partitions_of(bootstrap, topic)
    ends: dict[str, dict[TopicPartition, int]] = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
        await consumer.start()
        try:
            ends[isolation] = await consumer.end_offsets([TopicPartition(topic, p) for p in numbers])
        finally:
            await consumer.stop()
    stable, high = ends["read_committed"], ends["read_uncommitted"]
    return {tp.partition: (stable[tp], high[tp]) for tp in stable if stable[tp] < high[tp]}


async def wait_for_markers(bootstrap: str, timeout: float = MARKERS_TIMEOUT) -> None:
    """Wait until no transaction on the cluster is committing or aborting: decided by its
    coordinator, its markers not yet written to every partition (see the module
    docstring). Ongoing transactions are not waited for. Gives up silently after
    ``timeout`` seconds, or at once if the brokers cannot list transactions (before Kafka
    3.0): the caller then reads what is visible, as it did without this wait."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            deciding = False
            for broker in client.cluster.brokers():
                try:
                    response = await client.send(broker.nodeId, ListTransactionsRequest(_DECIDING))
                except KafkaError:
                    return
                if response.error_code != 0:
                    return
                deciding = deciding or bool(response.transaction_states)
            if not deciding:
                return
            await asyncio.sleep(0.01)
    finally:
        await client.close()
