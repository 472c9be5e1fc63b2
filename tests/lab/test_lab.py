"""`streamflow lab`: every scenario runs briefly and writes its CSV files, valid PNG plots
and a report; the command line lists the scenarios and runs one."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image
import pytest

from streamflow.cli import main
from streamflow.lab import SCENARIOS, run_lab

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("throughput.png", "latency.png", "backpressure.png", "channel_fill.png", "checkpoints.png")


def check_outputs(out: Path, modes: tuple[str, ...]) -> list[dict[str, str]]:
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100, name
    rows = list(csv.DictReader((out / "timeseries.csv").read_text(encoding="utf-8").splitlines()))
    assert {r["mode"] for r in rows} == set(modes)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert all(f"| {mode}" in report or f" {mode} |" in report for mode in modes), report
    assert all(f"]({name})" in report for name in PLOTS)
    return rows


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - {"slow-keyed-stage"}))
async def test_each_scenario_runs_briefly_and_writes_its_files(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    options = scenario.options(duration=1.5, sample_interval=0.5, interval=0.3)
    lines: list[str] = []
    runs = await run_lab(scenario, options, ("unaligned",), tmp_path, lines.append)
    rows = check_outputs(tmp_path, ("unaligned",))
    assert len(rows) == len(runs[0].samples) >= 2
    assert sum(float(r["throughput_records_per_s"]) for r in rows) > 0, rows  # records reached the sink
    assert any(line.startswith(f"[{name} unaligned") for line in lines)  # progress, a line per sample


async def test_aligned_and_unaligned_side_by_side(tmp_path: Path) -> None:
    scenario = SCENARIOS["slow-keyed-stage"]
    options = scenario.options(duration=2.5, sample_interval=0.5, interval=0.3)
    runs = await run_lab(scenario, options, ("aligned", "unaligned"), tmp_path, lambda line: None)
    check_outputs(tmp_path, ("aligned", "unaligned"))
    checkpoints = list(csv.DictReader((tmp_path / "checkpoints.csv").read_text(encoding="utf-8").splitlines()))
    unaligned = [c for c in checkpoints if c["mode"] == "unaligned" and c["status"] == "completed"]
    assert unaligned and any(int(c["persisted_bytes"]) > 0 for c in unaligned), checkpoints
    assert all(int(c["persisted_bytes"]) == 0 for c in checkpoints if c["mode"] == "aligned")
    assert [r.mode for r in runs] == ["aligned", "unaligned"]


def test_the_command_lists_and_runs_a_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in SCENARIOS)
    out = tmp_path / "lab"
    code = main(["lab", "slow-sink", "--checkpoints", "aligned", "--duration", "1", "--sample-interval", "0.5",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / "report.md")
    assert "[slow-sink aligned" in captured.err
    check_outputs(out, ("aligned",))
