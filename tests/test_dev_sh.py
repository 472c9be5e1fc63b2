"""README's commands from nothing (a new virtualenv): ``./dev.sh main`` shows the job's
output, not pip's or setuptools' (no notices, no editable-install warning banner);
``./dev.sh test`` after it reinstalls nothing and shows pytest alone; a failed install
shows what pip said."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUP_NOISE = ("BuildBackendWarning", "Editable installation", "[notice]", "Requirement already satisfied",
               "Successfully installed", "Obtaining file://", "WARNING: ")


def dev_sh(args: list[str], venv: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STREAMFLOW_CRASH"}
    env.update(STREAMFLOW_VENV=str(venv), **extra)
    return subprocess.run(["./dev.sh", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=110)


def test_dev_sh_main_from_nothing_prints_the_job_and_no_setup_output(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    first = dev_sh(["main"], venv)
    assert first.returncode == 0, first.stderr
    assert first.stdout.rstrip().splitlines()[-1].startswith("CHECK OK"), first.stdout
    shown = first.stdout + first.stderr
    assert [noise for noise in SETUP_NOISE if noise in shown] == [], shown
    log = (venv / "setup.log").read_text()
    assert "Successfully installed" in log and "streamflow" in log  # it went to the log instead

    (venv / "setup.log").unlink()
    tests = dev_sh(["test", "tests/unit/runtime/test_runtime_alignment.py", "-q", "-p", "no:cacheprovider"], venv)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert tests.stdout.startswith("...") and tests.stderr == ""
    assert not (venv / "setup.log").exists()  # pyproject.toml unchanged: nothing reinstalled


def test_a_failed_install_shows_pip_output_and_fails(tmp_path: Path) -> None:
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    done = dev_sh(["main"], tmp_path / "venv", PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty))
    assert done.returncode == 1
    assert "No matching distribution found" in done.stderr  # pip's own words
    assert f"dev.sh: installing streamflow and its Python packages into {tmp_path / 'venv'} failed" in done.stderr
    assert done.stdout == ""  # the job never ran
