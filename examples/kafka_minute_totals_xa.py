"""Kafka -> per-minute totals per user -> MySQL, exactly once through XA, with a crash midway.

What it shows:
- KafkaSource with event time: the producer stamps every record with the event's own
  ``ts`` (Kafka's CreateTime); the records carry those timestamps, and a
  ``WatermarkStrategy`` given to ``env.from_source`` turns them into watermarks, one per
  partition (a partition behind the others holds event time back instead of making its
  records late; a source subtask without a partition holds nothing back);
- an event-time tumbling window of one minute per user
  (``window(TumblingEventTimeWindows.of(60))``) that counts the events and sums the
  purchases as they come (an AggregateFunction: one accumulator per open minute, in
  keyed state), and labels the result with its minute when the window fires (a
  ProcessWindowFunction). A minute fires once the watermark passes its end; at the end
  of the bounded input the final watermark fires the minutes still open;
- an exactly-once ``MySqlSink`` (``DeliveryGuarantee.EXACTLY_ONCE``): one XA transaction
  per sink subtask and checkpoint, prepared on the barrier and committed when the
  checkpoint completes. The statement is a plain ``INSERT`` into a table whose primary
  key is ``(user_id, minute_start)``: a row written twice would fail the job loudly,
  there is no upsert hiding a duplicate;
- a crash on purpose midway: the job restores from the latest checkpoint (the open
  windows and their timers, the Kafka offsets), rolls back what was prepared after it,
  and finishes: every minute fires once, whether before or after the crash;
- the check: the table equals the per-(user, minute) counts and purchase sums computed
  directly in Python from ``examples/data/events.jsonl`` with the same parse rules, and
  no XA transaction is left prepared.

One command, with the project's Kafka broker and a MariaDB of its own (each started on a
free 127.0.0.1 port and stopped at the end)::

    ./dev.sh example kafka_minute_totals_xa

``KAFKA_BOOTSTRAP_SERVERS=host:port`` and ``MYSQL_URL=mysql://user:password@host:port/``
use servers of your own instead (the MySQL user creates a database for the run, dropped
at the end unless ``--keep-database``; on MySQL 8 it needs ``XA_RECOVER_ADMIN``).

``examples/kafka_offsets_in_mysql.py`` is the alternative for databases or users
without XA. The source is bounded here so that the demo ends and can be checked.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

# minute_totals.py, next to this file, holds what the two MySQL examples share.
from minute_totals import EVENTS, MINUTE, PARTITIONS, CrashOnce, expected_totals, parse, servers, table_totals
from streamflow import ErrorPolicy, RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import KafkaSource
from streamflow.connectors.mysql import DeliveryGuarantee, MySqlSink
from streamflow.eventtime import WatermarkStrategy
from streamflow.testing.kafka import create_topic, unique_topic
from streamflow.testing.mysql import execute, prepared_xids_of
from streamflow.windowing import AggregateFunction, ProcessWindowFunction, TumblingEventTimeWindows

OUT_OF_ORDERNESS = 5.0  # seconds a record may arrive behind the newest one of its partition

# The table is the user's to create; the sink only checks that it exists.
DDL = """
CREATE TABLE minute_totals (
    user_id        VARCHAR(64) NOT NULL,
    minute_start   DATETIME    NOT NULL COMMENT 'UTC',
    events         INT         NOT NULL,
    purchase_cents BIGINT      NOT NULL,
    PRIMARY KEY (user_id, minute_start)
) ENGINE=InnoDB
"""
JOB, SINK_UID = "kafka-minute-totals-xa", "minute-totals-mysql"
INSERT = "INSERT INTO minute_totals (user_id, minute_start, events, purchase_cents) VALUES (%s, %s, %s, %s)"

class EventsAndCents(AggregateFunction[dict[str, Any], tuple[int, int], tuple[int, int]]):
    """(events, purchase cents) of a user's minute, folded in as the events arrive."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, event: dict[str, Any], totals: tuple[int, int]) -> tuple[int, int]:
        return (totals[0] + 1, totals[1] + (event["cents"] if event["type"] == "purchase" else 0))

    def get_result(self, totals: tuple[int, int]) -> tuple[int, int]:
        return totals

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class MinuteRow(ProcessWindowFunction):
    """The row of a user's minute, when its window fires: the totals and the minute."""

    def process(self, user: str, context: Any, totals: Any, out: Any) -> None:
        for events, cents in totals:
            out.collect({"user": user, "minute_start": int(context.window.start),
                         "events": events, "purchase_cents": cents})


def to_row(total: dict[str, Any]) -> tuple[str, datetime, int, int]:
    minute = datetime.fromtimestamp(total["minute_start"], timezone.utc).replace(tzinfo=None)
    return total["user"], minute, total["events"], total["purchase_cents"]


def build(env: StreamEnvironment, *, bootstrap: str, topic: str, mysql_url: str, crash_at: int | None) -> None:
    """Declare the pipeline on ``env``."""
    source = KafkaSource(bootstrap, topics=topic, bounded=True, value_deserializer="str")
    event_time = WatermarkStrategy.for_bounded_out_of_orderness(OUT_OF_ORDERNESS)  # from the Kafka timestamps
    stream = (
        env.from_source(source, name="events", watermark_strategy=event_time).uid("events")
        .map(parse).name("parse").uid("parse")
        .with_error_policy(ErrorPolicy.skip(on=(ValueError,)))
    )
    if crash_at is not None:
        stream = stream.map(CrashOnce(crash_at, checkpoints=1)).name("chaos").uid("chaos")
    (
        stream.key_by(lambda e: e["user"])
        .window(TumblingEventTimeWindows.of(MINUTE))
        .aggregate(EventsAndCents(), window_function=MinuteRow()).name("minute-totals").uid("minute-totals")
        .sink_to(
            MySqlSink(mysql_url, table="minute_totals", statement=INSERT, row_fn=to_row,
                      delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE),
            name=SINK_UID,
        )
        .uid(SINK_UID)
    )


async def fill_input(bootstrap: str, topic: str) -> int:
    """Write the bundled events, keyed by user (a user's events stay in order in one
    partition) and stamped with their own ``ts``: that is the event time the source's
    watermarks follow. A line too broken to read keeps the previous line's time."""
    await create_topic(bootstrap, topic, partitions=PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures, ts = [], 0.0
        for line in EVENTS.read_bytes().splitlines():
            try:
                event = orjson.loads(line)
                key, ts = str(event.get("user", "")).encode(), float(event.get("ts", ts))
            except (orjson.JSONDecodeError, TypeError, ValueError):
                key = b""
            futures.append(await producer.send(topic, line, key=key, timestamp_ms=int(ts * 1000)))
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(futures)


async def run(bootstrap: str, mysql_url: str, out: Path, parallelism: int) -> bool:
    topic = unique_topic("events")
    count = await fill_input(bootstrap, topic)
    execute(mysql_url, DDL)
    print(f"0/2 wrote {count} events to {topic!r} ({PARTITIONS} partitions) on {bootstrap}; "
          f"created table minute_totals in {mysql_url}")

    print("1/2 Kafka -> per-minute totals per user -> MySQL (XA), checkpoints every 1 s, a crash midway")
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(1.0, directory=out / "checkpoints")
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=3, delay=0.5))
    env.set_metrics_interval(2.0)
    build(env, bootstrap=bootstrap, topic=topic, mysql_url=mysql_url, crash_at=count // 2 // parallelism)
    result = await env.execute(JOB)
    late = sum(o["records_late_dropped"] for o in result.metrics["operators"].values())
    print(f"    finished after {result.attempts} attempts, restored from checkpoint {result.restored_from}, "
          f"{result.checkpoints_completed} checkpoints, {late} late events dropped (the events are in order "
          f"per partition, at most {OUT_OF_ORDERNESS:g} s apart)")

    print("2/2 check the table against per-minute totals computed in Python from the input file")
    want = expected_totals()
    got, rows = table_totals(mysql_url)
    lingering = prepared_xids_of(mysql_url, JOB, SINK_UID)  # after a finished job: none
    events, cents = (sum(v[i] for v in got.values()) for i in (0, 1))
    if got == want and rows == len(want) and not lingering:
        print(f"CHECK OK: {rows} rows for {len({u for u, _ in got})} users, {events} events, "
              f"{cents} purchase cents; each (user, minute) once, equal to the failure-free totals, "
              "no XA transaction left prepared")
        return True
    wrong = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
    print(f"CHECK FAILED: {rows} rows for {len(want)} expected minutes; "
          f"{len(want.keys() - got.keys())} missing, {len(got.keys() - want.keys())} unexpected, "
          f"{len(wrong)} with other totals (e.g. {[(k, got[k], want[k]) for k in wrong[:2]]}); "
          f"{len(lingering)} XA transactions left prepared; {events} events, expected "
          f"{sum(v[0] for v in want.values())}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the checkpoints")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--keep-database", action="store_true", help="leave the run's database on the server")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("streamflow.job").setLevel(logging.INFO)
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-minute-totals-"))
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        bootstrap, mysql_url = servers(stack, "minute_totals_xa", args.keep_database)
        return 0 if asyncio.run(run(bootstrap, mysql_url, out, args.parallelism)) else 1


if __name__ == "__main__":
    sys.exit(main())
