"""State keeps its exact types across a SIGKILL: a job with tuples (NamedTuples, frozensets,
Decimals, dataclasses...) in every kind of state is killed mid-run with SIGKILL, resumed
in a new process from its latest checkpoint, and must commit exactly the lines of a run
never killed. Every line shows the repr of the state it found, so a tuple restored as a
list, a str map key or a lost timer would show (see ``typed_state_job.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import typed_state_job
from streamflow.connectors import read_committed_lines

pytestmark = pytest.mark.crash

JOB = Path(typed_state_job.__file__).resolve()
TIMEOUT = 60.0


def start(base: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_CRASH")}
    return subprocess.Popen(
        [sys.executable, str(JOB), "--out", str(base / "out"), "--checkpoints", str(base / "chk")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=base,
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> dict[str, object]:
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, f"exit {process.returncode}\n{stderr[-4000:]}"
    summary: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return summary


def completed_checkpoints(directory: Path) -> list[int]:
    if not directory.exists():
        return []
    return sorted(int(d.name[4:]) for d in directory.glob("chk-*") if (d / "_metadata").exists())


def test_typed_state_is_exact_after_a_sigkill_and_restart(tmp_path: Path) -> None:
    reference_base, killed_base = tmp_path / "reference", tmp_path / "killed"
    reference_base.mkdir()
    killed_base.mkdir()
    reference = start(reference_base)
    victim = start(killed_base)
    deadline = time.monotonic() + TIMEOUT
    while not [n for n in completed_checkpoints(killed_base / "chk") if n >= 3]:
        assert victim.poll() is None, f"the job ended before it could be killed: {victim.communicate()}"
        assert time.monotonic() < deadline, "no third checkpoint to kill after"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=TIMEOUT)
    assert victim.returncode == -signal.SIGKILL
    killed_at = completed_checkpoints(killed_base / "chk")[-1]

    resumed = finish(start(killed_base))
    expected = finish(reference)
    assert expected["restored_from"] is None
    assert isinstance(resumed["restored_from"], int) and resumed["restored_from"] >= killed_at

    lines = read_committed_lines(killed_base / "out")
    reference_lines = read_committed_lines(reference_base / "out")
    assert len(reference_lines) == typed_state_job.EVENTS + len(typed_state_job.KEYS)
    assert Counter(lines) == Counter(reference_lines)  # each line once: nothing lost, nothing twice
    finals = sorted(line for line in lines if line.startswith("final "))
    assert len(finals) == len(typed_state_job.KEYS)
    assert all("Acc(total=" in line and "frozenset({" in line and "Decimal(" in line for line in finals)
