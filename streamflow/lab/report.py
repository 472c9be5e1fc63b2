"""Writing a lab experiment down: CSV time series, PNG plots and a Markdown report.

Files in the output folder:

- ``timeseries.csv``: a row per mode and sample: throughput, latency p50/p99 (ms),
  then ``backpressure:<vertex>`` (ms/s) and ``fill:<up> -> <down>`` (0..1) columns;
- ``checkpoints.csv``: a row per mode and finished checkpoint;
- ``throughput.png``, ``latency.png``, ``backpressure.png``, ``channel_fill.png``,
  ``checkpoints.png``: the modes side by side (or overlaid where one axis fits both);
- ``report.md``: the scenario, its options, a table per mode and the plots.

The summary skips the first seconds (``warm-up``: a fifth of the run, at most 5 s), while
the channels fill up.
"""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamflow.lab.sampling import ModeRun, percentile
from streamflow.lab.scenarios import LabOptions, Scenario

__all__ = ["summarise", "write_results"]

_MS = 1000.0


def warm_up(options: LabOptions) -> float:
    return min(5.0, options.duration / 5)


def summarise(run: ModeRun, options: LabOptions) -> dict[str, Any]:
    """The numbers of one mode's run the report shows (after the warm-up)."""
    steady = [s for s in run.samples if s.elapsed > warm_up(options)] or run.samples
    durations = [c.duration for c in run.checkpoints if c.status == "completed" and c.duration is not None]
    p50s = [s.latency_p50 for s in steady if s.latency_p50 is not None]
    p99s = [s.latency_p99 for s in steady if s.latency_p99 is not None]
    completed = [c for c in run.checkpoints if c.status == "completed"]
    return {
        "throughput": sum(s.throughput for s in steady) / len(steady) if steady else 0.0,
        "latency_p50_ms": _ms(percentile(p50s, 0.5)),
        "latency_p99_ms": _ms(percentile(p99s, 0.5)),
        "checkpoints_completed": len(completed),
        "checkpoints_aborted": sum(1 for c in run.checkpoints if c.status == "aborted"),
        "checkpoint_p50_s": percentile(durations, 0.5),
        "checkpoint_p90_s": percentile(durations, 0.9),
        "checkpoint_max_s": max(durations, default=None),
        "persisted_bytes_mean": sum(c.persisted_bytes for c in completed) / len(completed) if completed else 0.0,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * _MS


def write_results(scenario: Scenario, options: LabOptions, runs: list[ModeRun], out: Path) -> list[Path]:
    """Write every file of the module docstring into ``out``; returns their paths."""
    written = [_timeseries_csv(runs, out / "timeseries.csv"), _checkpoints_csv(runs, out / "checkpoints.csv")]
    written += _plots(runs, out)
    written.append(_report(scenario, options, runs, written, out / "report.md"))
    return written


def _timeseries_csv(runs: list[ModeRun], path: Path) -> Path:
    vertices = sorted({v for run in runs for s in run.samples for v in s.backpressure})
    edges = sorted({e for run in runs for s in run.samples for e in s.fill})
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["mode", "elapsed_s", "throughput_records_per_s", "latency_p50_ms", "latency_p99_ms"]
            + [f"backpressure:{v}" for v in vertices] + [f"fill:{e}" for e in edges]
        )
        for run in runs:
            for s in run.samples:
                writer.writerow(
                    [run.mode, f"{s.elapsed:.3f}", f"{s.throughput:.1f}", _cell(_ms(s.latency_p50)),
                     _cell(_ms(s.latency_p99))]
                    + [f"{s.backpressure.get(v, 0.0):.1f}" for v in vertices]
                    + [f"{s.fill.get(e, 0.0):.3f}" for e in edges]
                )  # fmt: skip
    return path


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _checkpoints_csv(runs: list[ModeRun], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["mode", "checkpoint_id", "status", "triggered_s", "duration_s", "size_bytes", "persisted_bytes",
             "unaligned_subtasks"]
        )  # fmt: skip
        for run in runs:
            for c in run.checkpoints:
                row = asdict(c)
                writer.writerow(
                    [run.mode, row["checkpoint_id"], row["status"], f"{row['triggered']:.3f}",
                     "" if c.duration is None else f"{c.duration:.3f}", row["size"], row["persisted_bytes"],
                     row["unaligned_subtasks"]]
                )  # fmt: skip
    return path


def _plots(runs: list[ModeRun], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []

    def save(figure: Any, name: str) -> None:
        figure.tight_layout()
        path = out / name
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)

    figure, axis = plt.subplots(figsize=(8, 3.5))
    for run in runs:
        axis.plot([s.elapsed for s in run.samples], [s.throughput for s in run.samples], label=run.mode)
    _label(axis, "records per second at the sink", "throughput")
    save(figure, "throughput.png")

    figure, axis = plt.subplots(figsize=(8, 3.5))
    for run in runs:
        for which, style in (("latency_p50", "-"), ("latency_p99", "--")):
            points = [(s.elapsed, getattr(s, which)) for s in run.samples if getattr(s, which) is not None]
            axis.plot([t for t, _ in points], [v for _, v in points], style, label=f"{run.mode} {which[-3:]}")
    axis.set_yscale("log")
    _label(axis, "seconds, end to end (log)", "latency p50 / p99")
    save(figure, "latency.png")

    for name, attribute, unit, title, top in (
        ("backpressure.png", "backpressure", "ms per second", "backpressure per task", 1050.0),
        ("channel_fill.png", "fill", "channel usage (1 = full)", "channel fill per edge", 1.05),
    ):
        figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.5), sharey=True, squeeze=False)
        for axis, run in zip(axes[0], runs):
            keys = sorted({k for s in run.samples for k in getattr(s, attribute)})
            for key in keys:
                axis.plot([s.elapsed for s in run.samples], [getattr(s, attribute).get(key, 0.0) for s in run.samples],
                          label=key)  # fmt: skip
            axis.set_ylim(0.0, top)
            _label(axis, unit, f"{title}: {run.mode}")
        save(figure, name)

    figure, axis = plt.subplots(figsize=(8, 3.5))
    for run in runs:
        done = [c for c in run.checkpoints if c.status == "completed" and c.duration is not None]
        axis.plot([c.triggered for c in done], [c.duration or 0.0 for c in done], "o-", label=run.mode)
    _label(axis, "seconds, trigger to complete", "checkpoint duration (by trigger time)")
    save(figure, "checkpoints.png")
    return written


def _label(axis: Any, unit: str, title: str) -> None:
    axis.set_title(title)
    axis.set_xlabel("seconds since the job started")
    axis.set_ylabel(unit)
    axis.grid(True, alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize="small")


def _report(scenario: Scenario, options: LabOptions, runs: list[ModeRun], files: list[Path], path: Path) -> Path:
    summaries = {run.mode: summarise(run, options) for run in runs}
    rows = [
        ("throughput (records/s)", "throughput", "{:.0f}"),
        ("latency p50 (ms)", "latency_p50_ms", "{:.0f}"),
        ("latency p99 (ms)", "latency_p99_ms", "{:.0f}"),
        ("checkpoints completed", "checkpoints_completed", "{}"),
        ("checkpoints aborted", "checkpoints_aborted", "{}"),
        ("checkpoint duration p50 (s)", "checkpoint_p50_s", "{:.2f}"),
        ("checkpoint duration p90 (s)", "checkpoint_p90_s", "{:.2f}"),
        ("checkpoint duration max (s)", "checkpoint_max_s", "{:.2f}"),
        ("in-flight bytes persisted per checkpoint", "persisted_bytes_mean", "{:.0f}"),
    ]
    modes = [run.mode for run in runs]
    lines = [
        f"# Lab: {scenario.name}",
        "",
        f"{scenario.summary[:1].upper()}{scenario.summary[1:]}.",
        "",
        "Options: " + ", ".join(f"{k}={v}" for k, v in asdict(options).items()) + ".",
        f"Numbers after a warm-up of {warm_up(options):.0f} s; latency: the median over the samples of each "
        "sample's percentile.",
        "",
        "| | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for title, key, form in rows:
        cells = [form.format(summaries[m][key]) if summaries[m][key] is not None else "-" for m in modes]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if {"aligned", "unaligned"} <= set(summaries) and summaries["aligned"]["throughput"]:
        ratio = summaries["unaligned"]["throughput"] / summaries["aligned"]["throughput"]
        lines += ["", f"Throughput unaligned / aligned: {ratio:.2f}."]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in files if p.suffix == ".png"]
    lines += ["", "Data: " + ", ".join(f"[{p.name}]({p.name})" for p in files if p.suffix == ".csv") + "."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
