"""Helpers shared by the KafkaSource tests: fill a topic with known records per
partition, run a job until its sink has seen enough, and tag records with the source
subtask that read them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streamflow import JobClient, ProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.connectors.debug import CollectSink
from streamflow.testing.kafka import create_topic


async def fill(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int = 0) -> list[str]:
    """Write ``"p:i"`` for i in [start, start + per_partition) to every partition ``p``
    (creating the topic when ``start`` is 0); returns the values written."""
    if start == 0:
        await create_topic(bootstrap, topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        values = [f"{p}:{i}" for p in range(partitions) for i in range(start, start + per_partition)]
        futures = [await producer.send(topic, v.encode(), partition=int(v.split(":")[0])) for v in values]
        for future in futures:
            await future
    finally:
        await producer.stop()
    return values


def job(parallelism: int, checkpoints: Path | None = None) -> StreamEnvironment:
    """An environment without restarts; with ``checkpoints``, checkpointing into that
    directory at an interval long enough that only triggered and final ones happen."""
    env = StreamEnvironment(parallelism=parallelism)
    env.set_restart_strategy(RestartStrategy.none())
    if checkpoints is not None:
        env.enable_checkpointing(3600.0, directory=checkpoints)
    return env


async def run_until(env: StreamEnvironment, name: str, out: str, count: int, timeout: float = 30.0) -> JobClient:
    """Start ``env`` and return once sink ``out`` holds ``count`` records (the job
    keeps running); a job that fails or ends first raises here."""
    client = env.execute_async(name)
    deadline = time.monotonic() + timeout
    while len(CollectSink.results(out)) < count:
        if client.status in ("failed", "finished", "cancelled"):
            await client.wait()
            raise AssertionError(f"job ended with {len(CollectSink.results(out))} of {count} records")
        if time.monotonic() > deadline:
            await client.cancel()
            raise AssertionError(f"only {len(CollectSink.results(out))} of {count} records after {timeout}s")
        await asyncio.sleep(0.02)
    return client


class TagSubtask(ProcessFunction):
    """Emits (subtask index, record): chained behind the source, the subtask that read it."""

    def open(self, ctx: Any) -> None:
        self.subtask = ctx.subtask_index

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((self.subtask, value))


def partition_of(value: str | bytes) -> int:
    text = value.decode() if isinstance(value, bytes) else value
    return int(text.split(":")[0])
