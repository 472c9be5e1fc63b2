"""The job that the crash suite kills and restarts, as a real process.

    python tests/crash/crash_job.py --sink file|sqlite --input DIR --out DIR \
        --checkpoints DIR --parallelism P
    python tests/crash/crash_job.py --sink kafka|kafka-async|kafka-async-per-key --bootstrap HOST:PORT \
        --input-topic T --output-topic U --out DIR --checkpoints DIR --parallelism P
    python tests/crash/crash_job.py --sink mysql|mysql-offsets --bootstrap HOST:PORT --input-topic T \
        --mysql-url mysql://root@127.0.0.1:PORT/DB --out DIR --checkpoints DIR --parallelism P

Pipeline: FileSource over the input files -> map(parse) -> key_by(key) -> a
KeyedProcessFunction counting records per key in keyed ValueState and emitting
``(key, count, line id)`` -> a paced async map (so the run spans several checkpoints) ->
an exactly-once sink: part files of ``key,count,lineid`` lines under ``--out``, or rows
of ``results(key, count, lineid)`` in ``--out/results.db`` with PRIMARY KEY (key, count).

With ``--sink kafka`` both ends are Kafka: the same lines are read from ``--input-topic``
(file f is partition f, keyed by the line's key) with KafkaSource, and written as
``key,count,lineid`` values keyed by key to ``--output-topic`` with an exactly-once
(transactional) KafkaSink; a key's records stay in one output partition, in order.
``--sink kafka-async`` and ``kafka-async-per-key`` are the same Kafka job with an async
enrichment (``map_async``, :class:`Enrich`) in place of the paced map: in input order,
or after a second ``key_by`` in per-key order; the calls pace the run.
With ``--sink mysql`` the input is the same Kafka topic and the output the rows of
``results`` in ``--mysql-url``, written by an exactly-once (XA) MySqlSink; ``seq`` (auto
increment) keeps the insertion order, and UNIQUE (key, count) makes a duplicate fail.

With ``--sink mysql-offsets`` the output goes through a MySqlOffsetsSink, which stores
the Kafka offsets with the rows in one local transaction per completed checkpoint, and
every process resumes from MySQL alone, as its users do: a checkpoint directory of its
own (nothing is restored) and ``StartingOffsets.offsets(load_offsets(...))``. That is
exact only when MySQL holds all the state, so this pipeline keeps none: no keyed count,
rows ``(key, line id)`` with UNIQUE (line id), in ``seq`` order. The count of a row is
its place among its key's rows, derived when reading (a lost or repeated row shifts
every count after it, and a duplicate line id fails the insert).

Every key lives in exactly one input file, so its records reach the counter in the order
of that file whatever the parallelism and timing: the output is deterministic and each
record is unique, and a multiset comparison with a failure-free run is exact.

The window jobs read the same Kafka topic with event time: a line's time is its line id
(seconds), increasing within each partition, one watermark per partition
(``WatermarkStrategy`` on the source, so a partition read ahead of another never makes
the other's records late). ``--sink kafka-session``: per key, session windows with a gap
of ``SESSION_GAP`` s, each session ``key,start,end,count,total`` (total: the sum of its
line ids) written to the output topic by an exactly-once KafkaSink. ``--sink
mysql-tumbling``: per key, tumbling windows of ``TUMBLE`` s into the rows of
``windows(key, start, end, count, total)`` by an exactly-once (XA) MySqlSink, UNIQUE
(key, start); its window runs the built-in ``Sum`` (the tumbling fast path's loop without
a call per record) over one int per record that packs both figures, ``line id << 32 |
1``, unpacked when the window fires (a sum restored as anything but an int would lose
the count). No record is ever late (every split is in order, and the window operators
keep the event time they reached across a restore), so each window fires exactly once
with all its records, whatever the timing: the output is the hand computation of
:func:`expected_windows`.

Checkpoints every 0.2 s (exactly-once) into ``--checkpoints``; a process started on the
same directory restores from the latest complete checkpoint. ``--state-backend rocksdb``
keeps the counts in RocksDB (databases under ``--out``'s parent) with incremental
checkpoints, so a restore reads the files the checkpoints share; ``heap-fork`` keeps them
on the heap with every snapshot taken by a forked child process. No restarts inside the
process (RestartStrategy.none()): a failure ends the process with exit code 1 at once, a crash
point armed through ``STREAMFLOW_CRASH=<point>:<n>`` with exit code 137, and a finished
job with 0 after printing one JSON line (attempts, restored_from, checkpoints_completed,
and what the sink saw: see :class:`AbortWitness`).

Every checkpoint whose id is a multiple of ``ABORT_EVERY`` is aborted: the sink's state
write fails (``FaultInjector.fail_state_writes``) after it pre-committed, the coordinator
aborts the checkpoint and the sink hears ``notify_checkpoint_aborted`` with the
records of that epoch in its prepared transaction; the next completed checkpoint must
commit them, exactly once. Source batches are small (``SOURCE_BATCH``, which bounds the
records per batch of both sources), so barriers fall between records.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sqlite3
import sys
import threading
import traceback
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any, ClassVar

import orjson

from streamflow import AsyncRetry, KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.api.connector import SinkContext
from streamflow.connectors.file_sink import ExactlyOnceFileSink, read_committed_lines
from streamflow.connectors.files import FileSource
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource, StartingOffsets
from streamflow.connectors.mysql import MySqlOffsetsSink, MySqlSink, load_offsets
from streamflow.connectors.mysql.offsets_sink import PROGRESS_TABLE
from streamflow.connectors.sqlite import ExactlyOnceSqliteSink
from streamflow.core.faults import FaultInjector
from streamflow.eventtime import WatermarkStrategy
from streamflow.state import EmbeddedRocksDBStateBackend, HashMapStateBackend, ValueStateDescriptor
from streamflow.windowing import (
    AggregateFunction,
    EventTimeSessionWindows,
    ProcessWindowFunction,
    Sum,
    TumblingEventTimeWindows,
)

INPUT_FILES = 4
LINES_PER_FILE = 3_000
KEYS_PER_FILE = 10
TOTAL_RECORDS = INPUT_FILES * LINES_PER_FILE

CHECKPOINT_INTERVAL = 0.2
PACE_EVERY = 200  # records per pause of the paced map (per subtask)
RUN_SECONDS = 2.0  # roughly how long the pauses of a whole run add up to
SOURCE_BATCH = 50  # small batches: barriers interleave finely with records
ABORT_EVERY = 4  # checkpoints 4, 8, ... are aborted after the sink pre-committed them
UNALIGNED_CHANNEL_CAPACITY = 16  # batches: with --unaligned, many records in flight at each barrier

SINKS = ("file", "sqlite", "kafka", "mysql", "mysql-offsets")
WINDOW_SINKS = ("kafka-session", "mysql-tumbling")
# Kafka -> count -> map_async -> exactly-once Kafka (see the module docstring), in input
# order, or per key after a key_by (tests/crash/test_crash_async.py)
ASYNC_SINKS = ("kafka-async", "kafka-async-per-key")
KAFKA_INPUT = ("kafka", "mysql", "mysql-offsets", *ASYNC_SINKS, *WINDOW_SINKS)  # the sinks whose jobs read the input topic
KAFKA_OUTPUT = ("kafka", *ASYNC_SINKS, "kafka-session")  # the sinks writing an output topic
MYSQL_OUTPUT = ("mysql", "mysql-offsets", "mysql-tumbling")  # the sinks writing a database
SESSION_GAP = 25.0  # seconds (line ids) without a record of the key that end a session
TUMBLE = 100.0
ASYNC_CAPACITY = 32
FLAKY_EVERY = 61  # the first call of every line id divisible by it fails, and is retried
OFFSETS_NAME = "crash-job"  # whose offsets MySqlOffsetsSink stores

DB_NAME = "results.db"
TABLE = "results"
TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " key TEXT NOT NULL, count INTEGER NOT NULL, lineid INTEGER NOT NULL,"
    " PRIMARY KEY (key, count))"
)
# Plain INSERT, not OR IGNORE: a duplicate (key, count) must fail loudly.
INSERT = f"INSERT INTO {TABLE} (key, count, lineid) VALUES (?, ?, ?)"
MYSQL_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " seq BIGINT AUTO_INCREMENT PRIMARY KEY, `key` VARCHAR(16) NOT NULL,"
    " count INT NOT NULL, lineid INT NOT NULL, UNIQUE KEY key_count (`key`, count)) ENGINE=InnoDB"
)
MYSQL_INSERT = f"INSERT INTO {TABLE} (`key`, count, lineid) VALUES (%s, %s, %s)"
OFFSETS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " seq BIGINT AUTO_INCREMENT PRIMARY KEY, `key` VARCHAR(16) NOT NULL,"
    " lineid INT NOT NULL, UNIQUE KEY lineid (lineid)) ENGINE=InnoDB"
)
OFFSETS_INSERT = f"INSERT INTO {TABLE} (`key`, lineid) VALUES (%s, %s)"
WINDOW_TABLE = "windows"
WINDOW_DDL = (
    f"CREATE TABLE IF NOT EXISTS {WINDOW_TABLE} ("
    " seq BIGINT AUTO_INCREMENT PRIMARY KEY, `key` VARCHAR(16) NOT NULL, start DOUBLE NOT NULL,"
    " end DOUBLE NOT NULL, count INT NOT NULL, total BIGINT NOT NULL, UNIQUE KEY key_start (`key`, start))"
    " ENGINE=InnoDB"
)
WINDOW_INSERT = f"INSERT INTO {WINDOW_TABLE} (`key`, start, end, count, total) VALUES (%s, %s, %s, %s, %s)"

Result = tuple[str, int, int]  # (key, count, line id)
WindowResult = tuple[str, float, float, int, int]  # (key, window start, window end, records, sum of line ids)


# -- input ----------------------------------------------------------------------------


def generate_inputs(directory: Path) -> list[Path]:
    """Write the input files (deterministic); return their paths in order.

    File f holds the keys ``k{f*KEYS_PER_FILE + j}``; line ids are unique over all files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(INPUT_FILES):
        rng = random.Random(1000 + f)
        keys = [f"k{f * KEYS_PER_FILE + j}" for j in range(KEYS_PER_FILE)]
        lines = [f"{rng.choice(keys)},{f * LINES_PER_FILE + i}" for i in range(LINES_PER_FILE)]
        path = directory / f"input-{f}.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


async def fill_input_topic(directory: Path, bootstrap: str, topic: str) -> None:
    """Write the input files into ``topic``: file f to partition f, keyed by key."""
    from streamflow.testing.kafka import create_topic, produce

    await create_topic(bootstrap, topic, partitions=INPUT_FILES)
    for f, path in enumerate(input_paths(directory)):
        lines = path.read_text(encoding="utf-8").splitlines()
        keys = [parse(line)[0].encode() for line in lines]
        await produce(bootstrap, topic, [line.encode() for line in lines], keys=keys, partition=f)


def input_paths(directory: Path) -> list[Path]:
    return [directory / f"input-{f}.csv" for f in range(INPUT_FILES)]


def expected_windows(directory: Path, sink: str) -> list[WindowResult]:
    """The windows a correct window job emits, computed from the input alone: per key in
    the order they end (the order a key's windows fire in)."""
    times: dict[str, list[int]] = {}
    for path in input_paths(directory):
        for line in path.read_text(encoding="utf-8").splitlines():
            key, lineid = parse(line)
            times.setdefault(key, []).append(lineid)
    out: list[WindowResult] = []
    for key, ids in times.items():
        groups: list[list[int]] = []
        for lineid in sorted(ids):
            if sink == "kafka-session":
                # [t, t + gap) windows that overlap or touch merge: a gap of at most SESSION_GAP
                if groups and lineid - groups[-1][-1] <= SESSION_GAP:
                    groups[-1].append(lineid)
                else:
                    groups.append([lineid])
            elif groups and lineid // TUMBLE == groups[-1][0] // TUMBLE:
                groups[-1].append(lineid)
            else:
                groups.append([lineid])
        for group in groups:
            if sink == "kafka-session":
                start, end = float(group[0]), group[-1] + SESSION_GAP
            else:
                start = group[0] // TUMBLE * TUMBLE
                end = start + TUMBLE
            out.append((key, float(start), float(end), len(group), sum(group)))
    return out


def expected_results(directory: Path) -> list[Result]:
    """What a correct run emits, computed from the input alone, in per-key order."""
    counts: dict[str, int] = {}
    out: list[Result] = []
    for path in input_paths(directory):
        for line in path.read_text(encoding="utf-8").splitlines():
            key, lineid = parse(line)
            counts[key] = counts.get(key, 0) + 1
            out.append((key, counts[key], lineid))
    return out


# -- the pipeline -----------------------------------------------------------------------


def parse(line: str) -> tuple[str, int]:
    key, _, lineid = line.partition(",")
    return key, int(lineid)


class CountPerKey(KeyedProcessFunction):
    """Counts records per key in keyed ValueState; emits (key, count, line id)."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect((value[0], n, value[1]))


class Pace:
    """Async map that sleeps a little every ``every`` records (per subtask)."""

    def __init__(self, every: int, seconds: float) -> None:
        self.every = every
        self.seconds = seconds
        self.seen = 0

    async def __call__(self, record: Result) -> Result:
        self.seen += 1
        if self.seen % self.every == 0:
            await asyncio.sleep(self.seconds)
        return record


class Enrich:
    """The async enrichment of the async sinks: a call of a few ms (the same per record
    in every run, longer at higher parallelism so a run spans the same time), whose
    first attempt fails for every FLAKY_EVERY-th line id (retried). Returns the record
    as it is, so the output compares with the other jobs'. Each process counts the
    calls per line id (a restored one calls the inputs in flight at its checkpoint again)."""

    def __init__(self, mean_delay: float) -> None:
        self.mean_delay = mean_delay
        self.calls: dict[int, int] = {}

    async def __call__(self, record: Result) -> Result:
        lineid = record[2]
        self.calls[lineid] = self.calls.get(lineid, 0) + 1
        await asyncio.sleep(self.mean_delay * (0.5 + (lineid * 7919 % 100) / 100))
        if lineid % FLAKY_EVERY == 0 and self.calls[lineid] == 1:
            raise ConnectionError(f"flaky service on line {lineid}")
        return record


def to_line(record: Result) -> str:
    return f"{record[0]},{record[1]},{record[2]}"


def to_row(record: Result) -> tuple[str, int, int]:
    return record


def to_offsets_row(record: tuple[str, int]) -> tuple[str, int]:
    return record


def to_kafka_value(record: Result) -> bytes:
    return to_line(record).encode()


def time_of_line(line: str) -> float:
    """A line's event time: its line id, in seconds."""
    return float(line.partition(",")[2])


class CountAndTotal(AggregateFunction[tuple[str, int], tuple[int, int], tuple[int, int]]):
    """(records, sum of line ids) of a window; sessions merge them."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: tuple[str, int], accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + 1, accumulator[1] + value[1])

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class WindowRow(ProcessWindowFunction):
    """(key, start, end, records, total) of a window that fired."""

    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        for count, total in elements:
            out.collect((key, context.window.start, context.window.end, count, total))


def packed(record: tuple[str, int]) -> tuple[str, int, int]:
    """The record with ``line id << 32 | 1``: a sum of these is ``total << 32 | count``."""
    return (*record, record[1] << 32 | 1)


class PackedRow(ProcessWindowFunction):
    """(key, start, end, records, total) of a window from its packed sum."""

    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        for packed_sum in elements:
            out.collect((key, context.window.start, context.window.end, packed_sum & 0xFFFFFFFF, packed_sum >> 32))


def to_window_row(record: WindowResult) -> WindowResult:
    return record


def window_value(record: WindowResult) -> bytes:
    return ",".join(str(field) for field in record).encode()


def build_windows(env: StreamEnvironment, sink: str, args: argparse.Namespace) -> None:
    """The window jobs of the module docstring."""
    pause = RUN_SECONDS * PACE_EVERY * env.parallelism / TOTAL_RECORDS
    source = KafkaSource(args.bootstrap, topics=args.input_topic, bounded=True, value_deserializer="str")
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(time_of_line)
    parsed = (
        env.from_source(source, name="input", watermark_strategy=strategy).uid("input")
        .map(parse).uid("parse")
        .map(Pace(PACE_EVERY, pause)).uid("pace")
    )
    if sink == "kafka-session":
        sessions = parsed.key_by(lambda r: r[0]).window(EventTimeSessionWindows.with_gap(SESSION_GAP))
        windows = sessions.aggregate(CountAndTotal(), window_function=WindowRow()).uid("windows")
    else:
        minutes = parsed.map(packed).uid("pack").key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(TUMBLE))
        windows = minutes.aggregate(Sum(2), window_function=PackedRow()).uid("windows")
    if sink == "kafka-session":
        windows.sink_to(
            AbortWitness(KafkaSink(
                args.bootstrap, args.output_topic, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                transactional_id_prefix=args.output_topic, key=lambda r: r[0], key_serializer="str",
                value_serializer=window_value,
            )),
            name=f"{sink}-sink",
        ).uid(f"{sink}-sink")
    else:
        windows.sink_to(
            AbortWitness(MySqlSink(args.mysql_url, table=WINDOW_TABLE, statement=WINDOW_INSERT, row_fn=to_window_row,
                                   delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, batch_size=100)),
            name=f"{sink}-sink",
        ).uid(f"{sink}-sink")


class AbortWitness:
    """The job's sink, wrapped to see what reaches it: the largest batch, and the
    aborted checkpoints whose epoch had records (the abort path with data at stake).
    Every subtask of the process adds to the class-level counters."""

    max_batch: ClassVar[int] = 0
    aborts_with_records: ClassVar[int] = 0

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.stateful = getattr(sink, "stateful", True)

    def create_writer(self, ctx: SinkContext) -> WitnessWriter:
        return WitnessWriter(self.sink.create_writer(ctx))


class WitnessWriter:
    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.epoch_records = 0  # written since the last barrier
        self.records_of: dict[int, int] = {}  # checkpoint id -> records of its epoch

    async def open(self) -> None:
        await self.writer.open()

    async def write(self, records: list[Any]) -> None:
        AbortWitness.max_batch = max(AbortWitness.max_batch, len(records))
        self.epoch_records += len(records)
        await self.writer.write(records)

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        self.records_of[checkpoint_id], self.epoch_records = self.epoch_records, 0
        return list(await self.writer.snapshot(checkpoint_id))

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await self.writer.notify_checkpoint_complete(checkpoint_id)

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        if self.records_of.get(checkpoint_id):
            AbortWitness.aborts_with_records += 1
        await self.writer.notify_checkpoint_aborted(checkpoint_id)

    async def finish(self) -> None:
        await self.writer.finish()

    async def close(self) -> None:
        await self.writer.close()


def build(env: StreamEnvironment, sink: str, inputs: list[Path], out: Path, args: argparse.Namespace,
          starting: StartingOffsets | None = None) -> None:
    if sink in WINDOW_SINKS:
        build_windows(env, sink, args)
        return
    pause = RUN_SECONDS * PACE_EVERY * env.parallelism / TOTAL_RECORDS
    if sink in KAFKA_INPUT:
        source: Any = KafkaSource(
            args.bootstrap, topics=args.input_topic, bounded=True, value_deserializer="str",
            starting_offsets=starting or StartingOffsets.earliest(),
        )
    else:
        source = FileSource([str(p) for p in inputs], batch_size=SOURCE_BATCH)
    parsed = env.from_source(source, name="input").uid("input").map(parse).uid("parse")
    if sink == "mysql-offsets":  # no state but MySQL's (see the module docstring)
        (parsed.map(Pace(PACE_EVERY, pause)).uid("pace")
            .sink_to(AbortWitness(MySqlOffsetsSink(
                args.mysql_url, table=TABLE, statement=OFFSETS_INSERT, row_fn=to_offsets_row, name=OFFSETS_NAME,
                batch_size=100,
            )), name="mysql-offsets-sink").uid("mysql-offsets-sink").set_parallelism(1))
        return
    counted = parsed.key_by(lambda r: r[0]).process(CountPerKey()).uid("count-per-key")
    if sink in ASYNC_SINKS:  # the calls pace the run: ASYNC_CAPACITY at a time per subtask
        enrich = Enrich(ASYNC_CAPACITY * RUN_SECONDS * env.parallelism / TOTAL_RECORDS)
        retry = AsyncRetry.fixed_delay(3, 0.001)
        if sink == "kafka-async":
            stream = counted.map_async(enrich, capacity=ASYNC_CAPACITY, ordered=True, retry=retry)
        else:
            stream = counted.key_by(lambda r: r[0]).map_async(
                enrich, capacity=ASYNC_CAPACITY, ordered="per_key", retry=retry
            )
        stream = stream.uid("enrich")
    else:
        stream = counted.map(Pace(PACE_EVERY, pause)).uid("pace")
    if sink == "file":
        stream.map(to_line).uid("to-line").sink_to(
            AbortWitness(ExactlyOnceFileSink(out)), name="file-sink"
        ).uid("file-sink")
    elif sink == "sqlite":
        stream.sink_to(
            AbortWitness(ExactlyOnceSqliteSink(
                out / DB_NAME, table=TABLE, statement=INSERT, row_fn=to_row, create_sql=TABLE_DDL
            )),
            name="sqlite-sink",
        ).uid("sqlite-sink")
    elif sink in KAFKA_OUTPUT:
        stream.sink_to(
            AbortWitness(KafkaSink(
                args.bootstrap,
                args.output_topic,
                delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                transactional_id_prefix=args.output_topic,
                key=lambda r: r[0],
                key_serializer="str",
                value_serializer=to_kafka_value,
            )),
            name=f"{sink}-sink",
        ).uid(f"{sink}-sink")
    elif sink == "mysql":
        stream.sink_to(
            AbortWitness(MySqlSink(args.mysql_url, table=TABLE, statement=MYSQL_INSERT, row_fn=to_row,
                                   delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, batch_size=100)),
            name="mysql-sink",
        ).uid("mysql-sink")
    else:
        raise ValueError(f"unknown sink {sink!r}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = StreamEnvironment(parallelism=args.parallelism)
    checkpoints = args.checkpoints
    starting = resumed_from = None
    if args.sink == "mysql-offsets":  # resume from MySQL alone, never from a checkpoint
        checkpoints = args.checkpoints / f"process-{uuid.uuid4().hex}"
        starting = StartingOffsets.offsets(await load_offsets(args.mysql_url, OFFSETS_NAME))
        resumed_from = applied_checkpoint(args.mysql_url)
    env.enable_checkpointing(CHECKPOINT_INTERVAL, directory=checkpoints, tolerable_failures=1,
                             unaligned=args.unaligned, aligned_timeout=args.aligned_timeout)
    if args.unaligned:  # under backpressure: the source fills the channels to the slow counting chain
        env.set_channel_capacity(UNALIGNED_CHANNEL_CAPACITY)
    if args.state_backend == "rocksdb":
        env.set_state_backend(EmbeddedRocksDBStateBackend(args.out.parent / "rocksdb", memory_budget=32 << 20))
    elif args.state_backend == "heap-fork":  # every snapshot taken by a forked child
        env.set_state_backend(HashMapStateBackend(fork_snapshots_from=0))
    env.set_restart_strategy(RestartStrategy.none())
    env.set_source_batch_size(SOURCE_BATCH)
    faults = FaultInjector.from_environment()  # the crash point of STREAMFLOW_CRASH, if any
    faults.fail_state_writes(f"{args.sink}-sink", ABORT_EVERY)
    env.set_fault_injector(faults)
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = input_paths(args.input) if args.input is not None else []
    build(env, args.sink, inputs, args.out, args, starting)
    result = await env.execute("crash-job")
    sink_counts = {
        name: counts["records_in"]
        for name, counts in result.metrics.get("operators", {}).items()
        if name.startswith(f"{args.sink}-sink[")
    }
    history = result.metrics.get("checkpoints", {}).get("history", [])
    calls = [m["async"] for n, m in result.metrics.get("operators", {}).items() if n.startswith("enrich[")]
    tasks = result.metrics.get("tasks", {}).values()
    return {
        "restored_in_flight": sum(t.get("restored_in_flight", 0) for t in tasks),
        "unaligned_checkpoints": sum(
            1 for h in history if h["status"] == "completed"
            and any(s.get("unaligned") and s.get("persisted_bytes") for s in h.get("subtasks", {}).values())
        ),
        "async_restored_inputs": sum(c["restored_inputs"] for c in calls),
        "async_retries": sum(c["retries"] for c in calls),
        "attempts": result.attempts,
        "restored_from": result.restored_from,
        "resumed_from_mysql": resumed_from,
        "checkpoints_completed": result.checkpoints_completed,
        "checkpoints_aborted": sum(1 for h in history if h["status"] == "aborted"),
        "aborts_with_records": AbortWitness.aborts_with_records,
        "max_sink_batch": AbortWitness.max_batch,
        "duration": round(result.duration, 3),
        "sink_subtasks_written": sorted(int(n[n.index("[") + 1 : -1]) for n, c in sink_counts.items() if c),
    }


def applied_checkpoint(mysql_url: str) -> int | None:
    """The checkpoint whose rows and offsets MySQL holds last (None: nothing yet)."""
    from streamflow.testing.mysql import query, table_exists

    if not table_exists(mysql_url, PROGRESS_TABLE):
        return None
    rows = query(mysql_url, f"SELECT checkpoint_id FROM {PROGRESS_TABLE} WHERE name = %s", (OFFSETS_NAME,))
    return int(rows[0][0]) if rows else None


# -- reading the committed output (used by the tests) -----------------------------------


def read_committed_windows(sink: str, kafka: tuple[str, str] | None = None,
                           mysql_url: str | None = None) -> list[WindowResult]:
    """The committed windows of a window job: in offset order per partition (Kafka, as a
    read_committed consumer sees it), insertion order (MySQL)."""
    if sink == "kafka-session":
        from streamflow.testing.kafka import read_committed as read_kafka

        assert kafka is not None
        records = asyncio.run(read_kafka(*kafka, timeout=20.0))
        results = []
        for record in records:
            key, start, end, count, total = record.value.decode().split(",")
            results.append((key, float(start), float(end), int(count), int(total)))
        return results
    from streamflow.testing.mysql import query, table_exists

    assert mysql_url is not None
    if not table_exists(mysql_url, WINDOW_TABLE):
        return []
    rows = query(mysql_url, f"SELECT `key`, start, end, count, total FROM {WINDOW_TABLE} ORDER BY seq")
    return [(k, float(s), float(e), int(c), int(t)) for k, s, e, c, t in rows]


def read_committed(sink: str, out: Path, kafka: tuple[str, str] | None = None,
                   mysql_url: str | None = None) -> list[Any]:
    """The committed output in commit order per subtask (file), insertion order (SQLite,
    MySQL; counts derived from it for mysql-offsets) or offset order per partition (Kafka, ``kafka=(bootstrap, output topic)``, as
    a read_committed consumer sees it); a window job's windows (:func:`read_committed_windows`)."""
    if sink in WINDOW_SINKS:
        return read_committed_windows(sink, kafka, mysql_url)
    if sink in ("mysql", "mysql-offsets"):
        from streamflow.testing.mysql import query, table_exists

        assert mysql_url is not None
        if not table_exists(mysql_url, TABLE):
            return []
        if sink == "mysql":
            rows = query(mysql_url, f"SELECT `key`, count, lineid FROM {TABLE} ORDER BY seq")
            return [(k, int(c), int(i)) for k, c, i in rows]
        counts: dict[str, int] = {}
        results = []
        for key, lineid in query(mysql_url, f"SELECT `key`, lineid FROM {TABLE} ORDER BY seq"):
            counts[key] = counts.get(key, 0) + 1
            results.append((key, counts[key], int(lineid)))
        return results
    if sink in KAFKA_OUTPUT:
        from streamflow.testing.kafka import read_committed as read_kafka

        assert kafka is not None
        records = asyncio.run(read_kafka(*kafka, timeout=20.0))
        results = []
        for record in records:
            key, count, lineid = record.value.decode().split(",")
            results.append((key, int(count), int(lineid)))
        return results
    if sink == "file":
        if not out.exists():
            return []
        results = []
        for line in read_committed_lines(out):
            key, count, lineid = line.split(",")
            results.append((key, int(count), int(lineid)))
        return results
    db = out / DB_NAME
    if not db.exists():
        return []
    with closing(sqlite3.connect(db)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone() is None:
            return []
        rows = conn.execute(f"SELECT key, count, lineid FROM {TABLE} ORDER BY rowid").fetchall()
    return [(k, int(c), int(i)) for k, c, i in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", choices=(*SINKS, *ASYNC_SINKS, *WINDOW_SINKS), required=True)
    parser.add_argument("--input", type=Path, help="directory of the generated input files")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (--sink kafka)")
    parser.add_argument("--input-topic", help="the input topic (--sink kafka)")
    parser.add_argument("--output-topic", help="the output topic (--sink kafka)")
    parser.add_argument("--mysql-url", help="the database of the results table (--sink mysql, mysql-offsets)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--state-backend", choices=("heap", "heap-fork", "rocksdb"), default="heap")
    parser.add_argument("--unaligned", action="store_true", help="unaligned checkpoints, channels of 16 batches")
    parser.add_argument("--aligned-timeout", type=float, default=None, help="with --unaligned: switch after S seconds")
    args = parser.parse_args(argv)
    if args.sink in MYSQL_OUTPUT:  # the table is the user's to create, as with any MySqlSink
        from streamflow.testing.mysql import execute

        ddl = {"mysql": MYSQL_DDL, "mysql-offsets": OFFSETS_DDL, "mysql-tumbling": WINDOW_DDL}[args.sink]
        execute(args.mysql_url, ddl)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("streamflow.job", "streamflow.checkpoint"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        summary = asyncio.run(run(args))
    except BaseException:
        # A failed job must end its process now: a leaked non-daemon thread (say, an
        # aiosqlite connection a failed attempt did not close; fixed in 9fab109) would
        # otherwise keep the interpreter alive until the test's timeout. Name it, leave.
        traceback.print_exc()
        alive = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
        if alive:
            sys.stderr.write(f"crash_job: the job failed with non-daemon threads still alive: {alive}\n")
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
