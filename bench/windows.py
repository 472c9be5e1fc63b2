"""Window benchmark: streamflow's event-time windows next to a hand-written loop and Bytewax.

Input, generated deterministically: ``--records`` events ``(user, event time, amount)`` over
10,000 users, 1,000 events per second of event time (so 1 M events span ~17 minutes), up
to 0.25 s out of order; the users follow a pseudo-random sequence, so a user's events are
~10 s apart on average with irregular gaps. Two pipelines, each keyed by user:

- tumbling: the sum of amounts per user and minute (``TumblingEventTimeWindows.of(60)``);
- session: the sum per user and session, a session ending after 30 s without an event
  (``EventTimeSessionWindows.with_gap(30)``);

each through

(a) streamflow: source (timestamps from the source, like a Kafka record's, watermarks
    allowing 0.5 s of disorder) -> key_by -> window -> aggregate -> counting sink,
    parallelism 1, without checkpoints and with one every second; the tumbling pipeline
    also with the built-in ``sum(2)`` in place of the AggregateFunction (rows "sum(field)");
(b) a hand-written asyncio loop with dicts over the same batches: per (user, window
    start) a running sum, windows emitted once the newest time less 0.5 s passes their
    end (tumbling); per user the open session, emitted when the user's next event falls
    after its gap, the rest at the end (session);
(d) Bytewax 0.21 (``bytewax.operators.windowing.fold_window`` with an ``EventClock``
    waiting 0.5 s of event time, its system clock held still, ``TumblingWindower`` /
    ``SessionWindower``), in memory.

Every variant runs once on a small input to warm up, then ``--repeats`` times round-robin;
the median wins. Each must emit exactly the windows the hand loop emits. Ratios are the
figures to compare across machines (see bench/RESULTS.md).

Memory: streamflow (tumbling and session, checkpoint 1 s) in subprocesses on N and 10 N
events (N: ``--memory-records``) generated inside the reader; windows close as event
time moves, so the peak RSS should stay flat (10 N within 1.5x of N).

Not here: (c) Quix Streams' tumbling window, which reads Kafka: bench/windows_kafka.py
compares it with streamflow from Kafka to Kafka.

Usage: python3 bench/windows.py [--records N] [--repeats R] [--memory-records N]
[--no-memory] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import streamflow
from streamflow.api.connector import SinkContext, SinkWriterBase, SourceBatch, SourceContext
from streamflow.windowing import AggregateFunction, EventTimeSessionWindows, TumblingEventTimeWindows

USERS = 10_000
RATE = 1000.0  # events per second of event time
START = 1_763_700_000.0
DISORDER = 0.5  # the watermark's bound; events are at most 0.25 s out of order
MINUTE = 60.0
GAP = 30.0
BATCH = 1000

Event = tuple[str, float, float]


def event_at(i: int) -> Event:
    """Event ``i``: a pure function of ``i``, so lists and lazy readers agree."""
    user = f"u{((i * 2654435761) & 0xFFFFFFFF) % USERS:05d}"
    jitter = ((i * 37) % 500) / 2000 - 0.125
    return user, START + i / RATE + jitter, ((i * 31337) % 10_000) / 100


def make_events(n: int) -> list[Event]:
    return [event_at(i) for i in range(n)]


# -- streamflow ------------------------------------------------------------------------


class EventSource:
    """Bounded, one split; each batch carries its events' timestamps (as Kafka's do)."""

    def __init__(self, events: list[Event] | None, count: int) -> None:
        self.events = events
        self.count = count

    def create_reader(self, ctx: SourceContext) -> EventReader:
        start = int(ctx.restored_splits[0]["next"]) if ctx.restored_splits else 0
        return EventReader(self.events, self.count, start)


class EventReader:
    def __init__(self, events: list[Event] | None, count: int, start: int) -> None:
        self._events = events
        self._end = count
        self._next = start

    async def open(self) -> None:
        return None

    def active_splits(self) -> list[str]:
        return ["bench"] if self._next < self._end else []

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        start = self._next
        if start >= self._end:
            return None
        stop = min(self._end, start + max_records)
        self._next = stop
        chunk = self._events[start:stop] if self._events is not None else [event_at(i) for i in range(start, stop)]
        return SourceBatch(chunk, None, "bench", timestamps=[e[1] for e in chunk])

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [{"split": "bench", "next": self._next}]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


class CountingSink:
    stateful = False

    def __init__(self) -> None:
        self.count = 0

    def create_writer(self, ctx: SinkContext) -> CountingWriter:
        return CountingWriter(self)


class CountingWriter(SinkWriterBase):
    def __init__(self, sink: CountingSink) -> None:
        self._sink = sink

    async def write(self, records: list[Any]) -> None:
        self._sink.count += len(records)


class SumAmounts(AggregateFunction[Event, float, float]):
    def create_accumulator(self) -> float:
        return 0.0

    def add(self, value: Event, accumulator: float) -> float:
        return accumulator + value[2]

    def get_result(self, accumulator: float) -> float:
        return accumulator

    def merge(self, a: float, b: float) -> float:
        return a + b


def user_of(event: Event) -> str:
    return event[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    seconds: float
    windows: int
    checkpoints: int = 0


def run_streamflow(pipeline: str, source: EventSource, checkpoint: bool, built_in: bool = False) -> Sample:
    async def job(directory: str | None) -> Sample:
        env = streamflow.StreamEnvironment(parallelism=1).set_source_batch_size(BATCH)
        if directory is not None:
            env.enable_checkpointing(1.0, directory=directory)
        sink = CountingSink()
        strategy = streamflow.WatermarkStrategy.for_bounded_out_of_orderness(DISORDER)
        keyed = env.from_source(source, name="events", watermark_strategy=strategy).key_by(user_of)
        assigner: Any = TumblingEventTimeWindows.of(MINUTE) if pipeline == "tumbling" else (
            EventTimeSessionWindows.with_gap(GAP)
        )
        windowed = keyed.window(assigner)
        (windowed.sum(2) if built_in else windowed.aggregate(SumAmounts())).uid("windows").sink_to(sink)
        started = time.perf_counter()
        result = await env.execute(f"bench-{pipeline}")
        return Sample(seconds=time.perf_counter() - started, windows=sink.count,
                      checkpoints=result.checkpoints_completed)

    if not checkpoint:
        return asyncio.run(job(None))
    with tempfile.TemporaryDirectory(prefix="sf-windows-") as directory:
        return asyncio.run(job(directory))


# -- the hand loop ---------------------------------------------------------------------


async def _batches(events: list[Event]) -> AsyncIterator[list[Event]]:
    for start in range(0, len(events), BATCH):
        yield events[start : start + BATCH]


async def _hand_tumbling(events: list[Event]) -> int:
    open_windows: dict[float, dict[str, float]] = {}  # window start -> user -> sum
    newest = float("-inf")
    emitted = 0
    async for batch in _batches(events):
        for user, ts, amount in batch:
            start = ts - ts % MINUTE
            sums = open_windows.get(start)
            if sums is None:
                sums = open_windows[start] = {}
            sums[user] = sums.get(user, 0.0) + amount
            if ts > newest:
                newest = ts
        watermark = newest - DISORDER
        for start in [s for s in open_windows if s + MINUTE <= watermark]:
            emitted += len(open_windows.pop(start))
    return emitted + sum(len(sums) for sums in open_windows.values())


async def _hand_session(events: list[Event]) -> int:
    sessions: dict[str, list[float]] = {}  # user -> [start, end, sum]
    emitted = 0
    async for batch in _batches(events):
        for user, ts, amount in batch:
            session = sessions.get(user)
            if session is None:
                sessions[user] = [ts, ts + GAP, amount]
            elif ts <= session[1] and ts + GAP >= session[0]:  # [ts, ts + gap) meets it: one session
                if ts < session[0]:
                    session[0] = ts
                if ts + GAP > session[1]:
                    session[1] = ts + GAP
                session[2] += amount
            else:
                emitted += 1
                sessions[user] = [ts, ts + GAP, amount]
    return emitted + len(sessions)


def run_hand(pipeline: str, events: list[Event]) -> Sample:
    started = time.perf_counter()
    windows = asyncio.run((_hand_tumbling if pipeline == "tumbling" else _hand_session)(events))
    return Sample(seconds=time.perf_counter() - started, windows=windows)


# -- bytewax ---------------------------------------------------------------------------


def run_bytewax(pipeline: str, events: list[Event]) -> Sample:
    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import TestingSource, run_main

    counted = [0]

    class Partition(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            counted[0] += len(items)

    class Sink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Partition:
            return Partition()

    def event_time(event: Event) -> datetime:
        return datetime.fromtimestamp(event[1], timezone.utc)

    align = datetime.fromtimestamp(0, timezone.utc)
    # Event time only, as in the other variants: the "system" time stands still (else
    # Bytewax's watermark moves on with the wall clock, and on a slow run on-time events
    # turn late) and no wake-up is scheduled by it.
    frozen = datetime.fromtimestamp(START, timezone.utc)
    clock = win.EventClock(event_time, wait_for_system_duration=timedelta(seconds=DISORDER),
                           now_getter=lambda: frozen, to_system_utc=lambda _: None)
    windower: Any = win.TumblingWindower(length=timedelta(seconds=MINUTE), align_to=align) if pipeline == "tumbling" \
        else win.SessionWindower(gap=timedelta(seconds=GAP))
    flow = Dataflow(f"bench_{pipeline}")
    stream = op.input("in", flow, TestingSource(events, batch_size=BATCH))
    keyed = op.key_on("user", stream, user_of)
    summed = win.fold_window("sum", keyed, clock, windower, lambda: 0.0, lambda acc, e: acc + e[2], lambda a, b: a + b)
    op.output("out", summed.down, Sink())
    started = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    return Sample(seconds=time.perf_counter() - started, windows=counted[0])


# -- measuring -------------------------------------------------------------------------


def variants(events: list[Event]) -> dict[str, Callable[[], Sample]]:
    shared = EventSource(events, len(events))
    table: dict[str, Callable[[], Sample]] = {}
    for pipeline in ("tumbling", "session"):
        table[f"{pipeline} hand loop"] = lambda p=pipeline: run_hand(p, events)
        table[f"{pipeline} streamflow, no checkpoints"] = lambda p=pipeline: run_streamflow(p, shared, False)
        table[f"{pipeline} streamflow, checkpoint 1 s"] = lambda p=pipeline: run_streamflow(p, shared, True)
        if pipeline == "tumbling":
            table[f"{pipeline} streamflow, sum(field), no checkpoints"] = lambda: run_streamflow(
                "tumbling", shared, False, built_in=True
            )
            table[f"{pipeline} streamflow, sum(field), checkpoint 1 s"] = lambda: run_streamflow(
                "tumbling", shared, True, built_in=True
            )
        try:
            import bytewax  # noqa: F401
        except ImportError:
            continue
        table[f"{pipeline} bytewax"] = lambda p=pipeline: run_bytewax(p, events)
    return table


def measure(events: list[Event], warmup: list[Event], repeats: int) -> dict[str, Sample]:
    for run in variants(warmup).values():
        run()
    runs: dict[str, list[Sample]] = {}
    for _ in range(repeats):
        for name, run in variants(events).items():
            gc.collect()
            runs.setdefault(name, []).append(run())
    medians = {name: sorted(samples, key=lambda x: x.seconds)[len(samples) // 2] for name, samples in runs.items()}
    for pipeline in ("tumbling", "session"):
        want = medians[f"{pipeline} hand loop"].windows
        for name, sample in medians.items():
            if name.startswith(pipeline) and sample.windows != want:
                raise RuntimeError(f"{name} emitted {sample.windows} windows, the hand loop {want}")
    return medians


def memory_child(pipeline: str, n: int) -> None:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sample = run_streamflow(pipeline, EventSource(None, n), True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "seconds": sample.seconds,
                      "checkpoints": sample.checkpoints, "windows": sample.windows}))


def measure_memory(n: int) -> dict[str, list[dict[str, Any]]]:
    reports: dict[str, list[dict[str, Any]]] = {}
    for pipeline in ("tumbling", "session"):
        for count in (n, 10 * n):
            command = [sys.executable, __file__, "--memory-child", pipeline, str(count)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            reports.setdefault(pipeline, []).append({"records": count, **json.loads(out.strip().splitlines()[-1])})
    return reports


def report(figures: dict[str, Sample], memory: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    n = args.records
    print(f"\nmachine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}")
    print(f"events: {n:,} over {USERS:,} users, {RATE:g}/s of event time, median of {args.repeats}, parallelism 1\n")
    print(f"| {'variant':<48} | {'events/s':>10} | {'windows':>8} | checkpoints |")
    print(f"|{'-' * 50}|{'-' * 12}|{'-' * 10}|-------------|")
    for name, x in figures.items():
        print(f"| {name:<48} | {n / x.seconds:>10,.0f} | {x.windows:>8,} | {x.checkpoints or '':>11} |")

    def ratio(top: str, bottom: str) -> float | None:
        if top not in figures or bottom not in figures:
            return None
        return figures[bottom].seconds / figures[top].seconds

    rows: list[tuple[str, float | None, float | None, str]] = []
    for p in ("tumbling", "session"):
        rows.append((f"{p}: streamflow / hand, no checkpoints", ratio(f"{p} streamflow, no checkpoints", f"{p} hand loop"),
                     None, ""))
        rows.append((f"{p}: streamflow / hand, checkpoint 1 s", ratio(f"{p} streamflow, checkpoint 1 s", f"{p} hand loop"),
                     0.5, ">="))
        rows.append((f"{p}: streamflow / bytewax, checkpoint 1 s",
                     ratio(f"{p} streamflow, checkpoint 1 s", f"{p} bytewax"), 1.0, ">="))
        if p == "tumbling":
            rows.append((f"{p}: sum(field) / hand, no checkpoints",
                         ratio(f"{p} streamflow, sum(field), no checkpoints", f"{p} hand loop"), None, ""))
            rows.append((f"{p}: sum(field) / hand, checkpoint 1 s",
                         ratio(f"{p} streamflow, sum(field), checkpoint 1 s", f"{p} hand loop"), 0.5, ">="))
            rows.append((f"{p}: sum(field) / bytewax, checkpoint 1 s",
                         ratio(f"{p} streamflow, sum(field), checkpoint 1 s", f"{p} bytewax"), 1.0, ">="))
    for p, (small, large) in memory.items():
        rows.append((f"{p}: peak RSS 10N / N (ru_maxrss)", large["peak_kib"] / small["peak_kib"], 1.5, "<="))
    print(f"\n| {'ratio':<48} | {'value':>6} | {'goal':>7} | result")
    print(f"|{'-' * 50}|{'-' * 8}|{'-' * 9}|{'-' * 18}")
    for label, value, target, sense in rows:
        if value is None:
            print(f"| {label:<48} | {'n/a':>6} | {'':>7} | not measured")
        elif target is None:
            print(f"| {label:<48} | {value:>6.2f} | {'':>7} | (for information)")
        else:
            ok = value >= target if sense == ">=" else value <= target
            print(f"| {label:<48} | {value:>6.2f} | {sense} {target:<4} | {'met' if ok else 'NOT met'}")
    for p, entries in memory.items():
        print(f"\nmemory, streamflow {p}, events generated in the reader, checkpoint 1 s:")
        for e in entries:
            print(f"  {e['records']:>11,} events: ru_maxrss {e['peak_kib'] / 1024:6.1f} MiB "
                  f"(after imports {e['baseline_kib'] / 1024:.1f} MiB), {e['seconds']:.1f} s, "
                  f"{e['checkpoints']} checkpoints, {e['windows']:,} windows")


def profile(events: list[Event]) -> None:
    for pipeline in ("tumbling", "session"):
        profiler = cProfile.Profile()
        profiler.enable()
        run_streamflow(pipeline, EventSource(events, len(events)), True)
        profiler.disable()
        print(f"\n--- streamflow {pipeline}, checkpoint 1 s: top 25 by own time ---")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-records", type=int, default=100_000, help="N of the memory runs (N and 10 N)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--memory-child", nargs=2, metavar=("PIPELINE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    memory = {} if args.no_memory or args.profile else measure_memory(args.memory_records)
    events = make_events(args.records)
    warmup = make_events(min(args.records, 20_000))
    gc.freeze()  # the inputs, held all run (no streaming job holds its input): out of the cyclic GC's walks
    if args.profile:
        profile(events)
        return
    figures = measure(events, warmup, args.repeats)
    report(figures, memory, args)


if __name__ == "__main__":
    main()
