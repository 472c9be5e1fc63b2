"""Kafka -> per-minute totals per user -> MySQL, with the Kafka offsets kept in MySQL:
results and progress in ONE local transaction, and a restart from MySQL alone.

This sits next to ``examples/kafka_minute_totals_xa.py``. Which one to pick:

- the XA example (``MySqlSink`` with ``EXACTLY_ONCE``) keeps any pipeline exactly once,
  stateful ones included (windows, joins), at any sink parallelism; progress lives in
  the job's checkpoints. It needs XA: a server that supports it and, on MySQL 8, the
  ``XA_RECOVER_ADMIN`` privilege. Many managed databases and DBAs refuse one or the other;
- this example (``MySqlOffsetsSink``) needs nothing but a local transaction: on every
  completed checkpoint, one transaction applies the epoch's rows AND stores the NEXT
  Kafka offsets of the job's sources (table ``_streamflow_kafka_offsets``, created by the
  sink, as is ``_streamflow_progress``, which makes a second apply a no-op). The price:
  one sink subtask (``.set_parallelism(1)``), and resuming from MySQL alone is exact only
  when MySQL holds all the state, so the pipeline sends increments, not running totals:
  here one row ``(user_id, minute_start, 1, purchase_cents)`` per event, summed by
  ``INSERT ... ON DUPLICATE KEY UPDATE events = events + VALUES(events), ...``.

What it shows:
- run 1 reads the topic, crashes on purpose midway with ``RestartStrategy.none()`` (the
  job really fails: ``JobFailedError``), and its checkpoint directory is then thrown
  away, as by a user who keeps progress only in MySQL;
- run 2 is a new job without any checkpoint: it starts from
  ``StartingOffsets.offsets(await load_offsets(url, name))`` and finishes;
- the check: the table equals the per-(user, minute) totals computed directly in Python
  from ``examples/data/events.jsonl`` (nothing counted twice, nothing lost), and the
  offsets read back from MySQL are the topic's end offsets.

One command, with the project's Kafka broker and a MariaDB of its own (each started on a
free 127.0.0.1 port and stopped at the end)::

    ./dev.sh example kafka_offsets_in_mysql

``KAFKA_BOOTSTRAP_SERVERS=host:port`` and ``MYSQL_URL=mysql://user:password@host:port/``
use servers of your own instead (the MySQL user creates a database for the run, dropped
at the end unless ``--keep-database``). The source is bounded here so that the demo ends.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

# minute_totals.py, next to this file, holds what the two MySQL examples share.
from minute_totals import EVENTS, PARTITIONS, CrashOnce, expected_totals, minute_of, parse, servers, table_totals
from streamflow import ErrorPolicy, JobFailedError, RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import KafkaSource, StartingOffsets
from streamflow.connectors.mysql import MySqlOffsetsSink, load_offsets
from streamflow.testing.kafka import create_topic, partitions_of, produce, unique_topic
from streamflow.testing.mysql import execute, query

OFFSETS_NAME = "minute-totals"  # whose offsets these are in MySQL, like a consumer group

# The results table is the user's to create; the sink creates its own two tables.
DDL = """
CREATE TABLE minute_totals (
    user_id        VARCHAR(64) NOT NULL,
    minute_start   DATETIME    NOT NULL COMMENT 'UTC',
    events         INT         NOT NULL,
    purchase_cents BIGINT      NOT NULL,
    PRIMARY KEY (user_id, minute_start)
) ENGINE=InnoDB
"""
# An increment per event: applying a checkpoint's rows adds them, and the offsets stored
# in the same transaction say which events are in the sums.
UPSERT = (
    "INSERT INTO minute_totals (user_id, minute_start, events, purchase_cents) VALUES (%s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE events = events + VALUES(events), "
    "purchase_cents = purchase_cents + VALUES(purchase_cents)"
)

def increment(event: dict[str, Any]) -> tuple[str, str, int, int]:
    """One event as the row it adds to its minute: ``(user_id, minute_start, 1, cents)``.

    The minute is a ``'YYYY-MM-DD HH:MM:SS'`` string (UTC), not a datetime: the sink keeps
    an epoch's rows in the checkpoint until it commits them, and checkpoints hold JSON."""
    minute = datetime.fromtimestamp(minute_of(event["ts"]), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return event["user"], minute, 1, event["cents"] if event["type"] == "purchase" else 0


def build(env: StreamEnvironment, *, bootstrap: str, topic: str, mysql_url: str,
          starting_offsets: StartingOffsets, crash_at: int | None) -> None:
    """Declare the pipeline on ``env``: the same in both runs but for where it starts."""
    source = KafkaSource(bootstrap, topics=topic, bounded=True, value_deserializer="str",
                         starting_offsets=starting_offsets)
    stream = (
        env.from_source(source, name="events").uid("events")
        .map(parse).name("parse").uid("parse")
        .with_error_policy(ErrorPolicy.skip(on=(ValueError,)))
    )
    if crash_at is not None:
        stream = stream.map(CrashOnce(crash_at, checkpoints=2)).name("chaos").uid("chaos")
    (
        stream.rebalance()  # from every source subtask to the one sink subtask
        .sink_to(
            MySqlOffsetsSink(mysql_url, table="minute_totals", statement=UPSERT, row_fn=increment,
                             name=OFFSETS_NAME),
            name="minute-totals-mysql",
        )
        .uid("minute-totals-mysql")
        .set_parallelism(1)  # one transaction holds all results with the offsets
    )


async def fill_input(bootstrap: str, topic: str) -> int:
    """Write the bundled events, keyed by user where there is one."""
    lines = EVENTS.read_bytes().splitlines()
    await create_topic(bootstrap, topic, partitions=PARTITIONS)
    keys = []
    for line in lines:
        try:
            keys.append(str(orjson.loads(line).get("user", "")).encode())
        except orjson.JSONDecodeError:
            keys.append(b"")
    await produce(bootstrap, topic, lines, keys=keys)
    return len(lines)


async def end_offsets(bootstrap: str, topic: str) -> dict[tuple[str, int], int]:
    """The topic's end offsets (the NEXT offset of every partition), as load_offsets gives them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)])
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def show(offsets: dict[tuple[str, int], int]) -> str:
    return ", ".join(f"{p}: {o}" for (_, p), o in sorted(offsets.items())) or "none"


def new_env(parallelism: int, checkpoints: Path) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(1.0, directory=checkpoints)
    env.set_metrics_interval(2.0)
    return env


async def run(bootstrap: str, mysql_url: str, out: Path, parallelism: int) -> bool:
    topic = unique_topic("events")
    count = await fill_input(bootstrap, topic)
    execute(mysql_url, DDL)
    print(f"0/3 wrote {count} events to {topic!r} ({PARTITIONS} partitions) on {bootstrap}; "
          f"created table minute_totals in {mysql_url}")

    print("1/3 run 1: Kafka -> increments -> MySQL with the offsets, checkpoints every 1 s, "
          "a crash midway and no restart")
    env = new_env(parallelism, out / "run-1-checkpoints")
    env.set_restart_strategy(RestartStrategy.none())
    build(env, bootstrap=bootstrap, topic=topic, mysql_url=mysql_url,
          starting_offsets=StartingOffsets.earliest(), crash_at=count // 2 // parallelism)
    failed = False
    try:
        await env.execute("kafka-offsets-in-mysql-1")
        print("    run 1 finished without the crash: it ended before two checkpoints completed")
    except JobFailedError as exc:
        failed = True
        print(f"    run 1 failed, as planned: {str(exc)[:140]}...")
    shutil.rmtree(out / "run-1-checkpoints", ignore_errors=True)
    stored = await load_offsets(mysql_url, OFFSETS_NAME)
    [(counted,)] = query(mysql_url, "SELECT COALESCE(SUM(events), 0) FROM minute_totals")
    print(f"    threw its checkpoints away; MySQL holds {counted} events and the offsets to go on from "
          f"(partition: next offset) {show(stored)}")

    print("2/3 run 2: a new job without checkpoints, starting from the offsets in MySQL")
    env = new_env(parallelism, out / "run-2-checkpoints")
    build(env, bootstrap=bootstrap, topic=topic, mysql_url=mysql_url,
          starting_offsets=StartingOffsets.offsets(stored), crash_at=None)
    result = await env.execute("kafka-offsets-in-mysql-2")
    print(f"    run 2 finished after {result.attempts} attempt(s), {result.checkpoints_completed} checkpoints, "
          f"restored from checkpoint {result.restored_from}")

    print("3/3 check the table against per-minute totals computed in Python from the input file")
    want, (got, _) = expected_totals(), table_totals(mysql_url)
    final, ends = await load_offsets(mysql_url, OFFSETS_NAME), await end_offsets(bootstrap, topic)
    print(f"    offsets read back from MySQL (partition: next offset): {show(final)}; end of the topic: {show(ends)}")
    events, cents = (sum(v[i] for v in got.values()) for i in (0, 1))
    if got == want and final == ends and failed and stored:
        print(f"CHECK OK: {len(got)} rows for {len({u for u, _ in got})} users, {events} events, {cents} purchase "
              f"cents, equal to the failure-free totals (nothing counted twice); run 2 resumed from MySQL at "
              f"{sum(stored.values())} of {count} records")
        return True
    wrong = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
    print(f"CHECK FAILED: {len(got)} rows for {len(want)} expected minutes; {len(want.keys() - got.keys())} "
          f"missing, {len(got.keys() - want.keys())} unexpected, {len(wrong)} with other totals "
          f"(e.g. {[(k, got[k], want[k]) for k in wrong[:2]]}); {events} events, expected "
          f"{sum(v[0] for v in want.values())}; offsets {'equal' if final == ends else 'NOT equal'} to the end "
          f"of the topic; run 1 {'failed' if failed else 'did not fail'} and stored "
          f"{'offsets' if stored else 'no offsets'}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the checkpoints")
    parser.add_argument("--parallelism", type=int, default=2, help="of the source and parse (the sink has 1)")
    parser.add_argument("--keep-database", action="store_true", help="leave the run's database on the server")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("streamflow.job").setLevel(logging.INFO)
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-offsets-in-mysql-"))
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        bootstrap, mysql_url = servers(stack, "offsets_in_mysql", args.keep_database)
        return 0 if asyncio.run(run(bootstrap, mysql_url, out, args.parallelism)) else 1


if __name__ == "__main__":
    sys.exit(main())
