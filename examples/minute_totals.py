"""What the two MySQL examples share: the bundled events, their parsing, per-minute totals
computed without streamflow (the check), the injected crash, and the servers.

``kafka_minute_totals_xa.py`` and ``kafka_offsets_in_mysql.py`` import it; it is not an
example of its own.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from datetime import timezone
from pathlib import Path
from typing import Any

import orjson

from streamflow import CheckpointListener
from streamflow.devtools.demo import kafka_for_demo, mysql_server_for_demo
from streamflow.testing.mysql import create_database, drop_database, query

EVENTS = Path(__file__).parent / "data" / "events.jsonl"
PARTITIONS = 4
MINUTE = 60

Totals = dict[tuple[str, int], tuple[int, int]]
"""(user, minute start in epoch seconds) -> (events, purchase cents)."""


def parse(line: str | bytes) -> dict[str, Any]:
    """A JSON event with a str ``user``, a numeric ``ts`` and ``amount``; anything else is
    malformed (ValueError, which the error policy skips)."""
    event = orjson.loads(line)
    if not isinstance(event, dict) or not isinstance(event.get("user"), str):
        raise ValueError(f"event has no 'user' string: {line!r}")
    ts, amount = event.get("ts"), event.get("amount")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise ValueError(f"event 'ts' is not a number: {ts!r}")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"event 'amount' is not a number: {amount!r}")
    return {"user": event["user"], "type": event.get("type"), "ts": ts, "cents": round(amount * 100)}


def minute_of(ts: float) -> int:
    return int(ts // MINUTE) * MINUTE


def expected_totals() -> Totals:
    """What a failure-free computation gives, straight from the file, no streamflow."""
    totals: dict[tuple[str, int], list[int]] = {}
    for line in EVENTS.read_bytes().splitlines():
        try:
            event = parse(line)
        except ValueError:
            continue
        acc = totals.setdefault((event["user"], minute_of(event["ts"])), [0, 0])
        acc[0] += 1
        acc[1] += event["cents"] if event["type"] == "purchase" else 0
    return {key: (events, cents) for key, (events, cents) in totals.items()}


def table_totals(mysql_url: str) -> tuple[Totals, int]:
    """The table ``minute_totals`` as totals, and how many rows it has (a duplicate would
    count twice)."""
    rows = query(mysql_url, "SELECT user_id, minute_start, events, purchase_cents FROM minute_totals")
    totals = {(user, int(minute.replace(tzinfo=timezone.utc).timestamp())): (int(events), int(cents))
              for user, minute, events, cents in rows}
    return totals, len(rows)


class CrashOnce(CheckpointListener):
    """Fails the job attempt once, when a subtask has passed ``at`` records and has seen
    ``checkpoints`` checkpoints complete (so there is something to resume from). The
    "once" lives on the class: every subtask has its own copy of the function."""

    crashed = False

    def __init__(self, at: int, checkpoints: int) -> None:
        self.at = at
        self.needed = checkpoints
        self.seen = 0
        self.checkpoints = 0

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.checkpoints += 1

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        pass

    async def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seen += 1
        if self.seen % 200 == 0:
            await asyncio.sleep(0.1)  # like an enrichment call: the run spans several checkpoints
        if not CrashOnce.crashed and self.seen >= self.at and self.checkpoints >= self.needed:
            CrashOnce.crashed = True
            raise RuntimeError(f"crash on purpose after {self.seen} records (the demo's injected failure)")
        return event


def servers(stack: ExitStack, database_prefix: str, keep_database: bool) -> tuple[str, str]:
    """Kafka's bootstrap servers and the url of a new database, both closed with ``stack``
    (the database is dropped unless ``keep_database``)."""
    bootstrap = kafka_for_demo(stack)
    mysql_url = create_database(mysql_server_for_demo(stack), prefix=database_prefix)
    if not keep_database:
        stack.callback(drop_database, mysql_url)
    return bootstrap, mysql_url
