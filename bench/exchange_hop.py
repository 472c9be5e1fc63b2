"""One exchange hop between workers: packed exchange records against one Kafka record per
pipeline record, both exactly-once, on one real broker, in one run.

What moves: N records ``(user, i, {"amount": float, "note": str})`` (about 100 bytes
pickled), written in batches of 1000 by ``--writers`` writer subtasks and read by one
reader subtask, writers and reader in this one process (so the figure is the CPU cost
of the hop on one core, both ends together). A checkpoint (barrier: prepare; completion:
commit) every ``--checkpoint-every`` records per writer.

  exchange  ExchangeWriter -> ExchangeReader (HASH by user over 8 partitions): one
            Kafka record per partition per written batch (a pickled pack)
  plain     the exactly-once KafkaSink writer with a pickle value serializer -> a
            KafkaSource reader with pickle.loads: one Kafka record per pipeline record
            (what an exchange without packing would cost)

Time runs from the first write to the last record read. Rounds alternate the two;
the figure to trust is the ratio of the medians (the machine is shared). Every round
checks that the reader got every record exactly once.

Broker: $KAFKA_BOOTSTRAP_SERVERS (or --bootstrap) if set, else a broker of its own.

Usage: python3 bench/exchange_hop.py [--records N] [--rounds R] [--writers W]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from streamflow.api.connector import SinkContext, SourceContext
from streamflow.api.exchange import ExchangeKind, ExchangeSpec
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaExchange, KafkaSink, KafkaSource
from streamflow.connectors.kafka.records import KafkaOutput
from streamflow.devtools.kafka_broker import KafkaBroker
from streamflow.testing.kafka import create_topic, unique_topic

PARTITIONS = 8
BATCH = 1000


def record(i: int) -> tuple[str, int, dict[str, Any]]:
    return (f"user-{i % 10_000}", i, {"amount": i * 0.25, "note": "x" * 40})


def user_of(r: Any) -> str:
    return str(r[0])


def sink_ctx(uid: str, subtask: int, writers: int) -> SinkContext:
    return SinkContext(job_name="bench", operator_uid=uid, subtask_index=subtask, parallelism=writers,
                       checkpointing=True, checkpoint_interval=1.0)


def source_ctx(uid: str) -> SourceContext:
    return SourceContext(job_name="bench", operator_uid=uid, subtask_index=0, parallelism=1)


async def hop(writers: list[Any], reader: Any, count: int, every: int, value_of: Callable[[Any], Any]) -> float:
    """Write ``count`` records over ``writers`` with checkpoints, read them all; seconds."""
    seen: set[int] = set()

    async def write(w: Any, subtask: int) -> None:
        ids = range(subtask, count, len(writers))
        checkpoint = 0
        since = 0
        for start in range(0, len(ids), BATCH):
            await w.write([record(i) for i in ids[start:start + BATCH]])
            since += BATCH
            if since >= every:
                checkpoint, since = checkpoint + 1, 0
                await w.snapshot(checkpoint)
                await w.notify_checkpoint_complete(checkpoint)
        await w.snapshot(checkpoint + 1)
        await w.notify_checkpoint_complete(checkpoint + 1)

    async def read() -> None:
        while len(seen) < count:
            batch = await reader.poll(BATCH, 0.05)
            assert batch is not None
            for item in batch.records:
                i = value_of(item)[1]
                assert i not in seen, f"record {i} twice"
                seen.add(i)

    started = time.perf_counter()
    await asyncio.gather(read(), *(write(w, s) for s, w in enumerate(writers)))
    return time.perf_counter() - started


async def exchange_round(bootstrap: str, count: int, n_writers: int, every: int) -> float:
    topic = unique_topic("bench-exchange")
    exchange = KafkaExchange(bootstrap, partitions=PARTITIONS, replication_factor=1)
    spec = ExchangeSpec(
        topic=topic, kind=ExchangeKind.HASH, key_selector=user_of, partitions=PARTITIONS,
        max_parallelism=128, writer_uid="w", reader_uid="r", writer_parallelism=n_writers, generation="bench",
        upstream_uid="a", downstream_uid="b",
    )
    writers = [exchange.sink(spec).create_writer(sink_ctx("w", s, n_writers)) for s in range(n_writers)]
    reader = exchange.source(spec).create_reader(source_ctx("r"))
    for client in (*writers, reader):
        await client.open()
    try:
        return await hop(writers, reader, count, every, lambda item: item)
    finally:
        for client in (*writers, reader):
            await client.close()


async def plain_round(bootstrap: str, count: int, n_writers: int, every: int) -> float:
    topic = unique_topic("bench-plain")
    await create_topic(bootstrap, topic, PARTITIONS)
    sink = KafkaSink(bootstrap, topic, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, transactional_id_prefix=topic,
                     key=user_of, key_serializer="str", value_serializer=pickle.dumps)
    writers = [sink.create_writer(sink_ctx("w", s, n_writers)) for s in range(n_writers)]
    source = KafkaSource(bootstrap, topics=[topic], value_deserializer=pickle.loads, output=KafkaOutput.VALUE,
                         discovery_interval=None)
    reader = source.create_reader(source_ctx("r"))
    for client in (*writers, reader):
        await client.open()
    try:
        return await hop(writers, reader, count, every, lambda item: item)
    finally:
        for client in (*writers, reader):
            await client.close()


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    times: dict[str, list[float]] = {"exchange": [], "plain": []}
    rounds = {"exchange": exchange_round, "plain": plain_round}
    for r in range(args.rounds):
        order = ["exchange", "plain"] if r % 2 == 0 else ["plain", "exchange"]
        for name in order:
            seconds = await rounds[name](bootstrap, args.records, args.writers, args.checkpoint_every)
            times[name].append(seconds)
            print(f"round {r + 1} {name:8s} {args.records / seconds:>10,.0f} records/s", flush=True)
    rates = {name: args.records / statistics.median(t) for name, t in times.items()}
    print(f"\n{platform.python_version()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    print("| hop | records/s (median) |")
    print("|-----|--------------------|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} |")
    print(f"\nexchange / plain: {rates['exchange'] / rates['plain']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=50_000, help="records per writer between checkpoints")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()
    if args.bootstrap:
        asyncio.run(run(args, args.bootstrap))
        return
    broker = KafkaBroker()
    try:
        asyncio.run(run(args, broker.start()))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
