"""Savepoints and the command line with real processes: ``streamflow run`` jobs, the
``list / status / savepoint / stop / cancel / inspect`` commands, a real 127.0.0.1 socket.

Every test uses its own ``STREAMFLOW_HOME`` (the job registry) and stops what it starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from savepoint_jobs import FIRST, job, wait_for
from streamflow.connectors.file_sink import ExactlyOnceFileSink
from streamflow.control import JobEntry, JobRegistry

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.socket_wordcount import JobProcess, LineServer  # noqa: E402


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {
        **os.environ,
        "STREAMFLOW_HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    environment.pop("STREAMFLOW_CRASH", None)
    return environment


@pytest.fixture
def server() -> Iterator[LineServer]:
    line_server = LineServer()
    yield line_server
    line_server.close()


def cli(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamflow.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def ok(args: list[str], env: dict[str, str]) -> str:
    done = cli(args, env)
    assert done.returncode == 0, f"streamflow {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wordcount(tmp_path: Path, server: LineServer, env: dict[str, str], *extra: str) -> JobProcess:
    args = ["examples.socket_wordcount:build", "--job-name", "wordcount", "--checkpoint-interval", "0.5",
            "--checkpoint-dir", str(tmp_path / "checkpoints"), *extra]
    return JobProcess(args, {**env, "WORDCOUNT_PORT": str(server.port)})


# -- the walk-through -------------------------------------------------------------------------


def test_word_count_stops_with_a_savepoint_and_resumes_from_it_at_another_parallelism(
    tmp_path: Path, server: LineServer, env: dict[str, str]
) -> None:
    first = wordcount(tmp_path, server, env, "-p", "2")
    second = None
    try:
        server.accept()
        server.send("hello flink")
        first.wait_for_counts({"hello": 1, "flink": 1})

        jobs = json.loads(ok(["list", "--json"], env))
        assert [(j["name"], j["status"], j["pid"]) for j in jobs] == [("wordcount", "running", first.process.pid)]
        status = ok(["status", "wordcount"], env)
        assert f"({'wordcount'}), pid {first.process.pid}" in status and "status running, attempt 1" in status
        assert "checkpoints:" in status and "BACKPRESSURED" in status and "lines[0]" in status

        savepoint = ok(["stop", "wordcount", "--savepoint", str(tmp_path / "savepoints")], env).strip()
        summary = first.finish()
        assert first.process.returncode == 0, first.describe()
        assert summary["status"] == "stopped" and summary["savepoint"] == savepoint
        assert Path(savepoint).parent == tmp_path / "savepoints"
        assert ok(["list"], env).strip() == "no running jobs"

        second = wordcount(tmp_path, server, env, "-p", "3", "--from-savepoint", savepoint)
        server.accept()
        server.send("hello world", "hello flink")
        assert second.wait_for_counts({"hello": 3, "flink": 2, "world": 1}) == {"hello": 3, "flink": 2, "world": 1}
        status = ok(["status", "wordcount", "--json"], env)
        assert json.loads(status)["metrics"]["checkpoints"]["restored_path"] == savepoint

        assert ok(["cancel", "wordcount"], env).strip() == "job wordcount: cancelled"
        assert second.finish()["status"] == "cancelled"
        assert second.process.returncode == 3
        assert not list((tmp_path / "home" / "jobs").iterdir())  # unregistered, socket removed
    finally:
        for process in (first, second):
            if process is not None:
                process.stop_process()


def test_a_savepoint_of_a_running_job_through_the_command_line(
    tmp_path: Path, server: LineServer, env: dict[str, str]
) -> None:
    running = wordcount(tmp_path, server, env, "--savepoint-dir", str(tmp_path / "default-savepoints"))
    try:
        server.accept()
        server.send("to be or not to be")
        running.wait_for_counts({"to": 2, "be": 2})
        job_id = json.loads(ok(["list", "--json"], env))[0]["job_id"]
        explicit = ok(["savepoint", job_id[:-3], str(tmp_path / "sp")], env).strip()  # a unique id prefix
        default = ok(["savepoint", "wordcount"], env).strip()
        assert Path(explicit).parent == tmp_path / "sp"
        assert Path(default).parent == tmp_path / "default-savepoints"
        described = json.loads(ok(["inspect", default, "--json"], env))
        count = next(op for op in described["operators"] if op["uid"] == "count")
        assert sum(s["keyed_states"][0]["keys"] for s in count["subtasks"] if s["file"]) == 4  # to be or not
        server.send("to")
        running.wait_for_counts({"to": 3})  # the job runs on after its savepoints
    finally:
        running.stop_process()


def test_sigterm_cancels_the_job_and_removes_its_registry_entry(
    tmp_path: Path, server: LineServer, env: dict[str, str]
) -> None:
    running = wordcount(tmp_path, server, env)
    try:
        server.accept()
        server.send("one")
        running.wait_for_counts({"one": 1})
        assert len(JobRegistry(tmp_path / "home").entries()) == 1
        running.process.terminate()
        assert running.finish()["status"] == "cancelled" and running.process.returncode == 3
        assert not list((tmp_path / "home" / "jobs").iterdir())
    finally:
        running.stop_process()


# -- inspect ----------------------------------------------------------------------------------


async def test_inspect_prints_operators_states_key_groups_splits_and_transactions(
    tmp_path: Path, env: dict[str, str]
) -> None:
    client = job(FIRST, tmp_path / "chk", ExactlyOnceFileSink(tmp_path / "out"), parallelism=2).execute_async("words")
    await wait_for(
        lambda: sum(v["records_in"] for k, v in client.metrics()["operators"].items() if k.startswith("out[")) == 4,
        "the sink to get every record",
    )
    savepoint = await client.trigger_savepoint(tmp_path / "savepoints")
    await client.cancel()

    text = ok(["inspect", str(savepoint)], env)
    assert text.startswith(f"savepoint {savepoint}\n  job 'words', checkpoint 1, taken ")
    assert "format version 1, 3 operator(s) with state" in text
    assert "operator 'count'  parallelism 2, max parallelism 128" in text
    assert "key groups 0-63" in text and "key groups 64-127" in text
    assert "keyed state 'count' (value): " in text
    assert "operator 'words'  parallelism 1" in text and "source splits: 1\n        {'next': 4}" in text
    assert "sink pending transactions: 1\n        checkpoint 1: {" in text

    described = json.loads(ok(["inspect", str(savepoint), "--json"], env))
    assert (described["kind"], described["checkpoint_id"], described["format_version"]) == ("savepoint", 1, 1)
    count = {op["uid"]: op for op in described["operators"]}["count"]
    keys = sum(sub["keyed_states"][0]["keys"] for sub in count["subtasks"] if sub["file"])
    assert keys == 3  # hello, flink, state
    assert [sub["key_groups"] for sub in count["subtasks"]] == [[0, 63], [64, 127]]
    # the job's checkpoint directory works too: its latest checkpoint
    assert ok(["inspect", str(tmp_path / "chk")], env).startswith(f"checkpoint {tmp_path / 'chk' / 'chk-1'}\n")


def test_inspect_of_a_path_without_a_snapshot_says_what_to_pass(tmp_path: Path, env: dict[str, str]) -> None:
    done = cli(["inspect", str(tmp_path)], env)
    assert done.returncode == 2
    assert "neither a savepoint, nor a checkpoint, nor a job's checkpoint directory" in done.stderr


# -- run --from-savepoint ---------------------------------------------------------------------


async def test_run_refuses_unmatched_state_and_drops_it_when_allowed(tmp_path: Path, env: dict[str, str]) -> None:
    from streamflow.connectors.debug import CollectSink

    client = job(FIRST, tmp_path / "chk", CollectSink("cli-unmatched")).execute_async("words")
    await wait_for(lambda: len(CollectSink.results("cli-unmatched")) == 4, "the words")
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoints")
    await client.wait()
    CollectSink.clear("cli-unmatched")
    (tmp_path / "renamed.py").write_text(
        "from streamflow.connectors import CollectionSource, PrintSink\n"
        "def build(env):\n"
        "    (env.from_source(CollectionSource(['a', 'b']), name='words').uid('words-v2')\n"
        "        .key_by(lambda w: w).reduce(lambda a, b: a).uid('count-v2')\n"
        "        .sink_to(PrintSink()).uid('out'))\n"
    )
    args = ["run", "renamed:build", "--checkpoint-interval", "5", "--checkpoint-dir", str(tmp_path / "chk2"),
            "--from-savepoint", str(savepoint)]

    refused = cli(args, env, cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "holds state for 2 operator uid(s) that this job does not have: 'count', 'words'" in refused.stderr
    assert "--allow-non-restored-state" in refused.stderr

    allowed = cli([*args, "--allow-non-restored-state"], env, cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert "holds state of operator uid 'count', which this job does not have; that state is dropped" in allowed.stderr
    summary = json.loads(allowed.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["restored_from"] == 1


# -- the registry -----------------------------------------------------------------------------


def test_stale_registry_entries_are_ignored_and_removed(tmp_path: Path, env: dict[str, str]) -> None:
    registry = JobRegistry(tmp_path / "home")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    registry.register(JobEntry(job_id="dead-00000001", name="dead", pid=dead_pid, socket=str(tmp_path / "d.sock"),
                               started_at=1.0))
    # a live pid (this test) whose socket does not answer: the pid was reused, or the job hangs
    registry.register(JobEntry(job_id="mute-00000002", name="mute", pid=os.getpid(), socket=str(tmp_path / "m.sock"),
                               started_at=2.0))
    (registry.directory / "garbage.json").write_text("{not json")

    assert ok(["list"], env).strip() == "no running jobs"
    assert sorted(p.name for p in registry.directory.iterdir()) == []
    registry.register(JobEntry(job_id="mute-00000002", name="mute", pid=os.getpid(), socket=str(tmp_path / "m.sock"),
                               started_at=2.0))
    done = cli(["status", "mute"], env)
    assert done.returncode == 1 and "job mute-00000002" in done.stderr and "does not answer" in done.stderr
    assert registry.entries() == []
    done = cli(["stop", "nothing-here"], env)
    assert done.returncode == 2 and "no running job 'nothing-here'" in done.stderr
