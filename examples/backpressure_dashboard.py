"""A job that backs up behind a slow sink, to watch in the dashboard and in Prometheus.

Events (user, amount, event time) are due at a steady rate per source subtask, each with
the event time it is due at, and a watermark 2 s behind the newest. They are parsed,
refunds are dropped, a running total per user is kept (keyed state), and the totals go
to a sink that, like a database, is fast at first and spends 0.8 ms per record once it
"slows down" after 15 s. Users are skewed: one user makes a quarter of the
events, so one subtask of the keyed stage and its sink get most of the work. Chaining is
off, so every hop is a channel the dashboard can show.

What the dashboard shows (``streamflow run`` prints its address): for 15 s an idle, blue
job; then the hot sink subtask turns red (busy), every stage before it is hatched
(backpressured), the channels fill, throughput drops to what that one subtask can take,
and since the source falls behind its schedule, the watermark lag climbs.

From the command line (Ctrl-C or ``streamflow cancel backpressure`` ends it)::

    streamflow run examples.backpressure_dashboard:build -p 4 --job-name backpressure \\
        --web-port 8081 --metrics-port 9249 --checkpoint-interval 2 --checkpoint-dir /tmp/bp-chk

or ``python examples/backpressure_dashboard.py --seconds 60`` (dashboard on a free port,
printed). ``BACKPRESSURE_RATE`` (events per second per source subtask, default 1000),
``BACKPRESSURE_SINK_MS`` (milliseconds per record in the slow sink, default 0.8) and
``BACKPRESSURE_SLOW_AFTER`` (seconds until the sink slows down, default 15) tune it.
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


def event_at(index: int, subtask: int, due: float) -> dict[str, Any]:
    """Event ``index`` of a source subtask: a skewed user (user 0 makes a quarter of the
    events), an amount, an event time up to 0.5 s before ``due``, every 25th a refund."""
    rng = random.Random(index * 7919 + subtask)
    user = int(USERS * rng.random() ** 4)
    kind = "refund" if index % 25 == 0 else "purchase"
    return {"user": f"u{user:03d}", "kind": kind, "cents": rng.randint(100, 9_999), "ts": due - rng.random() / 2}


class SteadyEvents:
    """An unbounded source of ``rate`` events per second per subtask, on a schedule from
    when it opened: a reader held back falls behind it (event time lags). Its split state
    is the number of events emitted (the NEXT index)."""

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
        self._started = time.time()
        self._emitted_since_start = 0
        self._watermark: float | None = None

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        due = int((time.time() - self._started) * self._rate) - self._emitted_since_start
        if due <= 0:
            await asyncio.sleep(min(max_wait, 1.0 / self._rate))
            return SourceBatch([], [], f"events[{self._subtask}]", watermark=self._watermark)
        count = min(due, max_records)
        first = self._emitted_since_start
        records = [
            event_at(self._next + k, self._subtask, self._started + (first + k) / self._rate) for k in range(count)
        ]
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


class SlowingSink:
    """Spends ``fast`` seconds per record written, and ``slow`` once ``slow_after``
    seconds have passed since its writer opened (awaited: the task is busy, the event loop
    is free); keeps nothing."""

    def __init__(self, fast: float, slow: float, slow_after: float) -> None:
        self.fast, self.slow, self.slow_after = fast, slow, slow_after

    def create_writer(self, ctx: SinkContext) -> SlowingWriter:
        return SlowingWriter(self)


class SlowingWriter(SinkWriterBase):
    def __init__(self, sink: SlowingSink) -> None:
        self.sink = sink
        self.slow_from = time.monotonic() + sink.slow_after

    async def write(self, records: list[Any]) -> None:
        per_record = self.sink.slow if time.monotonic() >= self.slow_from else self.sink.fast
        if per_record:
            await asyncio.sleep(len(records) * per_record)


def add_cents(total: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {"user": event["user"], "cents": total["cents"] + event["cents"], "ts": event["ts"]}


def build(env: StreamEnvironment) -> None:
    """Declare the pipeline on ``env`` (the ``streamflow run`` entry point)."""
    rate = float(os.environ.get("BACKPRESSURE_RATE", "1000"))
    sink_ms = float(os.environ.get("BACKPRESSURE_SINK_MS", "0.8"))
    slow_after = float(os.environ.get("BACKPRESSURE_SLOW_AFTER", "15"))
    env.disable_operator_chaining()  # every hop a channel: the picture shows where it backs up
    env.set_source_batch_size(100)
    (
        env.from_source(SteadyEvents(rate), name="events").uid("events")
        .map(lambda e: {**e, "cents": int(e["cents"])}).name("parse").uid("parse")
        .filter(lambda e: e["kind"] != "refund").name("drop-refunds").uid("drop-refunds")
        .key_by(lambda e: e["user"]).reduce(add_cents).name("total-per-user").uid("total-per-user")
        .sink_to(SlowingSink(0.0, sink_ms / 1000, slow_after)).name("slow-db").uid("slow-db")
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
