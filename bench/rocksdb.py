"""The RocksDB state backend: speed next to the heap, checkpoint cost as state grows, memory.

Three parts, in one run (each can be left out):

speed: the keyed pipeline (b) of throughput.py (source -> map(orjson.loads) ->
  key_by(user) -> reduce(running sum) -> count, 10,000 users, parallelism 1, checkpoint
  every 1 s) on the heap backend and on RocksDB with incremental checkpoints, alternated
  ``--repeats`` times after a warm-up; the median of each. Goal: RocksDB / heap >= 0.4.

checkpoints: one keyed subtask on RocksDB, filled with N keys (``--sizes``, 1 M and
  10 M), then ``--intervals`` intervals that each update a change set of ``--changes``
  keys and take a checkpoint the way a task does it (after the fill the database is
  compacted once, as state grown over hours would be; the runtime's own pieces: the
  native snapshot at the barrier, the files into a real shared folder, the state file,
  the metadata, retention by reference counts), incremental and full (the canonical
  snapshot read from the native one, pickled, written). Per checkpoint: the time at the
  barrier (the task stops), the time until it is durable, and the bytes written for it.
  Goal: the incremental checkpoint's time at 10 M keys within 2x of its time at 1 M.

memory: a subprocess runs a keyed job whose state (unique keys, ~100 B values) grows to
  10x the configured ``memory_budget``, checkpointing every 1 s, and one whose state is
  1x the budget; each reports ru_maxrss and its RSS after the imports. Goal: the peak
  stays within the budget plus a fixed overhead: peak - baseline <= budget + 96 MiB,
  the same at 1x and 10x (within 1.25x).

Ratios and comparisons within one run on one machine are the figures to compare across
machines and commits (see throughput.py).

Usage: python3 bench/rocksdb.py [--records N] [--repeats R] [--sizes 1000000 10000000]
       [--changes 10000] [--intervals 8] [--budget-mib 64] [--memory-factors 1 10]
       [--skip speed,checkpoints,memory]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import throughput  # noqa: E402 - the records, source, sink and functions of pipeline (b)

import streamflow  # noqa: E402
from streamflow.checkpoint.incremental import KeyedCheckpoints  # noqa: E402
from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta  # noqa: E402
from streamflow.checkpoint.serde import encode  # noqa: E402
from streamflow.checkpoint.shared_files import uploaded_for  # noqa: E402
from streamflow.checkpoint.snapshot import SnapshotType  # noqa: E402
from streamflow.checkpoint.storage import CheckpointStorage  # noqa: E402
from streamflow.core.clock import SystemClock  # noqa: E402
from streamflow.core.ids import CheckpointId  # noqa: E402
from streamflow.partitioning.keygroups import KeyGroupAssigner  # noqa: E402
from streamflow.state import EmbeddedRocksDBStateBackend, HashMapStateBackend, StateBackend  # noqa: E402
from streamflow.state import ValueStateDescriptor  # noqa: E402

MIB = 1 << 20
MAX_PARALLELISM = 128

# -- speed: pipeline (b) on both backends ------------------------------------------------


def run_b(records: list[bytes], batch: int, backend: str, scratch: Path) -> tuple[float, float, int]:
    """Seconds, CPU seconds of the process (all threads, RocksDB's own included) and
    completed checkpoints of pipeline (b) on ``backend``."""

    async def job() -> tuple[float, float, int]:
        env = streamflow.StreamEnvironment(parallelism=1).set_source_batch_size(batch)
        env.enable_checkpointing(1.0, directory=scratch / "chk")
        if backend == "rocksdb":
            env.set_state_backend(EmbeddedRocksDBStateBackend(scratch / "rocksdb"))
        else:
            env.set_state_backend(HashMapStateBackend())
        sink = throughput.CountingSink()
        source = throughput.BenchSource(records, len(records))
        (env.from_source(source, name="bench-source").map(throughput.parse).key_by(throughput.user_of)
            .reduce(throughput.add_amount).uid("sum-per-user").sink_to(sink))  # fmt: skip
        started, cpu_started = time.perf_counter(), time.process_time()
        result = await env.execute(f"bench-b-{backend}")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if sink.count != len(records):
            raise RuntimeError(f"(b) on {backend} counted {sink.count} of {len(records)} records")
        return elapsed, cpu, result.checkpoints_completed

    try:
        return asyncio.run(job())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure_speed(records: list[bytes], batch: int, repeats: int) -> dict[str, tuple[float, float, int]]:
    scratch = Path(tempfile.mkdtemp(prefix="sf-bench-rocksdb-"))
    for backend in ("heap", "rocksdb"):  # warm-up
        run_b(records[:10_000], batch, backend, scratch / "warm")
    runs: dict[str, list[tuple[float, float, int]]] = {"heap": [], "rocksdb": []}
    for _ in range(repeats):
        for backend in runs:
            gc.collect()
            runs[backend].append(run_b(records, batch, backend, scratch / backend))
    shutil.rmtree(scratch, ignore_errors=True)
    return {backend: sorted(samples)[len(samples) // 2] for backend, samples in runs.items()}


# -- checkpoints: duration and bytes as state grows ----------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointSample:
    at_barrier: float  # seconds the task is held at the barrier
    durable: float  # seconds from the barrier to the metadata written
    written: int  # bytes written for this checkpoint (state file + new shared files)


VALUE = ValueStateDescriptor[tuple[int, str]]("value")
PAD = "x" * 80


def fill(backend: Any, keys: range, round_: int) -> None:
    group_of = KeyGroupAssigner(MAX_PARALLELISM)
    state = backend.get_state(VALUE)
    set_key, update = backend.set_current_key, state.update
    for i in keys:
        key = f"key-{i}"
        set_key(key, group_of(key))
        update((round_, PAD))


async def take_checkpoints(
    size: int, changes: int, intervals: int, incremental: bool, scratch: Path
) -> tuple[float, list[CheckpointSample]]:
    """Fill ``size`` keys, then ``intervals`` checkpoints of ``changes`` updated keys each;
    returns the fill time and a sample per checkpoint."""
    rocks = EmbeddedRocksDBStateBackend(scratch / "rocksdb", incremental=incremental)
    backend = rocks.create_keyed_backend(
        operator_uid="count", subtask_index=0, max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM), clock=SystemClock(),
    )  # fmt: skip
    storage = CheckpointStorage(scratch / "chk", retained=2)
    keyed = KeyedCheckpoints(backend, owner="count-0", checkpoint_directory=storage.directory)
    try:
        started = time.perf_counter()
        fill(backend, range(size), 0)
        # settled, as state that grew over hours would be: not in the middle of compacting the fill
        backend.database.flush(True)
        backend.database.raw.compact_range(None, None)
        filled = time.perf_counter() - started
        samples = []
        for n in range(1, intervals + 2):  # checkpoint 1 holds everything: not counted
            start = (n * 7919 * changes) % max(1, size - changes)
            fill(backend, range(start, start + changes), n)
            samples.append(await checkpoint(keyed, storage, n))
        return filled, samples[1:]
    finally:
        backend.close()
        shutil.rmtree(scratch, ignore_errors=True)


async def checkpoint(keyed: KeyedCheckpoints, storage: CheckpointStorage, n: int) -> CheckpointSample:
    """One checkpoint of one subtask, as the task and the coordinator take it."""
    started = time.perf_counter()
    part, pending = await keyed.snapshot(n, SnapshotType.CHECKPOINT)
    blob = None if part is None else encode({"keyed": part})
    at_barrier = time.perf_counter() - started
    shared: tuple[Any, ...] = ()
    if pending is not None:
        try:
            finished = await pending.finish(storage.shared)
        finally:
            await pending.discard()
        shared = finished.shared
        if finished.keyed is not None:
            blob = encode({"keyed": finished.keyed})
    assert blob is not None
    handle = await storage.write_state(n, "count-0", blob, shared)
    storage.shared.references.add(n, [f.name for f in shared])
    operators = {"count": OperatorStateMeta(parallelism=1, max_parallelism=MAX_PARALLELISM, subtasks={0: handle})}
    metadata = CheckpointMetadata(job_name="bench", checkpoint_id=CheckpointId(n), timestamp=time.time(),
                                  operators=operators)  # fmt: skip
    await storage.write_metadata(n, metadata)
    durable = time.perf_counter() - started
    await storage.enforce_retention()
    keyed.completed(n)
    written = handle.size + sum(f.size for f in shared if uploaded_for(f.name) == n)
    return CheckpointSample(at_barrier, durable, written)


# -- memory: a job with state 10x the budget, in a subprocess --------------------------------


class UniqueKeys(throughput.BenchSource):
    """Records whose keys never repeat: the state grows by one entry per record."""

    def create_reader(self, ctx: Any) -> Any:
        start = int(ctx.restored_splits[0]["next"]) if ctx.restored_splits else 0
        return UniqueReader(None, self.count, start)


class UniqueReader(throughput.BenchReader):
    async def poll(self, max_records: int, max_wait: float) -> Any:
        start = self._next
        if start >= self._end:
            return None
        stop = min(self._end, start + max_records)
        self._next = stop
        return throughput.SourceBatch([(f"key-{i}", i) for i in range(start, stop)], None, "bench")


class Remember(streamflow.KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.state = ctx.get_state(ValueStateDescriptor[tuple[int, str]]("value"))

    def process_element(self, record: Any, ctx: Any, out: Any) -> None:
        self.state.update((record[1], PAD))
        out.collect(record[1])


def memory_child(records: int, budget: int, batch: int) -> None:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scratch = Path(tempfile.mkdtemp(prefix="sf-bench-rocksdb-memory-"))

    backend = EmbeddedRocksDBStateBackend(scratch / "rocksdb", memory_budget=budget)
    cache_peak = 0
    done = threading.Event()

    def watch_cache() -> None:  # what RocksDB charges to the budget: blocks, memtables, index and filters
        nonlocal cache_peak
        while not done.wait(0.05):
            cache_peak = max(cache_peak, backend.budget.cache.get_usage())

    async def job() -> dict[str, Any]:
        env = streamflow.StreamEnvironment(parallelism=1).set_source_batch_size(batch)
        env.enable_checkpointing(1.0, directory=scratch / "chk")
        env.set_state_backend(backend)
        sink = throughput.CountingSink()
        (env.from_source(UniqueKeys(None, records), name="unique").key_by(lambda r: r[0])
            .process(Remember()).uid("remember").sink_to(sink))  # fmt: skip
        started = time.perf_counter()
        result = await env.execute("bench-memory")
        state_bytes = sum(p.stat().st_size for p in (scratch / "chk" / "shared").iterdir())
        return {"seconds": time.perf_counter() - started, "checkpoints": result.checkpoints_completed,
                "state_bytes_in_last_checkpoints": state_bytes}

    watcher = threading.Thread(target=watch_cache, daemon=True)
    watcher.start()
    try:
        report = asyncio.run(job())
    finally:
        done.set()
        watcher.join()
        shutil.rmtree(scratch, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "cache_peak_bytes": cache_peak, **report}))


def measure_memory(budget: int, batch: int, factors: list[int]) -> list[dict[str, Any]]:
    """A child per factor: state about ``factor`` times the budget (~130 B of state a
    key, as RocksDB stores it before compression)."""
    reports = []
    for factor in factors:
        records = factor * budget // 130
        command = [sys.executable, __file__, "--memory-child", str(records), "--budget-mib", str(budget // MIB),
                   "--batch-size", str(batch)]  # fmt: skip
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        reports.append({"factor": factor, "records": records, **json.loads(out.strip().splitlines()[-1])})
    return reports


# -- report -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report_speed(speed: dict[str, tuple[float, float, int]], n: int) -> None:
    print(f"\nspeed, pipeline (b), {n:,} records, checkpoint every 1 s, median (by wall time):")
    for backend, (seconds, cpu, checkpoints) in speed.items():
        print(f"  {backend:<8} {n / seconds:>10,.0f} records/s  {n / cpu:>10,.0f} records per CPU second  "
              f"({checkpoints} checkpoints)")
    ratio = speed["heap"][0] / speed["rocksdb"][0]
    print(f"  RocksDB / heap: {ratio:.2f} (goal >= 0.4: {verdict(ratio >= 0.4)}); by CPU time "
          f"{speed['heap'][1] / speed['rocksdb'][1]:.2f} (steadier on a shared machine)")


def report_checkpoints(results: dict[tuple[int, bool], tuple[float, list[CheckpointSample]]], changes: int) -> None:
    print(f"\ncheckpoints, one subtask, {changes:,} keys changed per interval (median and max of the intervals):")
    print("| keys       | kind        | fill s | at barrier ms | durable ms (max)  | written MiB (max)  |")
    print("|------------|-------------|--------|---------------|-------------------|--------------------|")
    medians: dict[tuple[int, bool], float] = {}
    for (size, incremental), (filled, samples) in sorted(results.items()):
        at_barrier = statistics.median(s.at_barrier for s in samples)
        durable = statistics.median(s.durable for s in samples)
        written = statistics.median(s.written for s in samples)
        medians[(size, incremental)] = durable
        kind = "incremental" if incremental else "full"
        print(f"| {size:>10,} | {kind:<11} | {filled:>6.1f} | {at_barrier * 1000:>13.1f} | "
              f"{durable * 1000:>7.1f} ({max(s.durable for s in samples) * 1000:>7.1f}) | "
              f"{written / MIB:>7.2f} ({max(s.written for s in samples) / MIB:>7.2f}) |")
    sizes = sorted({size for size, _ in results})
    if len(sizes) >= 2 and all((size, True) in medians for size in sizes):
        small, large = sizes[0], sizes[-1]
        growth = medians[(large, True)] / medians[(small, True)]
        print(f"  incremental checkpoint time {large:,} / {small:,} keys: {growth:.2f} "
              f"(goal <= 2: {verdict(growth <= 2)})")


def report_memory(memory: list[dict[str, Any]], budget: int) -> None:
    print(f"\nmemory, a keyed job on RocksDB with memory_budget {budget // MIB} MiB, checkpoint every 1 s:")
    for entry in memory:
        grown = (entry["peak_kib"] - entry["baseline_kib"]) * 1024
        print(f"  state ~{entry['factor']:>2}x the budget ({entry['records']:,} keys, "
              f"{entry['state_bytes_in_last_checkpoints'] / MIB:.0f} MiB of files in the last checkpoints): "
              f"ru_maxrss {entry['peak_kib'] / 1024:.0f} MiB, {grown / MIB:.0f} MiB above the "
              f"{entry['baseline_kib'] / 1024:.0f} MiB after imports (RocksDB's block cache and write buffers at "
              f"most {entry['cache_peak_bytes'] / MIB:.0f} MiB of it); {entry['seconds']:.0f} s")
    by_factor = {entry["factor"]: entry["peak_kib"] - entry["baseline_kib"] for entry in memory}
    if 1 not in by_factor or 10 not in by_factor:
        return
    grown = by_factor[10] * 1024
    flat = by_factor[10] / max(1, by_factor[1])
    print(f"  10x: {grown / MIB:.0f} MiB above baseline <= budget + 96 MiB: {verdict(grown <= budget + 96 * MIB)}; "
          f"10x / 1x growth {flat:.2f} (goal <= 1.25: {verdict(flat <= 1.25)})")
    largest = max(by_factor)
    if largest > 10:  # past the point where RocksDB's caches are full, a fixed cost stops growing
        print(f"  {largest}x / 10x growth {by_factor[largest] / max(1, by_factor[10]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records of the speed part")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--intervals", type=int, default=8)
    parser.add_argument("--full-up-to", type=int, default=10_000_000,
                        help="take full checkpoints only up to this many keys (they hold all of it in memory)")
    parser.add_argument("--budget-mib", type=int, default=64)
    parser.add_argument("--memory-factors", type=int, nargs="+", default=[1, 10],
                        help="state sizes of the memory part, in multiples of the budget (1 and 10 are judged)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: speed,checkpoints,memory")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = args.budget_mib * MIB
    if args.memory_child is not None:
        memory_child(args.memory_child, budget, args.batch_size)
        return
    skip = set(filter(None, args.skip.split(",")))
    print(f"machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
          f"rocksdict {importlib.metadata.version('rocksdict')}")
    if "memory" not in skip:  # first: a child's ru_maxrss starts at the parent's peak at fork time
        memory = measure_memory(budget, args.batch_size, args.memory_factors)
        report_memory(memory, budget)
    if "speed" not in skip:
        records = throughput.make_records(args.records)
        report_speed(measure_speed(records, args.batch_size, args.repeats), args.records)
        del records
    if "checkpoints" not in skip:
        results = {}
        for size in args.sizes:
            for incremental in (True, False):
                if not incremental and size > args.full_up_to:
                    continue
                gc.collect()
                scratch = Path(tempfile.mkdtemp(prefix="sf-bench-rocksdb-chk-"))
                intervals = args.intervals if incremental else min(args.intervals, 2)
                results[(size, incremental)] = asyncio.run(
                    take_checkpoints(size, args.changes, intervals, incremental, scratch)
                )
                print(f"  ({size:,} keys, {'incremental' if incremental else 'full'} done)", flush=True)
        report_checkpoints(results, args.changes)


if __name__ == "__main__":
    main()
