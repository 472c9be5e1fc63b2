"""Throughput and memory benchmark: streamflow next to a hand-written loop and Bytewax.

What it measures, in one process, on ~100-byte JSON records generated deterministically
in memory (user id out of 10,000, event type, amount, timestamp, padding):

(a) source -> map(orjson.loads, amount * 1.1, event upper-cased, orjson.dumps) -> count
(b) source -> map(orjson.loads) -> key_by(user) -> reduce(running sum of amount) -> count
(b 1M keys, with --wide) pipeline (b) over 1,000,000 users: keyed state of a size where
    the synchronous snapshot step shows; checkpointing with snapshots taken by a forked
    child (the default from 50,000 keys) and pickled in the task (``no fork``)
(c) pipeline (b) with the reduce and the sink at parallelism 2 (source and map at 1): a
    real hash exchange through channels inside the one process, against (b) itself,
    which the planner chains into one task at parallelism 1: the cost of a channel hop

each through streamflow (checkpointing off, and every 1 s into a fresh temp dir), through
a hand-written asyncio loop doing the same work with no framework (an async generator of
list slices of the same batch size feeding a coroutine that processes and counts), and
(a) also through Bytewax (TestingSource -> op.map -> a counting DynamicSink, run_main).
Parallelism 1 everywhere. Every variant runs once on a small input to warm up, then
``--repeats`` times, round-robin so that drift hits all variants alike; the median wins.

Why ratios: absolute records/s depend on the machine and on whatever else it runs at the
time. Variants measured side by side in one process see the same machine, so their
ratios (streamflow / hand loop, streamflow / Bytewax, checkpointing / none) are the
figures to compare across machines and commits.

A checkpointing run counts as checkpointing every second only if it completed about one
checkpoint per elapsed second; the longest event-loop stall during each streamflow run is
printed too (a chain that never yields starves the checkpoint coordinator).

Memory: streamflow (a) runs in two subprocesses, N and 10 N records generated on the fly
inside the source reader (never held in a list), checkpointing every 1 s; each reports
its ru_maxrss. Flat means the 10 N peak is within 1.5x of the N peak.

``--uvloop`` adds streamflow (a) and (b) without checkpoints on uvloop's event loop, next
to the same on asyncio's, to see what the loop itself costs.

Usage: python3 bench/throughput.py [--records N] [--quick] [--profile] [--uvloop] [--only bc]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import operator
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

import streamflow
from streamflow.api.connector import SinkContext, SourceBatch, SourceContext
from streamflow.api.connector import SinkWriterBase
from streamflow.state import HashMapStateBackend

USERS = 10_000
WIDE_USERS = 1_000_000
WIDE = "b 1M keys"
EVENTS = ("click", "view", "purchase", "refund", "signup")
RECORD_BYTES = 100

# -- the data ---------------------------------------------------------------------------


def record_at(i: int, users: int = USERS) -> bytes:
    """Record ``i``: a pure function of ``i``, so lists and lazy readers agree.

    Copied out of orjson's result: orjson >= 3.12 over-allocates the bytes it returns
    (about 4 KiB for a 100-byte document), which would make 1M held records ~4 GiB.
    """
    body = {
        "user": f"u{(i * 7919) % users:05d}",
        "event": EVENTS[i % len(EVENTS)],
        "amount": ((i * 31337) % 100_000) / 100,
        "ts": 1_700_000_000_000 + i,
        "pad": "",
    }
    body["pad"] = "x" * max(0, RECORD_BYTES - len(orjson.dumps(body)))
    return bytes(memoryview(orjson.dumps(body)))


def make_records(n: int, users: int = USERS) -> list[bytes]:
    return [record_at(i, users) for i in range(n)]


def transform(raw: bytes) -> bytes:
    """Work of pipeline (a): parse, change two fields, serialise."""
    record = orjson.loads(raw)
    record["amount"] = record["amount"] * 1.1
    record["event"] = record["event"].upper()
    return orjson.dumps(record)


parse: Callable[[bytes], Any] = orjson.loads
user_of = operator.itemgetter("user")


def add_amount(acc: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Reduce function of pipeline (b): the running sum of ``amount`` for one user."""
    return {"user": record["user"], "amount": acc["amount"] + record["amount"]}


# -- streamflow source and sink ---------------------------------------------------------


class BenchSource:
    """Bounded source of ``count`` records: slices of ``records``, or generated lazily.

    One split (parallelism 1); its state is the index of the NEXT record to read.
    """

    def __init__(self, records: list[bytes] | None, count: int) -> None:
        self.records = records
        self.count = count

    def create_reader(self, ctx: SourceContext) -> BenchReader:
        start = int(ctx.restored_splits[0]["next"]) if ctx.restored_splits else 0
        return BenchReader(self.records, self.count, start)


class BenchReader:
    def __init__(self, records: list[bytes] | None, count: int, start: int) -> None:
        self._records = records
        self._end = count
        self._next = start

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        start = self._next
        if start >= self._end:
            return None
        stop = min(self._end, start + max_records)
        self._next = stop
        if self._records is not None:
            chunk = self._records[start:stop]  # a new list: the runtime may keep it
        else:
            chunk = [record_at(i) for i in range(start, stop)]
        return SourceBatch(chunk, None, "bench")

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [{"split": "bench", "next": self._next}]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


class CountingSink:
    """Counts what its (single) writer receives; ``count`` is read after the job."""

    def __init__(self) -> None:
        self.count = 0

    def create_writer(self, ctx: SinkContext) -> CountingWriter:
        return CountingWriter(self)


class CountingWriter(SinkWriterBase):
    def __init__(self, sink: CountingSink) -> None:
        self._sink = sink

    async def write(self, records: list[Any]) -> None:
        self._sink.count += len(records)


# -- the variants ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One timed run. ``max_stall`` is the longest the event loop could not serve another
    task (a 10 ms sleeper's worst lateness): that bounds checkpoint trigger and cancel
    latency. Measured for streamflow only; the hand loop never yields, by design.
    ``cpu_seconds``: the process's CPU time over the job (streamflow only), which a machine
    busy with other work disturbs much less than elapsed time."""

    seconds: float
    checkpoints: int = 0
    max_stall: float | None = None
    cpu_seconds: float | None = None


async def _stall_probe(worst: list[float]) -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        worst[0] = max(worst[0], time.perf_counter() - started - 0.01)


def run_streamflow(pipeline: str, source: BenchSource, batch: int, checkpoint: bool, loop: str = "asyncio",
                   fork_snapshots: bool = True) -> Sample:
    async def job(directory: str | None) -> Sample:
        env = streamflow.StreamEnvironment(parallelism=2 if pipeline == "c" else 1).set_source_batch_size(batch)
        if not fork_snapshots:  # every snapshot pickled in the task, as before forked snapshots
            env.set_state_backend(HashMapStateBackend(fork_snapshots_from=None))
        if directory is not None:
            env.enable_checkpointing(1.0, directory=directory)
        sink = CountingSink()
        stream = env.from_source(source, name="bench-source")
        if pipeline == "a":
            stream.map(transform).sink_to(sink)
        elif pipeline == "c":  # source and map in one task, reduce + sink in two: a hash exchange
            stream.set_parallelism(1)
            parsed = stream.map(parse).set_parallelism(1)
            parsed.key_by(user_of).reduce(add_amount).uid("sum-per-user").sink_to(sink)
        else:
            stream.map(parse).key_by(user_of).reduce(add_amount).uid("sum-per-user").sink_to(sink)
        worst = [0.0]
        probe = asyncio.create_task(_stall_probe(worst))
        started, cpu_started = time.perf_counter(), time.process_time()
        result = await env.execute(f"bench-{pipeline}")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        probe.cancel()
        if sink.count != source.count:
            raise RuntimeError(f"streamflow ({pipeline}) counted {sink.count} of {source.count} records")
        return Sample(seconds=elapsed, checkpoints=result.checkpoints_completed, max_stall=worst[0], cpu_seconds=cpu)

    if not checkpoint:
        return streamflow.run(job(None), loop=loop)
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as directory:  # fresh: nothing to restore
        return streamflow.run(job(directory), loop=loop)


async def _batches(records: list[bytes], size: int) -> AsyncIterator[list[bytes]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


async def _hand_a(records: list[bytes], size: int) -> int:
    count = 0
    async for batch in _batches(records, size):
        out = [transform(raw) for raw in batch]
        count += len(out)
    return count


async def _hand_b(records: list[bytes], size: int) -> int:
    count = 0
    totals: dict[str, dict[str, Any]] = {}
    async for batch in _batches(records, size):
        out = []
        for raw in batch:
            record = parse(raw)
            key = user_of(record)
            previous = totals.get(key)
            value = record if previous is None else add_amount(previous, record)
            totals[key] = value
            out.append(value)
        count += len(out)
    return count


def run_hand(pipeline: str, records: list[bytes], batch: int) -> Sample:
    started = time.perf_counter()
    count = asyncio.run((_hand_a if pipeline == "a" else _hand_b)(records, batch))
    elapsed = time.perf_counter() - started
    if count != len(records):
        raise RuntimeError(f"hand loop ({pipeline}) counted {count} of {len(records)} records")
    return Sample(seconds=elapsed)


def run_bytewax(records: list[bytes], batch: int) -> Sample:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import TestingSource, run_main

    counted = [0]

    class Partition(StatelessSinkPartition[bytes]):
        def write_batch(self, items: list[bytes]) -> None:
            counted[0] += len(items)

    class Sink(DynamicSink[bytes]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Partition:
            return Partition()

    flow = Dataflow("bench_a")
    stream = op.input("in", flow, TestingSource(records, batch_size=batch))
    op.output("out", op.map("transform", stream, transform), Sink())
    started = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    elapsed = time.perf_counter() - started
    if counted[0] != len(records):
        raise RuntimeError(f"bytewax counted {counted[0]} of {len(records)} records")
    return Sample(seconds=elapsed)


def variants(records: list[bytes], batch: int, uvloop: bool = False,
             wide: list[bytes] | None = None, only: str | None = None) -> dict[str, Callable[[], Sample]]:
    n = len(records)
    shared = BenchSource(records, n)
    table: dict[str, Callable[[], Sample]] = {
        "a hand loop": lambda: run_hand("a", records, batch),
        "a streamflow, no checkpoints": lambda: run_streamflow("a", shared, batch, False),
        "a streamflow, checkpoint 1 s": lambda: run_streamflow("a", shared, batch, True),
        "b hand loop": lambda: run_hand("b", records, batch),
        "b streamflow, no checkpoints": lambda: run_streamflow("b", shared, batch, False),
        "b streamflow, checkpoint 1 s": lambda: run_streamflow("b", shared, batch, True),
        "c streamflow p=2, no checkpoints": lambda: run_streamflow("c", shared, batch, False),
    }
    if wide is not None:
        wide_source = BenchSource(wide, len(wide))
        table[f"{WIDE} hand loop"] = lambda: run_hand("b", wide, batch)
        table[f"{WIDE} streamflow, no checkpoints"] = lambda: run_streamflow("b", wide_source, batch, False)
        table[f"{WIDE} streamflow, checkpoint 1 s"] = lambda: run_streamflow("b", wide_source, batch, True)
        table[f"{WIDE} streamflow, checkpoint 1 s, no fork"] = lambda: run_streamflow(
            "b", wide_source, batch, True, fork_snapshots=False
        )
    if uvloop:
        table["a streamflow on uvloop, no checkpoints"] = lambda: run_streamflow("a", shared, batch, False, "uvloop")
        table["b streamflow on uvloop, no checkpoints"] = lambda: run_streamflow("b", shared, batch, False, "uvloop")
    if only is None or "a" in only:  # Bytewax runs pipeline (a) only
        try:
            import bytewax  # noqa: F401
        except ImportError:
            print("bytewax is not installed (pip install 'bytewax>=0.21'): skipping it", file=sys.stderr)
        else:
            table["a bytewax"] = lambda: run_bytewax(records, batch)
    if only is not None:  # the pipelines named, e.g. "bc": variants "b ..." and "c ..."
        table = {name: run for name, run in table.items() if name.split(" ")[0] in only}
    return table


def measure(records: list[bytes], warmup: list[bytes], batch: int, repeats: int,
            uvloop: bool = False, wide: list[bytes] | None = None, only: str | None = None) -> dict[str, Sample]:
    """The median run (by time) of each variant, with the median CPU time of its runs."""
    for run in variants(warmup, batch, uvloop, None if wide is None else warmup, only).values():
        run()
    runs: dict[str, list[Sample]] = {}
    for _ in range(repeats):
        for name, run in variants(records, batch, uvloop, wide, only).items():
            gc.collect()
            runs.setdefault(name, []).append(run())
    medians: dict[str, Sample] = {}
    for name, samples in runs.items():
        median = sorted(samples, key=lambda x: x.seconds)[len(samples) // 2]
        cpu = [x.cpu_seconds for x in samples if x.cpu_seconds is not None]
        medians[name] = replace(median, cpu_seconds=statistics.median(cpu) if cpu else None)
    return medians


# -- memory: streamflow (a) with lazily generated input, in a subprocess -----------------


def memory_child(n: int, batch: int) -> None:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sample = run_streamflow("a", BenchSource(None, n), batch, True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "seconds": sample.seconds,
                      "checkpoints": sample.checkpoints}))


def measure_memory(n: int, batch: int) -> list[dict[str, Any]]:
    """Run before the parent holds any records: a child's ru_maxrss starts at the
    parent's peak at fork time (Linux carries it across fork and exec)."""
    reports = []
    for count in (n, 10 * n):
        command = [sys.executable, __file__, "--memory-child", str(count), "--batch-size", str(batch)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        reports.append({"records": count, **json.loads(out.strip().splitlines()[-1])})
    return reports


# -- report -----------------------------------------------------------------------------


def cadence_problem(sample: Sample | None, interval: float = 1.0) -> str:
    """Why ``sample`` does not show the cost of checkpointing every ``interval`` ("" if it
    does): it needs one completed checkpoint per elapsed interval (the periodic ones plus
    the final one). A run shorter than two intervals has no periodic checkpoint to show."""
    if sample is None:
        return "not run"
    if sample.seconds < 2 * interval:
        return f"run of {sample.seconds:.1f} s: no periodic checkpoint; use more --records"
    if sample.checkpoints < int(sample.seconds / interval):
        return f"only {sample.checkpoints} checkpoints completed in {sample.seconds:.1f} s"
    return ""


def report(figures: dict[str, Sample], memory: list[dict[str, Any]], args: argparse.Namespace) -> None:
    n = args.records
    print(f"\nmachine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}")
    print(f"records: {n:,} x ~{RECORD_BYTES} B, batch {args.batch_size}, median of {args.repeats}, parallelism 1\n")
    print(f"| {'variant':<38} | {'records/s':>11} | checkpoints | max loop stall |")
    print(f"|{'-' * 40}|{'-' * 13}|-------------|----------------|")
    for name, x in figures.items():
        stall = "" if x.max_stall is None else f"{x.max_stall * 1000:.0f} ms"
        print(f"| {name:<38} | {n / x.seconds:>11,.0f} | {x.checkpoints or '':>11} | {stall:>14} |")

    def ratio(top: str, bottom: str) -> float | None:
        if top not in figures or bottom not in figures:
            return None
        return figures[bottom].seconds / figures[top].seconds

    a_cp, b_cp = figures.get("a streamflow, checkpoint 1 s"), figures.get("b streamflow, checkpoint 1 s")
    # (label, value, goal (None: for information), sense, why the figure cannot count)
    rows: list[tuple[str, float | None, float | None, str, str]] = [
        ("(a) streamflow / hand, no checkpoints", ratio("a streamflow, no checkpoints", "a hand loop"), None, "", ""),
        ("(a) streamflow / hand, checkpoint 1 s", ratio("a streamflow, checkpoint 1 s", "a hand loop"), 0.5, ">=",
         cadence_problem(a_cp)),
        ("(b) streamflow / hand, no checkpoints", ratio("b streamflow, no checkpoints", "b hand loop"), 0.8, ">=", ""),
        ("(b) streamflow / hand, checkpoint 1 s", ratio("b streamflow, checkpoint 1 s", "b hand loop"), 0.5, ">=",
         cadence_problem(b_cp)),
        ("(a) streamflow / bytewax, no checkpoints", ratio("a streamflow, no checkpoints", "a bytewax"), None, "", ""),
        ("(a) streamflow / bytewax, checkpoint 1 s", ratio("a streamflow, checkpoint 1 s", "a bytewax"), 1.0, ">=",
         cadence_problem(a_cp)),
        ("(a) checkpoint 1 s / none", ratio("a streamflow, checkpoint 1 s", "a streamflow, no checkpoints"),
         0.9, ">=", cadence_problem(a_cp)),
        ("(b) checkpoint 1 s / none", ratio("b streamflow, checkpoint 1 s", "b streamflow, no checkpoints"),
         0.95, ">=", cadence_problem(b_cp)),
    ]
    if f"{WIDE} hand loop" in figures:
        wide_cp = figures[f"{WIDE} streamflow, checkpoint 1 s"]
        rows += [
            (f"({WIDE}) streamflow / hand, no checkpoints",
             ratio(f"{WIDE} streamflow, no checkpoints", f"{WIDE} hand loop"), None, "", ""),
            (f"({WIDE}) checkpoint 1 s / none",
             ratio(f"{WIDE} streamflow, checkpoint 1 s", f"{WIDE} streamflow, no checkpoints"), 0.95, ">=",
             cadence_problem(wide_cp)),
            (f"({WIDE}) same, snapshots not forked",
             ratio(f"{WIDE} streamflow, checkpoint 1 s, no fork", f"{WIDE} streamflow, no checkpoints"), None, "",
             ""),
        ]
    hop = ratio("b streamflow, no checkpoints", "c streamflow p=2, no checkpoints")  # time of (c) / time of (b)
    rows.append(("(c) p=2 / p=1 chained, records/s", ratio("c streamflow p=2, no checkpoints",
                                                           "b streamflow, no checkpoints"), None, "", ""))
    rows.append(("(c) channel hop cost: time p=2 / p=1 - 1", None if hop is None else hop - 1, 0.15, "<=", ""))
    b_run, c_run = figures.get("b streamflow, no checkpoints"), figures.get("c streamflow p=2, no checkpoints")
    cpu_hop = None
    if b_run is not None and c_run is not None and b_run.cpu_seconds and c_run.cpu_seconds:
        cpu_hop = c_run.cpu_seconds / b_run.cpu_seconds - 1
    rows.append(("(c) the same by CPU time (median of runs)", cpu_hop, None, "", ""))
    for pipeline in "ab":
        on_uvloop = ratio(f"{pipeline} streamflow on uvloop, no checkpoints", f"{pipeline} streamflow, no checkpoints")
        if on_uvloop is not None:
            rows.append((f"({pipeline}) uvloop / asyncio, no checkpoints", on_uvloop, None, "", ""))
    if memory:
        small, large = memory
        rows.append(("peak RSS 10N / N (ru_maxrss)", large["peak_kib"] / small["peak_kib"], 1.5, "<=", ""))
    print(f"\n| {'ratio':<46} | {'value':>6} | {'goal':>7} | result")
    print(f"|{'-' * 48}|{'-' * 8}|{'-' * 9}|{'-' * 30}")
    for label, value, target, sense, problem in rows:
        if value is None or target is None:
            shown, verdict = ("n/a", "not measured") if value is None else (f"{value:.2f}", "(for information)")
            print(f"| {label:<46} | {shown:>6} | {'':>7} | {verdict}")
            continue
        ok = value >= target if sense == ">=" else value <= target
        if not ok:
            verdict = "NOT met" + (f" ({problem})" if problem else "")
        else:
            verdict = f"unproven: {problem}" if problem else "met"
        print(f"| {label:<46} | {value:>6.2f} | {sense} {target:<4} | {verdict}")
    if memory:
        print("\nmemory, streamflow (a), records generated in the reader, checkpoint 1 s:")
    for entry in memory:
        print(f"  {entry['records']:>11,} records: ru_maxrss {entry['peak_kib'] / 1024:6.1f} MiB "
              f"(after imports {entry['baseline_kib'] / 1024:.1f} MiB), "
              f"{entry['seconds']:.1f} s, {entry['checkpoints']} checkpoints")


def profile(records: list[bytes], batch: int, pipelines: str) -> None:
    """cProfile one checkpointed streamflow run of each pipeline; top costs by own time.
    (cProfile inflates per-call costs, so Python-level calls look dearer than they are.)"""
    for pipeline in pipelines:
        profiler = cProfile.Profile()
        profiler.runcall(run_streamflow, pipeline, BenchSource(records, len(records)), batch, True)
        print(f"\ncProfile of streamflow ({pipeline}), checkpoint 1 s, by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000, help="records per source batch (all variants)")
    parser.add_argument("--quick", action="store_true", help="100k records, 1 repeat: a smoke test")
    parser.add_argument("--profile", action="store_true", help="also cProfile one run of each pipeline")
    parser.add_argument("--pipelines", default="abc", help="which pipelines --profile profiles (default abc)")
    parser.add_argument("--no-memory", action="store_true", help="skip the N / 10 N memory subprocesses")
    parser.add_argument("--uvloop", action="store_true", help="also run streamflow (a) and (b) on uvloop")
    parser.add_argument("--only", help="run only these pipelines' variants, e.g. bc, and no memory check (default: all)")
    parser.add_argument("--wide", action="store_true",
                        help=f"also run (b) over {WIDE_USERS:,} users (hand loop, streamflow with and without checkpoints)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.batch_size)
        return
    if args.quick:
        args.records, args.repeats = 100_000, 1
    memory = [] if args.no_memory or args.only else measure_memory(args.records, args.batch_size)
    records = make_records(args.records)
    warmup = make_records(min(10_000, args.records))
    wide = make_records(args.records, WIDE_USERS) if args.wide else None
    # The inputs stay in memory for the whole run, as no streaming job holds its input:
    # out of the cyclic GC, so that its rare full collections do not walk millions of
    # input records (a 50 ms stall in whichever variant it falls, hand loop included).
    gc.freeze()
    figures = measure(records, warmup, args.batch_size, args.repeats, args.uvloop, wide, args.only)
    report(figures, memory, args)
    if args.profile:
        profile(records, args.batch_size, args.pipelines)


if __name__ == "__main__":
    main()
