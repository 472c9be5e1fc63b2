"""Running a lab experiment: one job per checkpointing mode, in this process, sampled.

For each mode asked for (``aligned``, ``unaligned``, or both one after the other, with
the same options), :func:`run_mode` starts the scenario's job with checkpoints in a
temporary directory, samples it every ``sample_interval`` seconds for ``duration``
seconds (a progress line per sample goes to ``progress``), cancels it and returns what it
saw. :func:`run_lab` then writes the CSV files, plots and report (:mod:`.report`).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from streamflow.config import RestartStrategy
from streamflow.datastream.environment import StreamEnvironment
from streamflow.lab.report import write_results
from streamflow.lab.sampling import CheckpointRow, ModeRun, Sample, checkpoint_rows, sample_from
from streamflow.lab.scenarios import LabOptions, LatencyProbe, Scenario

__all__ = ["MODES", "ModeRun", "run_lab", "run_mode"]

MODES = ("aligned", "unaligned")

Progress = Callable[[str], None]


def _environment(scenario: Scenario, options: LabOptions, mode: str, checkpoints: Path, probe: LatencyProbe) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=options.parallelism)
    unaligned = mode == "unaligned"
    env.enable_checkpointing(
        options.interval,
        directory=checkpoints,
        unaligned=unaligned,
        aligned_timeout=options.aligned_timeout if unaligned else None,
        timeout=max(60.0, options.duration * 2),  # an aligned checkpoint may take long: that is the point
        tolerable_failures=1_000,
    )
    env.set_restart_strategy(RestartStrategy.none())
    env.set_channel_capacity(options.channel_capacity)
    env.set_source_batch_size(options.source_batch)
    scenario.build(env, options, probe)
    return env


async def run_mode(scenario: Scenario, options: LabOptions, mode: str, progress: Progress) -> ModeRun:
    """Run the scenario's job with ``mode`` checkpoints for ``options.duration`` s."""
    run = ModeRun(mode)
    probe = LatencyProbe()
    with tempfile.TemporaryDirectory(prefix=f"streamflow-lab-{mode}-") as directory:
        env = _environment(scenario, options, mode, Path(directory), probe)
        client = env.execute_async(f"lab-{scenario.name}-{mode}")
        registry = client.metrics_registry
        started_wall, started = time.time(), time.monotonic()
        last = started
        try:
            while (elapsed := time.monotonic() - started) < options.duration:
                await asyncio.sleep(max(0.0, min(options.sample_interval, options.duration - elapsed)))
                if client.done:
                    await client.wait()  # raises the failure that ended it
                now = time.monotonic()
                count, latencies = probe.drain()
                reading = registry.sample()
                sample = sample_from(reading, now - started, max(1e-9, now - last), count, latencies)
                last = now
                run.samples.append(sample)
                run.checkpoints = _merge(run.checkpoints, checkpoint_rows(reading.raw, started_wall))
                progress(_progress_line(scenario, mode, options, sample, run.checkpoints))
        finally:
            if not client.done:
                await client.cancel()
            await client.ended()
    return run


def _merge(known: list[CheckpointRow], new: list[CheckpointRow]) -> list[CheckpointRow]:
    """The history keeps the last 20 checkpoints: keep every one ever seen, by id."""
    by_id = {row.checkpoint_id: row for row in known}
    by_id.update({row.checkpoint_id: row for row in new})
    return [by_id[n] for n in sorted(by_id)]


def _progress_line(scenario: Scenario, mode: str, options: LabOptions, sample: Sample, checkpoints: list[CheckpointRow]) -> str:
    done = [c for c in checkpoints if c.status == "completed" and c.duration is not None]
    last = f"{done[-1].duration:.2f} s" if done else "-"
    p99 = f"{sample.latency_p99 * 1000:.0f} ms" if sample.latency_p99 is not None else "-"
    worst = max(sample.backpressure.items(), key=lambda kv: kv[1], default=("-", 0.0))
    return (
        f"[{scenario.name} {mode} {sample.elapsed:5.1f}/{options.duration:.0f} s] {sample.throughput:7.0f} records/s, "
        f"latency p99 {p99}, checkpoints {len(done)} (last {last}), most backpressured {worst[0]} "
        f"{worst[1]:.0f} ms/s"
    )


async def run_lab(
    scenario: Scenario, options: LabOptions, modes: tuple[str, ...], out: Path, progress: Progress
) -> list[ModeRun]:
    """Run each of ``modes`` in turn, then write the results into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    runs = [await run_mode(scenario, options, mode, progress) for mode in modes]
    for path in write_results(scenario, options, runs, out):
        progress(f"wrote {path}")
    return runs
