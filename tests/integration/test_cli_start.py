"""Starting jobs from the command line: ``python -m streamflow``, savepoints named by
``file://`` URIs, and a start that fails leaving nothing registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from savepoint_jobs import FIRST, job, wait_for
from streamflow import StreamEnvironment
from streamflow.cli import main
from streamflow.connectors.debug import CollectSink
from streamflow.control import ControlServer, JobEntry, JobRegistry
from streamflow.errors import ConfigError

BUILD = (
    "from streamflow.connectors import CollectionSource, PrintSink\n"
    "def build(env):\n"
    "    (env.from_source(CollectionSource(['a', 'b']), name='words').uid('words-v2')\n"
    "        .key_by(lambda w: w).reduce(lambda a, b: a).uid('count-v2')\n"
    "        .sink_to(PrintSink()).uid('out'))\n"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {**os.environ, "STREAMFLOW_HOME": str(tmp_path / "home")}
    environment.pop("STREAMFLOW_CRASH", None)
    return environment


def python_m_streamflow(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamflow", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


async def savepoint_in(directory: Path) -> Path:
    """A savepoint of the word-count job (uids words, count, out) under ``directory``."""
    out = f"cli-start::{directory.name}"
    client = job(FIRST, directory.parent / "chk", CollectSink(out)).execute_async("words")
    await wait_for(lambda: len(CollectSink.results(out)) == len(FIRST), "the words to be counted")
    path = await client.stop_with_savepoint(directory)
    await client.wait()
    CollectSink.clear(out)
    return path


def test_python_dash_m_streamflow_is_the_command_line(tmp_path: Path, env: dict[str, str]) -> None:
    done = python_m_streamflow(["--help"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: streamflow ") and "inspect" in done.stdout
    done = python_m_streamflow(["list"], env, tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "no running jobs")


async def test_inspect_and_run_take_a_file_uri_with_escapes(tmp_path: Path, env: dict[str, str]) -> None:
    savepoint = await savepoint_in(tmp_path / "my savepoints 100%")
    uri = savepoint.as_uri()
    assert "%20" in uri and "%25" in uri  # the escapes really are decoded below

    described = python_m_streamflow(["inspect", uri, "--json"], env, tmp_path)
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["path"] == str(savepoint)

    (tmp_path / "renamed.py").write_text(BUILD)
    run = ["run", "renamed:build", "--checkpoint-interval", "5", "--checkpoint-dir", str(tmp_path / "chk2"),
           "--from-savepoint", uri]
    refused = python_m_streamflow(run, env, tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert f"the savepoint {str(savepoint)!r} holds state for 2 operator uid(s)" in refused.stderr
    allowed = python_m_streamflow([*run, "--allow-non-restored-state"], env, tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    summary = json.loads(allowed.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["restored_from"] == 1


@pytest.fixture
def registrations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[JobEntry]:
    """Every entry registered in this test (the registry is the test's own)."""
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    seen: list[JobEntry] = []
    register = JobRegistry.register

    def recording(self: JobRegistry, entry: JobEntry) -> None:
        seen.append(entry)
        register(self, entry)

    monkeypatch.setattr(JobRegistry, "register", recording)
    return seen


@pytest.mark.parametrize(
    ("source", "exit_code", "message"),
    [
        ("missing", 2, "no savepoint or checkpoint at "),
        ("s3://bucket/savepoint-1", 2, "savepoint path 's3://bucket/savepoint-1' is a 's3' URI; streamflow keeps"),
        ("file://otherhost/sp", 2, "names host 'otherhost'; a file URI must be local"),
    ],
)
def test_a_run_that_cannot_start_from_its_savepoint_is_never_registered(
    source: str, exit_code: int, message: str, tmp_path: Path, registrations: list[JobEntry],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "start_fails.py").write_text(BUILD)
    path = str(tmp_path / source) if source == "missing" else source
    code = main(["run", "start_fails:build", "--checkpoint-dir", str(tmp_path / "chk"), "--from-savepoint", path])
    assert code == exit_code
    assert message in capsys.readouterr().err
    assert registrations == []


def test_a_build_that_fails_is_never_registered(
    tmp_path: Path, registrations: list[JobEntry], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "build_fails.py").write_text("def build(env):\n    env.from_source(object())\n")
    assert main(["run", "build_fails:build"]) == 2
    assert "from_source needs a Source" in capsys.readouterr().err
    assert registrations == []


async def test_a_control_server_registers_a_job_only_once_it_started(
    tmp_path: Path, registrations: list[JobEntry]
) -> None:
    env = StreamEnvironment()
    env.from_collection([1, 2]).sink_to(CollectSink("cli-start::never"))
    client = env.execute_async("never", from_savepoint=tmp_path / "nothing-here")
    with pytest.raises(ConfigError, match="no savepoint or checkpoint at"):
        async with ControlServer(client):
            pass
    assert registrations == [] and client.status == "failed"

    savepoint = await savepoint_in(tmp_path / "savepoints")
    env = StreamEnvironment()
    env.from_collection(["x"]).uid("words-v2").sink_to(CollectSink("cli-start::resumed")).uid("out")
    client = env.execute_async("resumed", from_savepoint=savepoint.as_uri(), allow_non_restored_state=True)
    async with ControlServer(client) as server:
        assert registrations == [server.entry]
        result = await client.wait()
    assert result.restored_from == 1
    CollectSink.clear("cli-start::resumed")
