"""The main job: bundled events -> parse -> key_by(user) -> per-user totals -> SQLite, exactly once.

What it shows, on embedded parts only:
- a replayable file source whose position is checkpointed every second;
- keyed ValueState per user in a KeyedProcessFunction;
- an exactly-once SQLite sink: the rows of checkpoint n are committed with n, in one
  transaction, when n completes;
- a crash on purpose midway: the restart strategy restores every task from the latest
  checkpoint, the job finishes, and the script checks the table against a failure-free
  run of the same pipeline, row by row;
- malformed records (three are in the file) skipped, logged and counted, not lost silently.

Run it with ``./dev.sh main`` (sets everything up), or, once installed:
``python examples/events_to_sqlite.py [--out DIR]``. The pipeline alone runs under the
command line too: ``streamflow run examples.events_to_sqlite:build --checkpoint-interval 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from streamflow import ErrorPolicy, KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.connectors.files import FileSource
from streamflow.connectors.sqlite import ExactlyOnceSqliteSink
from streamflow.state import ValueStateDescriptor

EVENTS = Path(__file__).parent / "data" / "events.jsonl"
TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS user_totals ("
    " user TEXT PRIMARY KEY, events INTEGER NOT NULL, purchases INTEGER NOT NULL, revenue_cents INTEGER NOT NULL)"
)
UPSERT = (
    "INSERT INTO user_totals(user, events, purchases, revenue_cents) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(user) DO UPDATE SET events=excluded.events, purchases=excluded.purchases, "
    "revenue_cents=excluded.revenue_cents"
)


def parse(line: str) -> dict[str, Any]:
    """A JSON event with a str ``user`` and a numeric ``amount``; anything else is malformed."""
    event = orjson.loads(line)
    if not isinstance(event.get("user"), str):
        raise ValueError(f"event has no 'user' string: {line!r}")
    amount = event.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"event 'amount' is not a number: {amount!r}")
    event["cents"] = round(amount * 100)
    return event


class UserTotals(KeyedProcessFunction):
    """Per user: events seen, purchases, revenue in cents; emits the new totals per event."""

    def open(self, ctx: Any) -> None:
        self.totals = ctx.get_state(ValueStateDescriptor("totals", default=None))

    def process_element(self, event: dict[str, Any], ctx: Any, out: Any) -> None:
        events, purchases, cents = self.totals.value() or (0, 0, 0)
        events += 1
        if event["type"] == "purchase":
            purchases += 1
            cents += event["cents"]
        self.totals.update((events, purchases, cents))
        out.collect((event["user"], events, purchases, cents))


class CrashOnce:
    """Fails the job attempt once, when a subtask has passed ``at`` records.

    Every parallel subtask gets its own copy of a function, so the "once" lives on the
    class: after the first crash no copy crashes again, in any attempt.
    """

    crashed = False

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seen += 1
        if not CrashOnce.crashed and self.seen >= self.at:
            CrashOnce.crashed = True
            raise RuntimeError(f"crash on purpose after {self.seen} records (the demo's injected failure)")
        return event


class Pace:
    """Waits a little every ``every`` records, like an enrichment call, so the run spans
    several checkpoints and the crash lands between two of them."""

    def __init__(self, every: int, seconds: float) -> None:
        self.every = every
        self.seconds = seconds
        self.count = 0

    async def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        if self.count % self.every == 0:
            await asyncio.sleep(self.seconds)
        return event


def build(
    env: StreamEnvironment,
    *,
    db_path: str | Path = "user_totals.db",
    events: Path = EVENTS,
    crash_at: int | None = None,
    paced: bool = False,
) -> None:
    """Declare the pipeline on ``env`` (also the ``streamflow run`` entry point)."""
    stream = (
        env.from_source(FileSource(events), name="events")
        .uid("events")
        .map(parse)
        .name("parse")
        .uid("parse")
        .with_error_policy(ErrorPolicy.skip(on=(ValueError,)))
    )
    if paced:
        stream = stream.map(Pace(every=250, seconds=0.05)).name("enrich").uid("enrich")
    if crash_at is not None:
        stream = stream.map(CrashOnce(crash_at)).name("chaos").uid("chaos")
    (
        stream.key_by(lambda e: e["user"])
        .process(UserTotals())
        .name("user-totals")
        .uid("user-totals")
        .sink_to(
            ExactlyOnceSqliteSink(
                str(db_path), table="user_totals", statement=UPSERT, row_fn=lambda r: r, create_sql=TABLE_DDL
            ),
            name="sqlite",
        )
        .uid("sqlite")
    )


def read_table(db_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT user, events, purchases, revenue_cents FROM user_totals ORDER BY user").fetchall()


async def run(out: Path, parallelism: int) -> bool:
    crashed_db, reference_db = out / "user_totals.db", out / "reference.db"
    for path in (crashed_db, reference_db):
        path.unlink(missing_ok=True)

    print(f"1/2 running the job with checkpoints every 1 s and a crash midway -> {crashed_db}")
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(1.0, directory=out / "checkpoints")
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=3, delay=0.5))
    env.set_metrics_interval(1.0)
    build(env, db_path=crashed_db, crash_at=12_000 // parallelism, paced=True)
    result = await env.execute("events-to-sqlite")
    skipped = sum(o["records_skipped"] for o in result.metrics["operators"].values())
    print(
        f"    finished after {result.attempts} attempts, restored from checkpoint {result.restored_from}, "
        f"{result.checkpoints_completed} checkpoints; the final attempt skipped {skipped} malformed records "
        "(metrics are per attempt: records skipped before the restored checkpoint are not replayed)"
    )

    print(f"2/2 running the same pipeline without failures or checkpoints -> {reference_db}")
    reference = StreamEnvironment(parallelism=parallelism)
    build(reference, db_path=reference_db)
    await reference.execute("events-to-sqlite-reference")

    got, want = read_table(crashed_db), read_table(reference_db)
    if got == want:
        events = sum(row[1] for row in got)
        print(f"CHECK OK: the table equals the failure-free run: {len(got)} users, {events} events, exactly once")
        return True
    missing, extra = set(want) - set(got), set(got) - set(want)
    print(f"CHECK FAILED: {len(missing)} rows differ from the failure-free run, {len(extra)} unexpected; e.g. "
          f"{sorted(missing)[:3]} vs {sorted(extra)[:3]}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the databases and checkpoints")
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("streamflow.job").setLevel(logging.INFO)
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-main-"))
    out.mkdir(parents=True, exist_ok=True)
    return 0 if asyncio.run(run(out, args.parallelism)) else 1


if __name__ == "__main__":
    sys.exit(main())
