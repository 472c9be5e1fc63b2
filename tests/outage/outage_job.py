"""The job of the outage tests, as a real process whose server goes away mid-run.

    python tests/outage/outage_job.py kafka --bootstrap HOST:PORT --input T --output U \
        --checkpoints DIR
    python tests/outage/outage_job.py mysql --url mysql://root@127.0.0.1:PORT/DB --table T \
        --checkpoints DIR

``kafka``: KafkaSource (bounded, read_committed) -> a paced map -> key_by -> a count per
key in keyed ValueState -> an exactly-once KafkaSink writing ``key,count`` keyed by key.
``mysql``: the same records from a CollectionSource -> ... -> an exactly-once (XA)
MySqlSink inserting rows ``(k, v)`` into a table with UNIQUE (k, v).

The restart strategy is the default one (nothing is set): what these tests prove is that
the default rides out the outage with no person involved. The paced map prints
``CHECKPOINT n`` on stdout when checkpoint n completes (the harness stops the server after
the second), logs go to stderr at INFO (what an operator would see), and a finished job
prints one JSON line: attempts, restored_from, checkpoints_completed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from streamflow import KeyedProcessFunction, StreamEnvironment
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.connectors.mysql import MySqlSink
from streamflow.state import ValueStateDescriptor

KEYS = 20
RECORDS = 6_000
PACE_EVERY = 50  # records per pause of the paced map
PAUSE = 0.04  # seconds: the whole input takes about 5 s without an outage


def record(i: int) -> str:
    return f"k{i % KEYS}"


def expected_results() -> list[tuple[str, int]]:
    """Every ``(key, count)`` the job emits once: counts 1..n per key."""
    return [(f"k{k}", n) for k in range(KEYS) for n in range(1, RECORDS // KEYS + 1)]


class Paced:
    """Slows the stream and reports completed checkpoints on stdout."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, key: str) -> str:
        self.seen += 1
        if self.seen % PACE_EVERY == 0:
            await asyncio.sleep(PAUSE)
        return key

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        print(f"CHECKPOINT {checkpoint_id}", flush=True)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        return None


class Count(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, key: str, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)
        out.collect((key, self.count.value()))


def build(args: argparse.Namespace) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=2)
    # Checkpoints that cannot complete while the server is away time out within 5 s, so
    # attempts fail and the restart strategy is what brings the job back.
    env.enable_checkpointing(0.3, directory=args.checkpoints, timeout=5.0)
    env.set_source_batch_size(20)
    if args.kind == "kafka":
        source: Any = KafkaSource(args.bootstrap, topics=args.input, bounded=True, value_deserializer="str",
                                  request_timeout=5.0)
        sink: Any = KafkaSink(args.bootstrap, args.output, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                              transactional_id_prefix=args.output, key=lambda r: r[0], key_serializer="str",
                              value_serializer=lambda r: f"{r[0]},{r[1]}".encode(),
                              producer_config={"request_timeout_ms": 5_000})
    else:
        source = CollectionSource([record(i) for i in range(RECORDS)], batch_size=20)
        sink = MySqlSink(args.url, table=args.table, statement=f"INSERT INTO {args.table} (k, v) VALUES (%s, %s)",
                         row_fn=lambda r: r, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, batch_size=50)
    (
        env.from_source(source, name="records").uid("records")
        .map(Paced()).uid("paced")
        .key_by(lambda key: key).process(Count()).uid("count")
        .sink_to(sink).uid("out")
    )
    return env


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["kafka", "mysql"])
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--bootstrap")
    parser.add_argument("--input")
    parser.add_argument("--output")
    parser.add_argument("--url")
    parser.add_argument("--table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = asyncio.run(build(args).execute(f"outage-{args.kind}"))
    print(orjson.dumps({"attempts": result.attempts, "restored_from": result.restored_from,
                        "checkpoints_completed": result.checkpoints_completed}).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
