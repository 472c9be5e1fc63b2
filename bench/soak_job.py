"""The job the soak kills: Kafka -> keyed count -> Kafka or MySQL, exactly once.

    python bench/soak_job.py --sink kafka --bootstrap HOST:PORT --input-topic T \
        --output-topic U --checkpoints DIR [--parallelism P] [--rate R]
    python bench/soak_job.py --sink mysql --bootstrap HOST:PORT --input-topic T \
        --mysql-url mysql://root@127.0.0.1:PORT/DB --checkpoints DIR ...

Pipeline: a bounded KafkaSource over ``--input-topic`` (lines ``key,id``) -> parse ->
a map that holds the job to ``--rate`` records per second (so that one run lasts long
enough to be killed many times) -> key_by(key) -> a count per key in keyed ValueState,
emitting ``(key, n, id)`` -> an exactly-once sink: a transactional KafkaSink writing
``key,n,id`` keyed by key to ``--output-topic``, or an XA MySqlSink inserting rows
``(k, n, id)`` into ``soak_results`` (``seq`` AUTO_INCREMENT keeps the insertion order; no
unique key, so a duplicate lands and the soak's reader counts it instead of the job
failing on it).

``--stages async`` puts a keyed ``map_async`` before the count (``soak_stages.py``: calls
in flight at every kill, some retried); the output stays the same. ``--stages windows``
adds an event-time tumbling window count per key beside the count, into the same sink.

``--at-least-once`` runs the same sinks at least once (MySQL: the same plain INSERT, no
upsert), so that a restart writes some results again: the soak's negative control.

Checkpoints go to ``--checkpoints`` (a process started on the same directory restores the
latest complete one). ``--workers N --worker-index I`` runs worker I of the job on N
processes (the soak's multi-worker mode): ``--checkpoints`` is then the workers' shared
root, and the key_by crosses workers through exchange topics on the same broker. Failures inside the process are retried by a failure-rate restart
strategy (a database restart is ridden out in-process); ``streamflow.job`` and
``streamflow.checkpoint`` log at INFO on stderr, which is what the soak parses for its
restart times (and ``streamflow.operator``, ``soak.lookup`` for the async stage). A
finished job prints one JSON line on stdout (attempts, restored_from,
checkpoints_completed, duration).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

import orjson

from streamflow import AsyncRetry, KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaExchange, KafkaSink, KafkaSource
from streamflow.connectors.mysql import MySqlSink
from streamflow.eventtime import WatermarkStrategy
from streamflow.state import EmbeddedRocksDBStateBackend, HashMapStateBackend, ValueStateDescriptor
from streamflow.windowing import AggregateFunction, ProcessWindowFunction, TumblingEventTimeWindows

from soak_data import MAX_JITTER_MS, WINDOW_MS, Result, event_seconds, format_result, parse_input, window_result
from soak_stages import (LOOKUP_ATTEMPTS, LOOKUP_CAPACITY, LOOKUP_LOGGER, LOOKUP_RETRY_DELAY, LOOKUP_UID,
                         WINDOW_UID, SlowLookup, parse_stages)

JOB_NAME = "soak"
SINK_UID = "soak-sink"
TABLE = "soak_results"
MYSQL_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (seq BIGINT AUTO_INCREMENT PRIMARY KEY,"
    " k VARCHAR(32) NOT NULL, n INT NOT NULL, id BIGINT NOT NULL) ENGINE=InnoDB"
)
MYSQL_INSERT = f"INSERT INTO {TABLE} (k, n, id) VALUES (%s, %s, %s)"
SOURCE_BATCH = 100  # small batches: barriers fall between records, transactions abort mid-way
MYSQL_BATCH = 200
# Restarts inside the process: a database restart (a few seconds) must not end it.
RESTARTS = RestartStrategy.failure_rate(max_failures=30, interval=60.0, delay=1.0)


class CountPerKey(KeyedProcessFunction):
    """The n-th record of a key becomes ``(key, n, id)``; n lives in keyed ValueState."""

    def open(self, ctx: Any) -> None:
        self.seen = ctx.get_state(ValueStateDescriptor("seen", default=0))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        n = self.seen.value() + 1
        self.seen.update(n)
        out.collect((value[0], n, value[1]))


class HoldRate:
    """An async identity map that sleeps whenever its subtask runs ahead of ``per_second``
    records a second since its first record (checked every ``STEP`` records).

    It sits in the source's task (chained): the source then reads at that rate and the
    channels downstream stay short, so a barrier is not held up behind a queue of records.
    """

    STEP = 50

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.count = 0
        self.started: float | None = None

    async def __call__(self, record: tuple[str, int]) -> tuple[str, int]:
        if self.started is None:
            self.started = time.monotonic()
        self.count += 1
        if self.count % self.STEP == 0:
            ahead = self.count / self.per_second - (time.monotonic() - self.started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        return record


class CountRecords(AggregateFunction[tuple[str, int], int, int]):
    """The records of a key's window, counted as they come (one int per open window)."""

    def create_accumulator(self) -> int:
        return 0

    def add(self, value: tuple[str, int], accumulator: int) -> int:
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b


class LabelWindow(ProcessWindowFunction):
    """A fired window's count as the soak's window result (key and window start in ms)."""

    def process(self, key: str, context: Any, counts: Any, out: Any) -> None:
        for count in counts:
            out.collect(window_result(key, round(context.window.start * 1000), count))


def record_key(record: tuple[str, int]) -> str:
    return record[0]


def result_value(result: Result) -> bytes:
    return format_result(result).encode()


def build(env: StreamEnvironment, args: argparse.Namespace) -> None:
    windows = "windows" in args.stages
    event_time = (WatermarkStrategy.for_bounded_out_of_orderness(MAX_JITTER_MS / 1000)
                  .with_timestamp_assigner(event_seconds)) if windows else None  # a watermark per partition
    parsed = (
        env.from_source(KafkaSource(args.bootstrap, topics=args.input_topic, bounded=True,
                                    value_deserializer="str"), name="input", watermark_strategy=event_time).uid("input")
        .map(parse_input).uid("parse")
    )
    if args.rate > 0:  # chained to the source: it reads slower, no queue builds up before a barrier
        subtasks = env.parallelism * args.workers  # the rate is the whole job's, over every worker
        parsed = parsed.map(HoldRate(args.rate / subtasks)).uid("hold-rate")
    if "async" in args.stages:  # a keyed lookup: kills and barriers find calls in flight
        parsed = parsed.key_by(record_key).map_async(
            SlowLookup(), capacity=LOOKUP_CAPACITY, ordered="per_key",
            retry=AsyncRetry.fixed_delay(LOOKUP_ATTEMPTS, LOOKUP_RETRY_DELAY)).uid(LOOKUP_UID)
    counted = parsed.key_by(record_key).process(CountPerKey()).uid("count")
    if windows:  # the window results go through the same exactly-once sink
        counted = counted.union(
            parsed.key_by(record_key).window(TumblingEventTimeWindows.of(WINDOW_MS / 1000))
            .aggregate(CountRecords(), window_function=LabelWindow()).uid(WINDOW_UID))
    guarantee = DeliveryGuarantee.AT_LEAST_ONCE if args.at_least_once else DeliveryGuarantee.EXACTLY_ONCE
    if args.sink == "kafka":
        sink: Any = KafkaSink(
            args.bootstrap, args.output_topic, delivery_guarantee=guarantee,
            transactional_id_prefix=None if args.at_least_once else args.output_topic,
            key=lambda result: result[0], key_serializer="str", value_serializer=result_value,
        )
    else:
        sink = MySqlSink(args.mysql_url, table=TABLE, statement=MYSQL_INSERT, row_fn=tuple,
                         delivery_guarantee=guarantee, batch_size=MYSQL_BATCH)
    counted.sink_to(sink, name=SINK_UID).uid(SINK_UID)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = StreamEnvironment(parallelism=args.parallelism)
    env.enable_checkpointing(args.checkpoint_interval, directory=args.checkpoints, unaligned=args.unaligned)
    env.set_restart_strategy(RESTARTS)
    if args.state_backend == "rocksdb":
        env.set_state_backend(EmbeddedRocksDBStateBackend(args.state_dir, memory_budget=64 << 20))
    elif args.state_backend == "heap-fork":  # every keyed snapshot pickled by a forked child
        env.set_state_backend(HashMapStateBackend(fork_snapshots_from=0))
    env.set_source_batch_size(SOURCE_BATCH)
    if args.workers > 1:
        env.set_workers(args.workers, args.worker_index, exchange=KafkaExchange(
            args.bootstrap, partitions=args.exchange_partitions))
    build(env, args)
    result = await env.execute(JOB_NAME)
    return {"attempts": result.attempts, "restored_from": result.restored_from,
            "checkpoints_completed": result.checkpoints_completed, "duration": round(result.duration, 3)}


def create_table(url: str) -> None:
    """The results table is the user's to create, as for any MySqlSink."""
    from soak_readers import mysql_connect

    with mysql_connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(MYSQL_DDL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", choices=("kafka", "mysql"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", help="--sink kafka: the output topic")
    parser.add_argument("--mysql-url", help="--sink mysql: mysql://user:password@host:port/database")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--checkpoint-interval", type=float, default=0.5)
    parser.add_argument("--rate", type=float, default=0.0, help="records per second, whole job (0: as fast as it goes)")
    parser.add_argument("--workers", type=int, default=1, help="the job's worker processes (this is one of them)")
    parser.add_argument("--worker-index", type=int, default=0, help="which worker this process runs")
    parser.add_argument("--exchange-partitions", type=int, default=8, help="partitions of the exchange topics")
    parser.add_argument("--state-backend", choices=("heap", "heap-fork", "rocksdb"), default="heap")
    parser.add_argument("--state-dir", help="--state-backend rocksdb: where the databases go")
    parser.add_argument("--unaligned", action="store_true",
                        help="unaligned checkpoints: records in flight between tasks go into the checkpoint")
    parser.add_argument("--at-least-once", action="store_true",
                        help="the sink at least once (a plain INSERT for MySQL): the soak's negative control")
    parser.add_argument("--stages", type=parse_stages, default=(),
                        help="optional stages, comma-separated: async (a keyed map_async before the count), "
                        "windows (an event-time window count per key beside it)")
    args = parser.parse_args(argv)
    if (args.sink == "kafka") != (args.output_topic is not None) or (args.sink == "mysql") != (args.mysql_url is not None):
        parser.error("--sink kafka takes --output-topic, --sink mysql takes --mysql-url")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # streamflow.operator: an async operator's restore says how many held inputs it calls again
    for name in ("streamflow.job", "streamflow.checkpoint", "streamflow.operator", LOOKUP_LOGGER):
        logging.getLogger(name).setLevel(logging.INFO)
    if args.sink == "mysql":
        create_table(args.mysql_url)
    summary = asyncio.run(run(args))
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
