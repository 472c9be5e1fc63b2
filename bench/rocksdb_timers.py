"""Timers in RocksDB: window jobs before and after, and the timer store itself.

Two parts, in one run:

windows: the tumbling and the session pipelines of windows.py (10,000 users, event time,
  ``key_by(user) -> window -> aggregate -> count``, parallelism 1, an incremental
  checkpoint every 1 s) on RocksDB and on the heap, each with the code of two trees:
  ``--before`` (a commit whose RocksDB backend keeps timers in memory; default: where
  this branch left main) and this checkout (timers in the database). Every run is a
  fresh interpreter importing one tree (``PYTHONPATH``); the four variants of a pipeline
  run alternated ``--repeats`` times after a warm-up, medians. Reported: records/s,
  after/before per backend (the heap's should be ~1: its timers did not change), and
  each child's peak RSS.

store: this checkout's timer stores alone, ``--timers`` event-time timers over 50,000
  keys (128 key groups): registered latest first (each one a new earliest), then all
  fired; the RocksDB store against the in-memory TimerQueue, and the Python memory each
  holds after registering (tracemalloc, a separate pass).

Usage: python3 bench/rocksdb_timers.py [--records N] [--repeats R] [--timers N]
       [--before COMMIT] [--skip windows,store] [--pipelines tumbling,session]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PIPELINES = ("tumbling", "session")
VARIANTS = ("heap-before", "heap-after", "rocksdb-before", "rocksdb-after")


# -- windows: one child per run --------------------------------------------------------


def child(pipeline: str, backend: str, records: int) -> dict[str, Any]:
    """One window job in this interpreter (whichever tree it imports)."""
    sys.path.insert(0, str(HERE))
    import windows  # noqa: PLC0415 - the bench's events, source, sink and aggregate

    import streamflow  # noqa: PLC0415
    from streamflow.state import EmbeddedRocksDBStateBackend  # noqa: PLC0415

    source = windows.EventSource(None, records)

    async def job(directory: str) -> tuple[float, int, int]:
        env = streamflow.StreamEnvironment(parallelism=1).set_source_batch_size(windows.BATCH)
        env.enable_checkpointing(1.0, directory=os.path.join(directory, "chk"))
        if backend == "rocksdb":
            env.set_state_backend(EmbeddedRocksDBStateBackend(os.path.join(directory, "db")))
        sink = windows.CountingSink()
        strategy = streamflow.WatermarkStrategy.for_bounded_out_of_orderness(windows.DISORDER)
        keyed = env.from_source(source, name="events", watermark_strategy=strategy).key_by(windows.user_of)
        assigner: Any = (
            windows.TumblingEventTimeWindows.of(windows.MINUTE)
            if pipeline == "tumbling"
            else windows.EventTimeSessionWindows.with_gap(windows.GAP)
        )
        keyed.window(assigner).aggregate(windows.SumAmounts()).uid("windows").sink_to(sink)
        started = time.perf_counter()
        result = await env.execute(f"timers-{pipeline}")
        return time.perf_counter() - started, sink.count, result.checkpoints_completed

    with tempfile.TemporaryDirectory(prefix="sf-timers-") as directory:
        seconds, count, checkpoints = asyncio.run(job(directory))
    return {
        "seconds": seconds,
        "windows": count,
        "checkpoints": checkpoints,
        "maxrss_mib": peak_rss_mib(),
        "tree": os.path.dirname(os.path.dirname(__import__("streamflow").__file__)),
    }


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it starts afresh at exec, so a
    child does not report its parent's peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(tree: Path, pipeline: str, backend: str, records: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(HERE / "rocksdb_timers.py"), "--child", pipeline, backend, str(records)],
        env=env, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"child {pipeline} {backend} in {tree} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["tree"]).resolve() != tree.resolve():
        raise SystemExit(f"the child imported streamflow from {result['tree']}, not {tree}")
    return result


def bench_windows(before_tree: Path, records: int, repeats: int, pipelines: list[str]) -> None:
    trees = {"before": before_tree, "after": REPO}
    for pipeline in pipelines:
        samples: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        for variant in VARIANTS:  # warm-up (file caches, .pyc)
            backend, which = variant.split("-")
            run_child(trees[which], pipeline, backend, min(records, 50_000))
        for round_ in range(repeats):
            order = VARIANTS if round_ % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                backend, which = variant.split("-")
                samples[variant].append(run_child(trees[which], pipeline, backend, records))
        counts = {s["windows"] for runs in samples.values() for s in runs}
        if len(counts) != 1:
            raise SystemExit(f"{pipeline}: the variants emitted different numbers of windows: {samples}")
        print(f"{pipeline}: {records:,} records, {counts.pop():,} windows, {repeats} rounds, medians")
        median = {v: statistics.median(s["seconds"] for s in runs) for v, runs in samples.items()}
        for variant, runs in samples.items():
            rss = max(s["maxrss_mib"] for s in runs)
            checkpoints = statistics.median(s["checkpoints"] for s in runs)
            print(f"  {variant:15} {records / median[variant]:>10,.0f} records/s  ({median[variant]:.2f} s, "
                  f"{checkpoints:.0f} checkpoints, peak RSS {rss:.0f} MiB)")
        for backend in ("heap", "rocksdb"):
            ratio = median[f"{backend}-before"] / median[f"{backend}-after"]
            print(f"  {backend}: after / before (throughput) {ratio:.2f}")
        print(f"  rocksdb-after / heap-after (throughput) {median['heap-after'] / median['rocksdb-after']:.2f}")


# -- store ---------------------------------------------------------------------------


def bench_store(count: int) -> None:
    from streamflow.core.clock import ManualClock  # noqa: PLC0415
    from streamflow.partitioning.keygroups import key_group_for  # noqa: PLC0415
    from streamflow.runtime.timers import TimerQueue  # noqa: PLC0415
    from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend  # noqa: PLC0415

    keys = [f"user-{n}" for n in range(50_000)]
    groups = [key_group_for(key, 128) for key in keys]
    directory = tempfile.mkdtemp(prefix="sf-timer-store-")
    try:
        state = EmbeddedRocksDBStateBackend(directory, memory_budget=64 << 20)

        def store(kind: str) -> Any:
            if kind == "heap":
                return TimerQueue(), None
            backend = state.create_keyed_backend(
                operator_uid="bench", subtask_index=0, max_parallelism=128, key_group_range=range(128),
                clock=ManualClock(),
            )  # fmt: skip
            return backend.timer_store("event"), backend

        def register(timers: Any) -> None:
            for n in range(count):
                index = n % len(keys)
                timers.register(float(count - n), keys[index], groups[index])

        print(f"timer store: {count:,} event-time timers, 50,000 keys, 128 key groups")
        for kind in ("heap", "rocksdb"):
            timers, backend = store(kind)
            started = time.perf_counter()
            register(timers)
            registered = time.perf_counter()
            fired = len(timers.pop_due(float(count)))
            done = time.perf_counter()
            assert fired == count, (kind, fired)
            if backend is not None:
                backend.close()
            timers, backend = store(kind)
            tracemalloc.start()
            register(timers)
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            if backend is not None:
                backend.close()
            print(f"  {kind:8} register {(registered - started) / count * 1e6:5.2f} us/timer, "
                  f"fire {(done - registered) / count * 1e6:5.2f} us/timer, Python memory held {held / 2**20:6.1f} MiB")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def before_tree(commit: str) -> Path:
    """The code of ``commit``, unpacked into a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix="sf-before-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timers", type=int, default=200_000)
    parser.add_argument("--before", default=None, help="the commit to compare with (default: merge-base with main)")
    parser.add_argument("--skip", default="")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pipeline, backend, records = args.child
        print(json.dumps(child(pipeline, backend, int(records))))
        return
    skip = set(filter(None, args.skip.split(",")))
    print(f"machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if "store" not in skip:
        bench_store(args.timers)
    if "windows" not in skip:
        commit = args.before or subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()
        tree = before_tree(commit)
        try:
            print(f"windows: before = {commit[:10]}, after = this checkout")
            bench_windows(tree, args.records, args.repeats, args.pipelines.split(","))
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    print(f"load at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
