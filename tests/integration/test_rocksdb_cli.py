"""``streamflow run --state-backend rocksdb`` (with ``--state-dir`` and
``--rocksdb-memory``), the settings it refuses before anything runs, and ``streamflow
inspect`` of an incremental checkpoint: its files, sizes and what it shares; the heap
backend's ``--fork-snapshots-from``."""

from __future__ import annotations

import json
import re
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from streamflow.checkpoint import incremental
from streamflow.checkpoint.forked_snapshot import fork_snapshot
from streamflow.cli import main, parser, state_backend
from streamflow.state import HashMapStateBackend
from streamflow.state.heap import FORK_AVAILABLE, FORK_SNAPSHOTS_FROM

JOB = (
    "from streamflow.connectors import CollectionSource, ExactlyOnceFileSink\n"
    "from streamflow.state import ValueStateDescriptor\n"
    "from streamflow import KeyedProcessFunction\n"
    "class Count(KeyedProcessFunction):\n"
    "    def open(self, ctx):\n"
    "        self.n = ctx.get_state(ValueStateDescriptor('n', default=0))\n"
    "    def process_element(self, word, ctx, out):\n"
    "        self.n.update(self.n.value() + 1)\n"
    "        out.collect(f'{word} {self.n.value()}')\n"
    "def build(env):\n"
    "    words = [f'w{i % 50}' for i in range(2000)]\n"
    "    (env.from_source(CollectionSource(words, batch_size=10), name='words').uid('words')\n"
    "        .key_by(lambda w: w).process(Count()).uid('count')\n"
    "        .sink_to(ExactlyOnceFileSink(env.out)).uid('out'))\n"
)


@pytest.fixture
def job_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "rocks_job.py").write_text(JOB.replace("env.out", repr(str(tmp_path / "out"))))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("rocks_job", None)  # (each test's module writes to its own folder)
    yield tmp_path
    sys.modules.pop("rocks_job", None)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_job_runs_on_rocksdb_from_the_command_line_and_inspect_shows_its_files(
    job_module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir, checkpoints = job_module / "state", job_module / "chk"
    code, out, err = run(
        ["run", "rocks_job:build", "-p", "2", "--checkpoint-dir", str(checkpoints), "--checkpoint-interval", "0.01",
         "--state-backend", "rocksdb", "--state-dir", str(state_dir), "--rocksdb-memory", "32M", "--no-control",
         "--log-level", "WARNING"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
    assert state_dir.is_dir() and list(state_dir.iterdir()) == []  # the databases were there, and are gone
    lines = sorted(line for part in (job_module / "out").glob("*.txt") for line in part.read_text().splitlines())
    assert lines == sorted(f"w{k} {n}" for k in range(50) for n in range(1, 41))

    code, text, err = run(["inspect", str(checkpoints)], capsys)
    assert code == 0, err
    assert "format version 2" in text and "shared file(s)" in text
    assert text.count("rocksdb-native-2 files: ") == 2  # one line per subtask of 'count'
    assert "keyed state 'n' (value): in the files above" in text
    code, raw, err = run(["inspect", str(checkpoints), "--json"], capsys)
    described: dict[str, Any] = json.loads(raw)
    count = next(op for op in described["operators"] if op["uid"] == "count")
    files = [sub["shared_files"] for sub in count["subtasks"]]
    assert all(f["files"] >= 3 and f["bytes"] > 0 for f in files)
    # the latest checkpoint's files; the folder also holds those of the other retained one
    assert described["shared_files"] == sum(f["files"] for f in files) <= len(os.listdir(checkpoints / "shared"))
    assert count["shared_size"] == described["shared_size"] == sum(f["bytes"] for f in files)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--state-dir", "x"], "--state-dir configure the RocksDB state backend; add --state-backend rocksdb"),
        (["--rocksdb-memory", "64M"], "--rocksdb-memory configure the RocksDB state backend"),
        (["--state-backend", "rocksdb", "--rocksdb-memory", "lots"],
         "--rocksdb-memory must be a size such as 512M or 1G .*got 'lots'"),
        (["--state-backend", "rocksdb", "--rocksdb-memory", "1M"], "memory_budget must be an int of at least"),
        (["--state-backend", "rocksdb", "--fork-snapshots-from", "10"],
         "--fork-snapshots-from configures the heap state backend's snapshots; .*use --state-backend heap"),
        (["--fork-snapshots-from", "lots"], "--fork-snapshots-from must be a number of keys >= 0 or 'never', got 'lots'"),
        (["--fork-snapshots-from", "-3"], "--fork-snapshots-from must be a number of keys >= 0 or 'never', got '-3'"),
    ],
)  # fmt: skip
def test_settings_that_do_not_fit_are_refused_before_the_job_starts(
    job_module: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code, _out, err = run(["run", "rocks_job:build", "--no-control", *flags], capsys)
    assert code == 2
    assert re.search(message, err), err
    assert not (job_module / "out").exists()  # nothing ran


def test_a_state_dir_that_cannot_be_written_is_refused_naming_it(
    job_module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = job_module / "a-file"
    blocker.write_text("not a directory")
    code, _out, err = run(
        ["run", "rocks_job:build", "--no-control", "--state-backend", "rocksdb", "--state-dir", str(blocker / "db")],
        capsys,
    )
    assert code == 2
    assert f"the RocksDB working directory {str(blocker / 'db')!r} is not writable" in err
    assert "pass EmbeddedRocksDBStateBackend(directory=...) a directory this process can write" in err
    assert not (job_module / "out").exists()


TIMER_JOB = (
    "from streamflow.connectors import CollectionSource, DiscardingSink\n"
    "from streamflow import KeyedProcessFunction\n"
    "class Remind(KeyedProcessFunction):\n"
    "    def process_element(self, word, ctx, out):\n"
    "        ctx.timer_service.register_processing_time_timer(4e9)  # 2096: never fires here\n"
    "def build(env):\n"
    "    words = [f'w{i % 50}' for i in range(2000)]\n"
    "    (env.from_source(CollectionSource(words, batch_size=10), name='words').uid('words')\n"
    "        .key_by(lambda w: w).process(Remind()).uid('remind')\n"
    "        .sink_to(DiscardingSink()).uid('out'))\n"
)


def test_inspect_counts_the_timers_in_the_files_of_an_incremental_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "timer_job.py").write_text(TIMER_JOB)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoints = tmp_path / "chk"
    code, _out, err = run(
        ["run", "timer_job:build", "-p", "2", "--checkpoint-dir", str(checkpoints), "--checkpoint-interval", "0.01",
         "--state-backend", "rocksdb", "--state-dir", str(tmp_path / "state"), "--no-control",
         "--log-level", "WARNING"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    code, raw, err = run(["inspect", str(checkpoints), "--json"], capsys)
    assert code == 0, err
    remind = next(op for op in json.loads(raw)["operators"] if op["uid"] == "remind")
    timers = [sub["timers"] for sub in remind["subtasks"]]
    assert sum(t["processing"] for t in timers) == 50 and sum(t["event"] for t in timers) == 0
    code, text, err = run(["inspect", str(checkpoints)], capsys)
    assert code == 0, err
    assert text.count("processing-time, 0 event-time") == 2


@pytest.mark.parametrize(("flag", "expected"), [(None, FORK_SNAPSHOTS_FROM), ("0", 0), ("120000", 120_000),
                                                ("never", None), ("NEVER", None)])  # fmt: skip
def test_the_fork_threshold_reaches_the_heap_backend(flag: str | None, expected: int | None) -> None:
    args = parser().parse_args(["run", "x:build", *([] if flag is None else ["--fork-snapshots-from", flag])])
    backend = state_backend(args)
    assert isinstance(backend, HashMapStateBackend)
    assert backend.fork_snapshots_from == expected


@pytest.mark.skipif(not FORK_AVAILABLE, reason="snapshots fork on Linux only")
def test_a_job_whose_every_snapshot_forks_gives_the_same_output(
    job_module: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    forks: list[str] = []

    def counted(take: Any, *, operator: str, subtask: int) -> Any:
        forks.append(operator)
        return fork_snapshot(take, operator=operator, subtask=subtask)

    monkeypatch.setattr(incremental, "fork_snapshot", counted)
    checkpoints = job_module / "chk"
    code, out, err = run(
        ["run", "rocks_job:build", "-p", "2", "--checkpoint-dir", str(checkpoints), "--checkpoint-interval", "0.01",
         "--fork-snapshots-from", "0", "--no-control", "--log-level", "WARNING"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
    assert forks and set(forks) == {"count"}  # the keyed operator's snapshots, every one by a child
    lines = sorted(line for part in (job_module / "out").glob("*.txt") for line in part.read_text().splitlines())
    assert lines == sorted(f"w{k} {n}" for k in range(50) for n in range(1, 41))
