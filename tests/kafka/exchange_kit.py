"""Helpers of the exchange tests: specs, contexts, writers and readers driven in the
order the runtime drives them (write, barrier, completion; poll, snapshot)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from streamflow.api.connector import SinkContext, SourceBatch, SourceContext
from streamflow.api.exchange import ExchangeKind, ExchangeSpec
from streamflow.connectors.kafka import KafkaExchange
from streamflow.connectors.kafka.exchange_sink import ExchangeWriter
from streamflow.connectors.kafka.exchange_source import ExchangeReader
from streamflow.testing.kafka import unique_topic


def first(record: Any) -> Any:
    return record[0]


def make_spec(topic: str, *, kind: ExchangeKind = ExchangeKind.HASH, writers: int = 2, partitions: int = 4,
              generation: str = "g1", key: Callable[[Any], Any] | None = first) -> ExchangeSpec:
    return ExchangeSpec(
        topic=topic, kind=kind, key_selector=key if kind is ExchangeKind.HASH else None,
        partitions=partitions, max_parallelism=128, writer_uid="up->down.0.exchange-writer",
        reader_uid="up->down.0.exchange-reader", writer_parallelism=writers, generation=generation,
        upstream_uid="up", downstream_uid="down",
    )


def make_exchange(bootstrap: str, partitions: int = 4) -> KafkaExchange:
    return KafkaExchange(bootstrap, partitions=partitions, replication_factor=1, request_timeout=20.0)


def new_topic_name() -> str:
    return unique_topic("exchange")


async def writer(exchange: KafkaExchange, spec: ExchangeSpec, subtask: int,
                 restored: list[Any] | None = None) -> ExchangeWriter:
    ctx = SinkContext(job_name="job", operator_uid=spec.writer_uid, subtask_index=subtask,
                      parallelism=spec.writer_parallelism, checkpointing=True, checkpoint_interval=1.0,
                      restored_state=restored)
    w = exchange.sink(spec).create_writer(ctx)
    await w.open()
    return w


async def reader(exchange: KafkaExchange, spec: ExchangeSpec, subtask: int, parallelism: int,
                 restored: list[Any] | None = None, everything: list[Any] | None = None) -> ExchangeReader:
    ctx = SourceContext(job_name="job", operator_uid=spec.reader_uid, subtask_index=subtask,
                        parallelism=parallelism, restored_splits=restored, all_restored_splits=everything)
    r = exchange.source(spec).create_reader(ctx)
    await r.open()
    return r


async def checkpoint(writers: list[ExchangeWriter], checkpoint_id: int, *, complete: bool = True) -> list[list[Any]]:
    """Barrier ``checkpoint_id`` at every writer, then (``complete``) its completion."""
    states = [await w.snapshot(checkpoint_id) for w in writers]
    if complete:
        for w in writers:
            await w.notify_checkpoint_complete(checkpoint_id)
    return states


async def read(r: ExchangeReader, count: int, *, max_records: int = 1000, timeout: float = 30.0
               ) -> tuple[list[Any], list[SourceBatch]]:
    """Poll until ``count`` records came (more is a test failure for the caller to see)."""
    records: list[Any] = []
    batches: list[SourceBatch] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"read {len(records)} of {count} records in {timeout}s")
        batch = await r.poll(max_records, 0.1)
        assert batch is not None, f"the input ended after {len(records)} of {count} records"
        records.extend(batch.records)
        batches.append(batch)
    return records, batches


async def read_all(readers: list[ExchangeReader], count: int, *, timeout: float = 30.0) -> list[list[Any]]:
    """Poll ``readers`` in turn until together they read ``count`` records; each one's."""
    got: list[list[Any]] = [[] for _ in readers]
    deadline = time.monotonic() + timeout
    while sum(map(len, got)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"read {sum(map(len, got))} of {count} records in {timeout}s")
        for mine, r in zip(got, readers):
            batch = await r.poll(1000, 0.05)
            assert batch is not None
            mine.extend(batch.records)
    return got


async def quiet(r: ExchangeReader, seconds: float = 1.0) -> list[Any]:
    """What ``r`` reads within ``seconds`` (expected: nothing)."""
    got: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = await r.poll(1000, 0.1)
        if batch is None:
            break
        got.extend(batch.records)
    return got


async def polled(r: ExchangeReader, seconds: float) -> list[SourceBatch]:
    """Every batch ``r`` returns within ``seconds``."""
    batches: list[SourceBatch] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = await r.poll(1000, 0.1)
        assert batch is not None
        batches.append(batch)
    return batches


def max_watermark(batches: list[SourceBatch]) -> float | None:
    marks = [b.watermark for b in batches if b.watermark is not None]
    return max(marks) if marks else None


async def watermark_reaches(r: ExchangeReader, wanted: float, timeout: float = 30.0) -> list[Any]:
    """Poll until a batch carries watermark ``wanted``; the records read meanwhile."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        batch = await r.poll(1000, 0.1)
        assert batch is not None
        records.extend(batch.records)
        seen = batch.watermark
        if seen == wanted:
            return records
        await asyncio.sleep(0)
    raise AssertionError(f"watermark {wanted} not reached in {timeout}s (last {seen})")
