"""The two halves of a keyed count split at an exchange, as two real job processes that
the exchange crash test kills and restarts.

    python exchange_job.py writer --bootstrap B --topic T --checkpoints DIR
    python exchange_job.py reader --bootstrap B --topic T --output-topic O --checkpoints DIR

The writer (bounded) reads ``RECORDS`` records ``(key, id, Decimal, (id, key))`` from a
CollectionSource at parallelism ``WRITERS``, paces them (so the run spans many
checkpoints) and writes them through the exchange sink, keyed by ``key``. The reader
(it ends once every writer's end of input is committed; SIGTERM cancels it, exit 3)
reads the exchange at parallelism ``READERS``,
paces the records (a backlog builds up behind the exchange reader), counts per
key in keyed state and writes ``{"key", "count", "id", "types"}`` JSON to ``--output-topic``
with an exactly-once KafkaSink. Both checkpoint every 0.2 s; the reader's batches are
smaller than the writer's packs, so checkpoints fall inside packs;
every 5th checkpoint of each is aborted after its sinks pre-committed, so the abort
path runs with records in the prepared transactions. No restarts inside a process: a
failure ends it (exit 1), an armed crash point (``STREAMFLOW_CRASH``) with exit 137.

Exact output means: every id exactly once, each key's counts exactly 1..n, every
record's field types as written (the exchange pickles; nothing may turn a tuple into a
list or a Decimal into a float).
"""

from __future__ import annotations

import argparse
import asyncio
import decimal
import json
import signal
import sys
from typing import Any

from streamflow import KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.api.exchange import ExchangeKind, ExchangeSpec
from streamflow.connectors import CollectionSource
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaExchange, KafkaSink
from streamflow.core.faults import FaultInjector
from streamflow.errors import JobCancelledError
from streamflow.state import ValueStateDescriptor

RECORDS = 800
KEYS = 13
WRITERS = 2
READERS = 3
PARTITIONS = 4
WRITER_BATCH = 24  # records per source batch: packs of about 6 records per partition
READER_BATCH = 4  # records per exchange reader batch: most batches end inside a pack
CHECKPOINT_INTERVAL = 0.2
ABORT_EVERY = 5
PACE_SECONDS = 0.1  # per source batch and writer subtask: about 1.7 s of input
READER_PACE = 0.004  # per record and reader subtask: the reader falls behind


def inputs() -> list[tuple[str, int, decimal.Decimal, tuple[int, str]]]:
    return [(f"k{i % KEYS}", i, decimal.Decimal(i) / 8, (i, f"k{i % KEYS}")) for i in range(RECORDS)]


def key_of(record: Any) -> str:
    return str(record[0])


def spec(topic: str) -> ExchangeSpec:
    return ExchangeSpec(
        topic=topic, kind=ExchangeKind.HASH, key_selector=key_of, partitions=PARTITIONS,
        max_parallelism=128, writer_uid="parse->count.0.exchange-writer", reader_uid="parse->count.0.exchange-reader",
        writer_parallelism=WRITERS, generation="crash-test", upstream_uid="parse", downstream_uid="count",
    )


class Pace:
    """An async map that sleeps ``seconds`` per record: the run spans many checkpoints,
    and behind the exchange reader a backlog builds up, so barriers find records left
    in the reader's packs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __call__(self, record: Any) -> Any:
        await asyncio.sleep(self.seconds)
        return record


class Count(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, record: Any, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)
        types = [type(record[2]).__name__, type(record[3]).__name__]
        out.collect({"key": record[0], "count": self.count.value(), "id": record[1], "types": types})


def environment(parallelism: int, checkpoints: str, batch: int, failing_uid: str) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism)
    faults = FaultInjector.from_environment()  # the crash point of STREAMFLOW_CRASH, if any
    faults.fail_state_writes(failing_uid, ABORT_EVERY)
    env.set_fault_injector(faults)
    env.enable_checkpointing(CHECKPOINT_INTERVAL, directory=checkpoints, tolerable_failures=1)
    env.set_restart_strategy(RestartStrategy.none())
    env.set_source_batch_size(batch)
    return env


async def run(args: argparse.Namespace) -> None:
    exchange = KafkaExchange(args.bootstrap, partitions=PARTITIONS, replication_factor=1)
    the_spec = spec(args.topic)
    if args.role == "writer":
        env = environment(WRITERS, args.checkpoints, WRITER_BATCH, the_spec.writer_uid)
        (
            env.from_source(CollectionSource(inputs()), name="input").uid("input")
            .map(Pace(PACE_SECONDS / WRITER_BATCH)).uid("parse")
            .sink_to(exchange.sink(the_spec)).uid(the_spec.writer_uid)
        )
        await env.execute("exchange-writer")
        return
    env = environment(READERS, args.checkpoints, READER_BATCH, "out")
    (
        env.from_source(exchange.source(the_spec), name="exchange").uid(the_spec.reader_uid)
        .map(Pace(READER_PACE)).uid("pace")
        .key_by(key_of).process(Count()).uid("count")
        .sink_to(KafkaSink(
            args.bootstrap, args.output_topic, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
            transactional_id_prefix=args.output_topic, value_serializer=lambda r: json.dumps(r).encode(),
        )).uid("out")
    )
    client = env.execute_async("exchange-reader")
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(client.cancel()))
    try:
        await client.wait()
    except JobCancelledError:
        sys.exit(3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["writer", "reader"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output-topic")
    parser.add_argument("--checkpoints", required=True)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
