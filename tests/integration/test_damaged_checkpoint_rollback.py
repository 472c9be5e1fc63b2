"""A damaged completed checkpoint never silently rolls committed exactly-once output back.

The job is a word count from a real file into an ExactlyOnceFileSink (real files). It
fails right after its sink committed checkpoint 4; one state file of chk-4 is then
damaged. Restoring chk-3 instead would publish again what checkpoint 4 committed:

- by default the job refuses to start, not retried, naming the damaged checkpoint, what
  is wrong with it, what was committed after chk-3, and how to accept the rollback;
- with ``allow_checkpoint_rollback=True`` (``streamflow run --allow-rollback``) it
  restores chk-3, says at ERROR what will be duplicated, and the duplicates are exactly
  the lines checkpoint 4 had committed;
- a checkpoint that never completed is skipped without asking, output exact;
- a job without an exactly-once sink falls back on its own (in test_recovery_inprocess).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollback_jobs import expected_lines, wordcount, write_words

from streamflow import JobFailedError, RestartStrategy, StreamEnvironment
from streamflow.checkpoint.rollback import CheckpointRollbackError
from streamflow.connectors import read_committed_lines
from streamflow.core.faults import FaultInjector, InjectedFault
from streamflow.savepoint.describe import describe_snapshot

faults = FaultInjector()  # the faults these tests arm; every job built here gets it

REPO = Path(__file__).resolve().parents[2]
DAMAGED = 4


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


def new_env(tmp_path: Path, restart: RestartStrategy) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=2).set_fault_injector(faults)
    env.enable_checkpointing(0.05, directory=tmp_path / "chk", retained=3)
    env.set_restart_strategy(restart)
    return env


async def committed_by(checkpoint: Path) -> list[str]:
    """The lines of the part files the sink published when ``checkpoint`` completed (its
    prepared transactions, as ``streamflow inspect`` shows them)."""
    description = await describe_snapshot(checkpoint)
    [sink] = [op for op in description["operators"] if op["uid"] == "out"]
    lines: list[str] = []
    for subtask in sink["subtasks"]:
        for txn in subtask.get("sink_transactions", []):
            if txn["handle"]["records"]:
                lines += Path(txn["handle"]["final"]).read_text().splitlines()
    return lines


async def damaged_run(tmp_path: Path) -> tuple[set[str], list[str], list[str]]:
    """Run the word count until its sink committed checkpoint 4, fail there, damage one
    state file of chk-4. Returns the expected lines, the output committed so far and the
    lines checkpoint 4 committed."""
    expected = expected_lines(write_words(tmp_path / "words.txt"))
    faults.arm("after_commit", DAMAGED, action="raise")
    with pytest.raises(JobFailedError) as failed:
        await wordcount(new_env(tmp_path, RestartStrategy.none()), tmp_path / "words.txt", tmp_path / "out").execute("wc")
    assert isinstance(failed.value.__cause__, InjectedFault)
    faults.disarm()
    chk = tmp_path / "chk" / f"chk-{DAMAGED}"
    assert (chk / "_metadata").is_file()
    by_damaged = await committed_by(chk)
    assert by_damaged, "checkpoint 4 committed no line: the test would prove nothing"
    state = chk / "count-0"
    data = bytearray(state.read_bytes())
    data[-2] ^= 0xFF  # one flipped byte in the payload
    state.write_bytes(bytes(data))
    return expected, read_committed_lines(tmp_path / "out"), by_damaged


def check_rolled_back_output(output: list[str], before: list[str], by_damaged: list[str], expected: set[str]) -> None:
    counts = Counter(output)
    assert set(counts) == expected  # nothing lost
    duplicated = sorted(line for line, n in counts.items() if n > 1)
    assert max(counts.values()) == 2
    assert duplicated == sorted(by_damaged)  # exactly what checkpoint 4 had committed, again
    assert set(duplicated) <= set(before)


async def test_an_exactly_once_job_refuses_to_roll_back_past_a_damaged_completed_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected, before, by_damaged = await damaged_run(tmp_path)

    env = wordcount(new_env(tmp_path, RestartStrategy.fixed_delay(3, 0)), tmp_path / "words.txt", tmp_path / "out")
    with pytest.raises(JobFailedError, match="failed in attempt 1 and it cannot be retried") as failed:
        await env.execute("wc")
    error = failed.value.__cause__
    assert isinstance(error, CheckpointRollbackError)
    assert (error.damaged, error.restore_id) == ([DAMAGED], DAMAGED - 1)
    message = str(error)
    assert f"the latest completed checkpoint {DAMAGED} is damaged" in message
    assert f"{tmp_path / 'chk' / f'chk-{DAMAGED}' / 'count-0'}': its contents do not match its sha256" in message
    assert f"Restoring checkpoint {DAMAGED - 1} instead would write again the output that exactly-once sink(s) " \
           f"'out' committed for checkpoint(s) {DAMAGED} (duplicates)" in message
    assert "--allow-rollback" in message and "allow_checkpoint_rollback=True" in message
    assert read_committed_lines(tmp_path / "out") == before  # nothing was written again

    caplog.clear()
    env = wordcount(new_env(tmp_path, RestartStrategy.none()), tmp_path / "words.txt", tmp_path / "out")
    with caplog.at_level(logging.ERROR, logger="streamflow.checkpoint.rollback"):
        result = await env.execute("wc", allow_checkpoint_rollback=True)
    assert result.restored_from == DAMAGED - 1
    [said] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"restores checkpoint {DAMAGED - 1} past damaged completed checkpoint(s) {DAMAGED}" in said.getMessage()
    assert f"sink(s) 'out' committed for checkpoint(s) {DAMAGED} will be written again" in said.getMessage()
    check_rolled_back_output(read_committed_lines(tmp_path / "out"), before, by_damaged, expected)


def run_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "ROLLBACK_WORDS": str(tmp_path / "words.txt"),
        "ROLLBACK_OUT": str(tmp_path / "out"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
    }
    environment.pop("STREAMFLOW_CRASH", None)
    return subprocess.run(
        [sys.executable, "-m", "streamflow.cli", "run", "rollback_jobs:build", "--job-name", "wc", "-p", "2",
         "--checkpoint-dir", str(tmp_path / "chk"), "--checkpoint-interval", "0.05", "--no-control", *extra],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
    )


async def test_streamflow_run_refuses_the_rollback_unless_given_allow_rollback(tmp_path: Path) -> None:
    expected, before, by_damaged = await damaged_run(tmp_path)

    refused = run_cli(tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "CheckpointRollbackError" in refused.stderr and "--allow-rollback" in refused.stderr
    assert f"the latest completed checkpoint {DAMAGED} is damaged" in refused.stderr
    assert read_committed_lines(tmp_path / "out") == before

    allowed = run_cli(tmp_path, "--allow-rollback")
    assert allowed.returncode == 0, allowed.stderr
    assert f"ERROR streamflow.checkpoint.rollback: job 'wc' restores checkpoint {DAMAGED - 1}" in allowed.stderr
    check_rolled_back_output(read_committed_lines(tmp_path / "out"), before, by_damaged, expected)


async def test_a_checkpoint_that_never_completed_is_skipped_without_asking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = expected_lines(write_words(tmp_path / "words.txt"))
    faults.arm("metadata_write", DAMAGED, action="raise")  # chk-4 written but never completed
    env = wordcount(new_env(tmp_path, RestartStrategy.fixed_delay(1, 0)), tmp_path / "words.txt", tmp_path / "out")
    with caplog.at_level(logging.INFO, logger="streamflow.checkpoint.rollback"):
        result = await env.execute("wc")
    assert result.attempts == 2 and result.restored_from == DAMAGED - 1
    assert any(f"skipping checkpoint {DAMAGED}, which never completed" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("streamflow.checkpoint")]
    output = read_committed_lines(tmp_path / "out")
    assert sorted(output) == sorted(expected)  # exactly once


async def test_a_job_directory_given_as_the_savepoint_is_held_to_the_same_rule(tmp_path: Path) -> None:
    """``from_savepoint=<a job's checkpoint directory>`` restores its latest intact
    checkpoint: past a damaged completed one only when allowed."""
    await damaged_run(tmp_path)
    fresh = tmp_path / "again"
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.05, directory=fresh / "chk")
    wordcount(env, tmp_path / "words.txt", fresh / "out")
    with pytest.raises(CheckpointRollbackError, match=rf"Restoring checkpoint {DAMAGED - 1} of '.*chk' instead"):
        await env.execute("wc", from_savepoint=tmp_path / "chk")
    result = await env.execute("wc", from_savepoint=tmp_path / "chk", allow_checkpoint_rollback=True)
    assert result.restored_from == DAMAGED - 1
