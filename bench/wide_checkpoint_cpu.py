"""CPU time of pipeline (b) over 1 M users with and without periodic checkpoints: what
the job's own process spends (getrusage, user + system, with its minor page faults) and
what forked snapshot children spend, one configuration per process run. CPU time says
what a checkpoint costs even on a machine too busy for wall-clock ratios.

    python3 bench/wide_checkpoint_cpu.py --mode none      # no checkpoints
    python3 bench/wide_checkpoint_cpu.py --mode fork      # checkpoints, snapshots forked (the default)
    python3 bench/wide_checkpoint_cpu.py --mode inline    # checkpoints, snapshots pickled in the task
    python3 bench/wide_checkpoint_cpu.py --mode fork --interval 10 --records 8000000

Two moments are reported: when the last record reached the sink (the steady state: the
cost of periodic checkpoints) and when the job returned. A bounded job with checkpoints
ends with a final checkpoint, after the one in progress, so a short run at a million keys
also measures that wait (a fork and a pickle of every key, twice at worst), which no
periodic checkpoint costs a long-running job.
"""

from __future__ import annotations

import argparse
import gc
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402 - the bench's records, source, sink and functions

import streamflow  # noqa: E402
from streamflow.state import HashMapStateBackend  # noqa: E402


class LastRecordSink(throughput.CountingSink):
    """Counts records, and notes wall and CPU time when the last one arrives."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.last: tuple[float, resource.struct_rusage] | None = None

    def create_writer(self, ctx: Any) -> LastRecordWriter:
        return LastRecordWriter(self)


class LastRecordWriter(throughput.CountingWriter):
    def __init__(self, sink: LastRecordSink) -> None:
        super().__init__(sink)
        self._last_sink = sink

    async def write(self, records: list[Any]) -> None:
        await super().write(records)
        sink = self._last_sink
        if sink.last is None and sink.count >= sink.expected:
            sink.last = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF))


def _cpu(after: resource.struct_rusage, before: resource.struct_rusage) -> float:
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


async def run(records: list[bytes], mode: str, interval: float, directory: str) -> None:
    env = streamflow.StreamEnvironment(parallelism=1).set_source_batch_size(1000)
    if mode == "inline":
        env.set_state_backend(HashMapStateBackend(fork_snapshots_from=None))
    if mode != "none":
        env.enable_checkpointing(interval, directory=directory)
    sink = LastRecordSink(len(records))
    source = throughput.BenchSource(records, len(records))
    stream = env.from_source(source, name="bench-source").map(throughput.parse)
    stream.key_by(throughput.user_of).reduce(throughput.add_amount).uid("sum-per-user").sink_to(sink)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = await env.execute("bench-wide")
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if sink.count != len(records) or sink.last is None:
        raise RuntimeError(f"counted {sink.count} of {len(records)} records")
    last_at, at_last = sink.last
    label = mode if mode == "none" else f"{mode} {interval:g}s"
    print(f"{label:>10}: to the last record {len(records) / (last_at - started):>9,.0f} records/s, "
          f"job process {_cpu(at_last, before):5.1f} s CPU "
          f"(system {at_last.ru_stime - before.ru_stime:4.1f} s, {at_last.ru_minflt - before.ru_minflt:,} minor faults)"
          f"\n{'':>12}to the job's end {len(records) / elapsed:>9,.0f} records/s, "
          f"{result.checkpoints_completed:>3} checkpoints, job process {_cpu(after, before):5.1f} s CPU, "
          f"snapshot children {children.ru_utime + children.ru_stime:4.1f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("none", "fork", "inline"), required=True)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between checkpoints")
    args = parser.parse_args()
    records = throughput.make_records(args.records, throughput.WIDE_USERS)
    gc.freeze()  # the input, held all run (no streaming job holds its input): out of the cyclic GC's walks
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as directory:
        asyncio.run(run(records, args.mode, args.interval, directory))


if __name__ == "__main__":
    main()
