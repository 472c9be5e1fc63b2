"""Kafka -> per-minute totals per user -> MySQL, exactly once through XA, with a crash midway.

What it shows:
- KafkaSource with event time: the producer stamps every record with the event's own
  ``ts`` (Kafka's CreateTime), and ``watermarks=BoundedOutOfOrderness(...)`` turns those
  timestamps into watermarks, per partition;
- an event-time tumbling window of one minute per user, written by hand with keyed
  MapState (one accumulator per open minute) and an event-time timer per minute: the
  timer fires when the watermark passes the minute's end and emits one row. At the end
  of the bounded input the runtime sends the final watermark (+inf), which fires the
  timers of the minutes still open, so the last minute is not lost;
- an exactly-once ``MySqlSink`` (``DeliveryGuarantee.EXACTLY_ONCE``): one XA transaction
  per sink subtask and checkpoint, prepared on the barrier and committed when the
  checkpoint completes. The statement is a plain ``INSERT`` into a table whose primary
  key is ``(user_id, minute_start)``: a row written twice would fail the job loudly,
  there is no upsert hiding a duplicate;
- a crash on purpose midway: the job restores from the latest checkpoint (keyed state,
  timers and Kafka offsets), rolls back what was prepared after it, and finishes;
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
from minute_totals import EVENTS, MINUTE, PARTITIONS, CrashOnce, expected_totals, minute_of, parse, servers, table_totals
from streamflow import ErrorPolicy, KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import BoundedOutOfOrderness, KafkaSource
from streamflow.connectors.mysql import DeliveryGuarantee, MySqlSink
from streamflow.state import MapStateDescriptor
from streamflow.testing.kafka import create_topic, unique_topic
from streamflow.testing.mysql import execute, prepared_xids_of

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

class MinuteTotals(KeyedProcessFunction):
    """Per user: an event-time tumbling window of one minute, built from keyed state and
    timers. ``open_minutes`` maps a minute's start to ``[events, purchase cents]`` so far;
    the timer at the minute's end emits the row and forgets the minute."""

    def open(self, ctx: Any) -> None:
        self.open_minutes = ctx.get_state(MapStateDescriptor("open-minutes"))
        self.late = 0

    def process_element(self, event: dict[str, Any], ctx: Any, out: Any) -> None:
        start = minute_of(event["ts"])
        if start + MINUTE <= ctx.timer_service.current_watermark():
            # Its minute was emitted already: a row written twice would be a duplicate.
            # The bundled data is in order per partition, so this never happens here.
            self.late += 1
            logging.getLogger(__name__).warning("late event dropped (%d so far): %r", self.late, event)
            return
        events, cents = self.open_minutes.get(start) or (0, 0)
        self.open_minutes.put(start, [events + 1, cents + (event["cents"] if event["type"] == "purchase" else 0)])
        ctx.timer_service.register_event_time_timer(float(start + MINUTE))  # once per minute: timers are a set

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        start = int(timestamp) - MINUTE
        totals = self.open_minutes.get(start)
        if totals is not None:
            self.open_minutes.remove(start)
            out.collect({"user": ctx.get_current_key(), "minute_start": start,
                         "events": totals[0], "purchase_cents": totals[1]})


def to_row(total: dict[str, Any]) -> tuple[str, datetime, int, int]:
    minute = datetime.fromtimestamp(total["minute_start"], timezone.utc).replace(tzinfo=None)
    return total["user"], minute, total["events"], total["purchase_cents"]


def build(env: StreamEnvironment, *, bootstrap: str, topic: str, mysql_url: str, crash_at: int | None) -> None:
    """Declare the pipeline on ``env``."""
    source = KafkaSource(bootstrap, topics=topic, bounded=True, value_deserializer="str",
                         watermarks=BoundedOutOfOrderness(OUT_OF_ORDERNESS))
    stream = (
        env.from_source(source, name="events").uid("events")
        .map(parse).name("parse").uid("parse")
        .with_error_policy(ErrorPolicy.skip(on=(ValueError,)))
    )
    if crash_at is not None:
        stream = stream.map(CrashOnce(crash_at, checkpoints=1)).name("chaos").uid("chaos")
    (
        stream.key_by(lambda e: e["user"])
        .process(MinuteTotals()).name("minute-totals").uid("minute-totals")
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
    print(f"    finished after {result.attempts} attempts, restored from checkpoint {result.restored_from}, "
          f"{result.checkpoints_completed} checkpoints")

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
