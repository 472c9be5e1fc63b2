"""The examples and the command line run as a user runs them: in a fresh process."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from streamflow.connectors import read_committed_lines

REPO = Path(__file__).resolve().parents[2]


def run(
    args: list[str], cwd: Path, timeout: float = 120, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})}
    env.pop("STREAMFLOW_CRASH", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_main_job_crashes_recovers_and_matches_a_failure_free_run(tmp_path: Path) -> None:
    done = run([sys.executable, str(REPO / "examples" / "events_to_sqlite.py"), "--out", str(tmp_path)], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finished after 2 attempts" in done.stdout
    assert "CHECK OK" in done.stdout
    assert "crash on purpose" in done.stderr
    with sqlite3.connect(tmp_path / "user_totals.db") as db:
        users, events = db.execute("SELECT count(*), sum(events) FROM user_totals").fetchone()
    # 20,000 bundled events, 3 of them malformed and skipped; 200 users
    assert (users, events) == (200, 19_997)


def test_cli_runs_a_module_function_and_resumes_from_its_checkpoints(tmp_path: Path) -> None:
    module = tmp_path / "cli_job.py"
    module.write_text(
        "from streamflow.connectors import CollectionSource, ExactlyOnceFileSink\n"
        "def build(env):\n"
        "    (env.from_source(CollectionSource([f'w{i % 7}' for i in range(700)]), name='words').uid('words')\n"
        "        .key_by(lambda w: w).reduce(lambda a, b: a).uid('first')\n"
        f"        .sink_to(ExactlyOnceFileSink({str(tmp_path / 'out')!r})).uid('out'))\n"
    )
    args = [
        sys.executable, "-m", "streamflow.cli", "run", "cli_job:build", "--parallelism", "2",
        "--checkpoint-dir", str(tmp_path / "chk"), "--checkpoint-interval", "0.2",
    ]
    first = run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["job"] == "cli_job" and summary["attempts"] == 1
    assert summary["checkpoints_completed"] >= 1 and summary["restored_from"] is None
    second = run(args, tmp_path)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1])["restored_from"] is not None


def test_cli_refuses_a_bad_target_with_a_clear_message(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "streamflow.cli", "run", "no_colon_here"], tmp_path)
    assert done.returncode == 2
    assert "expected module:function" in done.stderr


def test_kafka_to_kafka_example_crashes_recovers_and_matches_a_failure_free_run(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    example = [sys.executable, str(REPO / "examples" / "kafka_to_kafka.py"), "--out", str(tmp_path)]
    done = run(example, REPO, extra_env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "crash on purpose" in done.stderr
    assert "finished after 2 attempts, restored from checkpoint" in done.stdout
    assert "restored from checkpoint None" not in done.stdout  # the crash lands after a checkpoint
    assert "CHECK OK: read_committed sees the failure-free run's 19997 records" in done.stdout


def test_socket_word_count_example_runs_the_savepoint_walk_through(tmp_path: Path) -> None:
    """examples/socket_wordcount.py: count, stop with a savepoint, resume at parallelism 3."""
    done = run([sys.executable, str(REPO / "examples" / "socket_wordcount.py")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3. start again from the savepoint with parallelism 3" in done.stdout
    assert done.stdout.rstrip().endswith("CHECK OK")


def test_user_path_rules_example_rescales_broadcast_and_keyed_state_and_checks_itself(tmp_path: Path) -> None:
    """examples/user_path_rules.py: rules broadcast to a keyed stream of user actions;
    stopped with a savepoint at parallelism 1, resumed at parallelism 3."""
    done = run([sys.executable, str(REPO / "examples" / "user_path_rules.py"), "--out", str(tmp_path)], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rules read again: 0" in done.stdout  # the resumed job knew them from its broadcast state
    assert "CHECK OK: 27 alerts for 12 users, each exactly once" in done.stdout
    alerts = [json.loads(line) for line in read_committed_lines(tmp_path / "alerts")]
    assert len(alerts) == len({(a["user"], a["channel"]) for a in alerts}) == 27
    assert {a["channel"] for a in alerts} == {"web", "app", "email", "store"}  # no rule for sms


def test_custom_source_example_resumes_each_feed_at_its_stored_position(tmp_path: Path) -> None:
    """examples/custom_source.py: a GeneratorSource over a paged feed, crashed midway."""
    done = run([sys.executable, str(REPO / "examples" / "custom_source.py"), "--out", str(tmp_path)], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "crash on purpose" in done.stderr
    assert "finished after 2 attempts, restored from checkpoint None" not in done.stdout
    assert "CHECK OK: 550 records of 2 feeds committed, each exactly once" in done.stdout
    committed = read_committed_lines(tmp_path / "records")
    assert sorted(committed) == sorted(
        [f"orders-{n:04d}" for n in range(400)] + [f"refunds-{n:04d}" for n in range(150)]
    )


def test_custom_2pc_sink_example_publishes_a_completed_checkpoint_after_a_crash_before_its_commit(
    tmp_path: Path,
) -> None:
    """examples/custom_2pc_sink.py: a TwoPhaseCommitSinkWriter of JSON-lines files."""
    done = run([sys.executable, str(REPO / "examples" / "custom_2pc_sink.py"), "--out", str(tmp_path)], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "crash on purpose: checkpoint" in done.stderr
    assert "CHECK OK: 3000 orders published exactly once, nothing left in .staging/" in done.stdout
    ids = [json.loads(line)["id"] for p in (tmp_path / "orders").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(ids) == list(range(3000))


def test_user_sessions_example_routes_late_events_to_a_side_output_and_checks_itself(tmp_path: Path) -> None:
    """examples/user_sessions.py: session windows over the bundled events, late events aside."""
    done = run([sys.executable, str(REPO / "examples" / "user_sessions.py"), "--out", str(tmp_path)], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 malformed lines skipped" in done.stdout
    assert "CHECK OK: 1149 sessions of 200 users, 19959 events" in done.stdout, done.stdout
    assert "38 late events in the side output" in done.stdout
    late = [json.loads(line) for line in read_committed_lines(tmp_path / "late")]
    assert {event["user"] for event in late} == {"u011", "u042", "u123", "u170"}


def test_backpressure_dashboard_example_serves_its_dashboard_and_ends(tmp_path: Path) -> None:
    done = run([sys.executable, str(REPO / "examples" / "backpressure_dashboard.py"), "--seconds", "2",
                "--parallelism", "2"], tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("dashboard: http://127.0.0.1:") and "Prometheus: http://127.0.0.1:" in first


def test_async_enrichment_example_crashes_recovers_and_matches_a_failure_free_run(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    example = [sys.executable, str(REPO / "examples" / "async_enrichment.py"), "--out", str(tmp_path)]
    done = run(example, REPO, extra_env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "crash on purpose" in done.stderr, done.stdout + done.stderr
    assert "finished after 2 attempts, restored from checkpoint" in done.stdout
    assert "restored from checkpoint None" not in done.stdout
    assert re.search(r"CHECK OK: read_committed sees the failure-free run.s 99\d\d enriched events", done.stdout), done.stdout
