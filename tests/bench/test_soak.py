"""The random-kill soak of bench/soak.py, in small: a few SIGKILLs of the Kafka -> Kafka
and the Kafka -> MySQL job (and of the Kafka job on three workers), run as the command a
user runs, its JSON report exact.

The soak reads the output back with clients of its own and compares it record by record
with the output computed from the input; these tests check that it did, and that its
report counts what it was asked for. The long run (100 kills) is a bench, not a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak_data import make_input  # noqa: E402
from soak_servers import INPUT_PARTITIONS  # noqa: E402

pytestmark = pytest.mark.soak

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
RECORDS = 6_000
RATE = 2_000  # records/s: an unkilled run lasts ~3 s, longer than the kill delays
KILL_DELAY = (1.5, 2.5)  # seconds after a start: past the first checkpoint (~0.8 s), before the end


def run_soak(tmp_path: Path, env: dict[str, str], *args: str, records: int = RECORDS) -> dict[str, Any]:
    report = tmp_path / "report.json"
    argv = [sys.executable, str(SOAK), "--records", str(records), "--rate", str(RATE), "--keys", "200",
            "--kill-delay", *map(str, KILL_DELAY), "--report", str(report), "--workdir", str(tmp_path / "work"), *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, f"$ {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    data: dict[str, Any] = json.loads(report.read_text())
    assert data["passed"] is True
    return data


def assert_exact(target: dict[str, Any], kills: int, results_per_round: int = RECORDS) -> None:
    verdict = target["verdict"]
    assert target["kills"] == kills
    assert verdict["expected"] == results_per_round * target["rounds"]
    assert verdict["committed"] == verdict["expected"]
    assert (verdict["duplicates"], verdict["losses"], verdict["unexpected"], verdict["keys_out_of_order"]) == (0, 0, 0, 0)
    assert target["unexpected_exits"] == [] and target["problems"] == []
    assert [k["number"] for k in target["kill_log"]] == list(range(1, kills + 1))
    for kill in target["kill_log"]:  # SIGKILLs at random times, not at the job's crash points
        if not kill["after_database_restart"]:
            assert KILL_DELAY[0] <= kill["seconds_after_start"] <= KILL_DELAY[1] + 1.0
    # Processes restored a checkpoint and completed new ones (at least the last one did).
    assert target["restart_seconds"], target
    assert 0 < target["restart"]["p50"] <= target["restart"]["p99"] <= target["restart"]["max"]


def test_kafka_job_killed_three_times_commits_every_record_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    data = run_soak(tmp_path, env, "--target", "kafka", "--kills", "3", "--seed", "5")
    assert data["seed"] == 5
    (target,) = data["targets"]
    assert target["target"] == "kafka"
    assert_exact(target, kills=3)


def test_mysql_job_killed_and_database_restarted_commits_every_record_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With the soak's own MariaDB, one of the kills comes after a database crash that the
    job rides out in-process; against an external MYSQL_URL (not ours to restart) the
    kills alone."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    db_restarts = 0 if env.get("MYSQL_URL") else 1
    data = run_soak(tmp_path, env, "--target", "mysql", "--kills", "2", "--seed", "8",
                    "--db-restarts", str(db_restarts))
    (target,) = data["targets"]
    assert target["target"] == "mysql"
    assert_exact(target, kills=2)
    assert len(target["db_restarts"]) == db_restarts
    for restart in target["db_restarts"]:
        assert restart["ride_out_seconds"] is not None
        assert target["in_process_restarts"] >= 1


def test_an_at_least_once_sink_makes_the_soak_fail_with_duplicates(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The negative control: the same job with an at-least-once Kafka sink writes results
    again after a kill, and the soak's independent reader must say so."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    report = tmp_path / "report.json"
    argv = [sys.executable, str(SOAK), "--records", str(RECORDS), "--rate", str(RATE), "--keys", "200",
            "--kill-delay", *map(str, KILL_DELAY), "--target", "kafka", "--kills", "2", "--seed", "6",
            "--at-least-once", "--report", str(report), "--workdir", str(tmp_path / "work")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    (target,) = json.loads(report.read_text())["targets"]
    assert target["passed"] is False and target["kills"] == 2
    verdict = target["verdict"]
    assert verdict["duplicates"] > 0 and verdict["losses"] == 0 and verdict["unexpected"] == 0
    assert verdict["committed"] == verdict["expected"] + verdict["duplicates"]


def test_kafka_job_on_three_workers_killed_four_times_commits_every_record_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``--workers 3``: each kill hits one worker at random, which starts again alone
    while the others run on; the exchange topics are left with no open transaction."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    data = run_soak(tmp_path, env, "--target", "kafka", "--workers", "3", "--kills", "4", "--seed", "3",
                    records=2 * RECORDS)  # a run outlasts four kills 1.5-2.5 s apart
    (target,) = data["targets"]
    verdict = target["verdict"]
    assert target["kills"] == 4 and verdict["committed"] == verdict["expected"] == 2 * RECORDS * target["rounds"]
    assert (verdict["duplicates"], verdict["losses"], verdict["unexpected"], verdict["keys_out_of_order"]) == (0, 0, 0, 0)
    assert target["unexpected_exits"] == [] and target["problems"] == []
    assert {kill["worker"] for kill in target["kill_log"]} <= {0, 1, 2}
    assert all(kill["worker"] is not None for kill in target["kill_log"])


def test_kafka_job_with_an_async_stage_killed_three_times_commits_every_record_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``--stages async``: a keyed map_async (calls sleeping a few ms, capacity 50, one
    planned failure per 97 records retried) before the count. Kills land with calls in
    flight: restores call the held inputs again, and the output is still exact."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    data = run_soak(tmp_path, env, "--target", "kafka", "--kills", "3", "--seed", "11", "--stages", "async")
    assert data["options"]["stages"] == ["async"]
    (target,) = data["targets"]
    assert_exact(target, kills=3)
    assert target["async_inputs_called_again"] > 0  # a restored checkpoint held calls in flight
    # The finishing process retried the planned failures of the records it called (one in 97).
    assert target["lookup_retries"] > 0


def test_kafka_job_with_unaligned_checkpoints_killed_three_times_commits_every_record_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``--unaligned --stages async,windows``: barriers overtake the records queued behind
    the lookup and the window, which go into the checkpoints as channel state and back
    into their channels on restore; every count and window is committed once."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    data = run_soak(tmp_path, env, "--target", "kafka", "--kills", "3", "--seed", "13", "--unaligned",
                    "--stages", "async,windows")
    assert data["options"]["unaligned"] is True
    (target,) = data["targets"]
    with_windows = make_input(RECORDS, partitions=INPUT_PARTITIONS, keys=200, seed=13).expected(windows=True)
    assert_exact(target, kills=3, results_per_round=len(with_windows))
    assert target["async_inputs_called_again"] > 0


def test_kafka_job_with_event_time_windows_killed_three_times_commits_every_window_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``--stages windows``: beside the count, a 1 s event-time tumbling window count per
    key (timestamps from the input lines, watermarks per partition), through the same
    exactly-once sink. 6,000 records span 3 s of event time, so windows can fire between
    kills, not only at the end of input; every window result is committed once with its count."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    data = run_soak(tmp_path, env, "--target", "kafka", "--kills", "3", "--seed", "12", "--stages", "windows")
    (target,) = data["targets"]
    with_windows = make_input(RECORDS, partitions=INPUT_PARTITIONS, keys=200, seed=12).expected(windows=True)
    assert len(with_windows) > RECORDS  # window results are part of what the soak checked
    assert_exact(target, kills=3, results_per_round=len(with_windows))
