"""Helpers shared by the KafkaSink tests: contexts, sinks, and a simulated crash."""

from __future__ import annotations

import contextlib
import gc
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from streamflow.api.connector import SinkContext, SinkWriter
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink
from streamflow.connectors.kafka.sink_exactly_once import KafkaTransactionalWriter
from streamflow.connectors.kafka.sink_plain import stop_producer
from streamflow.testing.kafka import create_topic, read_committed, unique_topic

EO = DeliveryGuarantee.EXACTLY_ONCE


def ctx(*, subtask: int = 0, parallelism: int = 1, restored: list[Any] | None = None,
        checkpointing: bool = True, interval: float | None = None) -> SinkContext:
    return SinkContext(job_name="job", operator_uid="out", subtask_index=subtask, parallelism=parallelism,
                       checkpointing=checkpointing, checkpoint_interval=interval, restored_state=restored)


async def new_topic(bootstrap: str, partitions: int = 2, prefix: str = "sink") -> str:
    topic = unique_topic(prefix)
    await create_topic(bootstrap, topic, partitions=partitions)
    return topic


def eo_sink(bootstrap: str, topic: str, **kwargs: Any) -> KafkaSink:
    """An exactly-once sink of str records; the prefix is the (unique) topic name."""
    settings: dict[str, Any] = {"delivery_guarantee": EO, "transactional_id_prefix": topic,
                                "value_serializer": "str"}
    settings.update(kwargs)
    return KafkaSink(bootstrap, topic, **settings)


async def opened(sink: KafkaSink, context: SinkContext) -> Any:
    writer = sink.create_writer(context)
    await writer.open()
    return writer


async def crash(writer: SinkWriter) -> None:
    """Drop ``writer`` as a dying process would: nothing is aborted or committed, the
    broker keeps every transaction open; only this process's sockets and tasks go."""
    assert isinstance(writer, KafkaTransactionalWriter)
    for tid, producer in list(writer._producers.items()):
        await stop_producer(producer, tid)  # stop() sends no EndTxn: the transaction stays open
    writer._producers.clear()
    if writer._coordinator is not None:
        await writer._coordinator.close()
        writer._coordinator = None


async def values(bootstrap: str, topic: str, timeout: float = 30.0) -> list[str]:
    """What a read_committed consumer sees, decoded, partition by partition."""
    return [r.value.decode() for r in await read_committed(bootstrap, topic, timeout=timeout) if r.value]


def handles(state: list[Any]) -> list[dict[str, Any]]:
    return [entry["handle"] for entry in state]


class _Unclosed(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Unclosed" in record.getMessage():
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def no_unclosed_connections() -> Iterator[None]:
    """Fail if an aiokafka connection (or any socket) opened inside is dropped unclosed:
    garbage is collected at the end, and its ResourceWarning or the asyncio error log
    "Unclosed AIOKafkaConnection" is an assertion error naming it."""
    handler = _Unclosed()
    logging.getLogger("asyncio").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            yield
            gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] + handler.messages
    assert not unclosed, f"{len(unclosed)} connections left unclosed: {unclosed[:3]}"
