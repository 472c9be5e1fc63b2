"""A job that backs up behind a slow sink, to watch in the dashboard and in Prometheus.

Events (user, amount, event time) are generated at a steady rate per source subtask,
with a watermark 2 s behind the newest event time. They are parsed, refunds are dropped,
a running total per user is kept (keyed state), and the totals go to a sink that spends
a fixed time per record, like a slow database. Users are skewed: a few users make most
events, so one subtask of the keyed stage and its sink get most of the work. Chaining is
off, so every hop is a channel the dashboard can show.

What the dashboard shows (``streamflow run`` prints its address): the sinks are busy
(red), the hottest one most; the stages before them are backpressured (hatched), the
channels into the hot sink are full; the watermark lag grows when the backlog does.

From the command line (Ctrl-C or ``streamflow cancel backpressure`` ends it)::

    streamflow run examples.backpressure_dashboard:build -p 4 --job-name backpressure \\
        --web-port 8081 --metrics-port 9249 --checkpoint-interval 2 --checkpoint-dir /tmp/bp-chk

or ``python examples/backpressure_dashboard.py --seconds 60`` (dashboard on a free port,
printed). ``BACKPRESSURE_RATE`` (events per second per source subtask, default 1500) and
``BACKPRESSURE_SINK_MS`` (milliseconds per record in the sink, default 0.8) tune it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from typing import Any

from streamflow import StreamEnvironment
from streamflow.api.connector import SinkContext, SinkWriterBase, SourceBatch, SourceContext

USERS = 200


def event_at(index: int, subtask: int, now: float) -> dict[str, Any]:
    """Event ``index`` of a source subtask: a skewed user (a few users make most events),
    an amount, an event time up to 1 s behind ``now``, every 25th a refund."""
    rng = random.Random(index * 7919 + subtask)
    user = int(USERS * rng.random() ** 4)  # user 0 is the hottest
    kind = "refund" if index % 25 == 0 else "purchase"
    return {"user": f"u{user:03d}", "kind": kind, "cents": rng.randint(100, 9_999), "ts": now - rng.random()}


class SteadyEvents:
    """An unbounded source of ``rate`` events per second per subtask; its split state is
    the number of events emitted (the NEXT index)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def create_reader(self, ctx: SourceContext) -> SteadyReader:
        start = int(ctx.restored_splits[0]["next"]) if ctx.restored_splits else 0
        return SteadyReader(self.rate, ctx.subtask_index, start)


class SteadyReader:
    def __init__(self, rate: float, subtask: int, start: int) -> None:
        self._rate = rate
        self._subtask = subtask
        self._next = start
        self._started = time.monotonic()
        self._emitted_since_start = 0
        self._watermark: float | None = None

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        due = int((time.monotonic() - self._started) * self._rate) - self._emitted_since_start
        if due <= 0:
            await asyncio.sleep(min(max_wait, 1.0 / self._rate))
            return SourceBatch([], [], f"events[{self._subtask}]", watermark=self._watermark)
        count = min(due, max_records)
        now = time.time()
        records = [event_at(self._next + k, self._subtask, now) for k in range(count)]
        positions = list(range(self._next, self._next + count))
        self._next += count
        self._emitted_since_start += count
        self._watermark = max(r["ts"] for r in records) - 2.0
        return SourceBatch(records, positions, f"events[{self._subtask}]", watermark=self._watermark)

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [{"split": f"events[{self._subtask}]", "next": self._next}]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


class SlowSink:
    """Spends ``seconds_per_record`` per record written (awaited: the task is busy, the
    event loop is free), and keeps nothing."""

    def __init__(self, seconds_per_record: float) -> None:
        self.seconds_per_record = seconds_per_record

    def create_writer(self, ctx: SinkContext) -> SlowWriter:
        return SlowWriter(self.seconds_per_record)


class SlowWriter(SinkWriterBase):
    def __init__(self, seconds_per_record: float) -> None:
        self.seconds_per_record = seconds_per_record

    async def write(self, records: list[Any]) -> None:
        await asyncio.sleep(len(records) * self.seconds_per_record)


def add_cents(total: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {"user": event["user"], "cents": total["cents"] + event["cents"], "ts": event["ts"]}


def build(env: StreamEnvironment) -> None:
    """Declare the pipeline on ``env`` (the ``streamflow run`` entry point)."""
    rate = float(os.environ.get("BACKPRESSURE_RATE", "1500"))
    sink_ms = float(os.environ.get("BACKPRESSURE_SINK_MS", "0.8"))
    env.disable_operator_chaining()  # every hop a channel: the picture shows where it backs up
    env.set_source_batch_size(100)
    (
        env.from_source(SteadyEvents(rate), name="events").uid("events")
        .map(lambda e: {**e, "cents": int(e["cents"])}).name("parse").uid("parse")
        .filter(lambda e: e["kind"] != "refund").name("drop-refunds").uid("drop-refunds")
        .key_by(lambda e: e["user"]).reduce(add_cents).name("total-per-user").uid("total-per-user")
        .sink_to(SlowSink(sink_ms / 1000)).name("slow-db").uid("slow-db")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (then cancel)")
    parser.add_argument("--web-port", type=int, default=0, help="dashboard port (0: a free one)")
    parser.add_argument("--parallelism", "-p", type=int, default=4)
    args = parser.parse_args()
    env = StreamEnvironment(parallelism=args.parallelism)
    env.set_web_ui(args.web_port)
    build(env)
    client = env.execute_async("backpressure")
    print(f"dashboard: {client.web_url}  Prometheus: {client.metrics_url}", flush=True)
    await asyncio.sleep(args.seconds)
    await client.cancel()


if __name__ == "__main__":
    asyncio.run(main())
