"""CPU time of pipeline (b) over 1 M users with and without checkpoints every second:
what the job's own process spends (getrusage, user + system, with its minor page faults)
and what forked snapshot children spend, one configuration per process run. CPU time
says what a checkpoint costs even on a machine too busy for wall-clock ratios.

    python3 bench/wide_checkpoint_cpu.py --mode none      # no checkpoints
    python3 bench/wide_checkpoint_cpu.py --mode fork      # checkpoints, snapshots forked (the default)
    python3 bench/wide_checkpoint_cpu.py --mode inline    # checkpoints, snapshots pickled in the task
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402 - the bench's records, source, sink and functions

import streamflow  # noqa: E402
from streamflow.state import HashMapStateBackend  # noqa: E402


async def run(records: list[bytes], mode: str, directory: str) -> None:
    env = streamflow.StreamEnvironment(parallelism=1).set_source_batch_size(1000)
    if mode == "inline":
        env.set_state_backend(HashMapStateBackend(fork_snapshots_from=None))
    if mode != "none":
        env.enable_checkpointing(1.0, directory=directory)
    sink = throughput.CountingSink()
    source = throughput.BenchSource(records, len(records))
    stream = env.from_source(source, name="bench-source").map(throughput.parse)
    stream.key_by(throughput.user_of).reduce(throughput.add_amount).uid("sum-per-user").sink_to(sink)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = await env.execute("bench-wide")
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if sink.count != len(records):
        raise RuntimeError(f"counted {sink.count} of {len(records)} records")
    own = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"{mode:>6}: {len(records) / elapsed:>9,.0f} records/s, {result.checkpoints_completed:>3} checkpoints, "
          f"job process {own:5.1f} s CPU (system {after.ru_stime - before.ru_stime:4.1f} s, "
          f"{after.ru_minflt - before.ru_minflt:,} minor faults), "
          f"snapshot children {children.ru_utime + children.ru_stime:4.1f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("none", "fork", "inline"), required=True)
    parser.add_argument("--records", type=int, default=2_000_000)
    args = parser.parse_args()
    records = throughput.make_records(args.records, throughput.WIDE_USERS)
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as directory:
        asyncio.run(run(records, args.mode, directory))


if __name__ == "__main__":
    main()
