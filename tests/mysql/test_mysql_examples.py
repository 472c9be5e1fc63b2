"""The MySQL examples, run as a user runs them (a fresh process, on the session's Kafka
broker and MariaDB), and MySqlOffsetsSink's promise checked in-process on the same
servers: results and source offsets committed together, so a job started afresh from
``load_offsets`` counts every record exactly once."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from streamflow import JobFailedError, RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import KafkaSource, StartingOffsets
from streamflow.connectors.mysql import MySqlOffsetsSink, load_offsets
from streamflow.testing.kafka import create_topic, produce, unique_topic
from streamflow.testing.mysql import execute, query

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3
PER_PARTITION = 1500
KEYS = 7


def run_example(name: str, tmp_path: Path, kafka_bootstrap: str, mysql_server_url: str
                ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MYSQL_URL": mysql_server_url}
    env.pop("STREAMFLOW_CRASH", None)
    return subprocess.run([sys.executable, str(REPO / "examples" / f"{name}.py"), "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(300)
def test_minute_totals_xa_example_crashes_recovers_and_matches_the_expected_totals(
    tmp_path: Path, kafka_bootstrap: str, mysql_server_url: str
) -> None:
    done = run_example("kafka_minute_totals_xa", tmp_path, kafka_bootstrap, mysql_server_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "crash on purpose" in done.stderr
    assert "finished after 2 attempts, restored from checkpoint" in done.stdout
    assert "restored from checkpoint None" not in done.stdout  # the crash lands after a checkpoint
    # 20,000 bundled events, 3 malformed and skipped, over 200 users
    assert "CHECK OK: 6379 rows for 200 users, 19997 events" in done.stdout, done.stdout


@pytest.mark.timeout(300)
def test_offsets_in_mysql_example_fails_then_resumes_from_the_offsets_in_mysql(
    tmp_path: Path, kafka_bootstrap: str, mysql_server_url: str
) -> None:
    done = run_example("kafka_offsets_in_mysql", tmp_path, kafka_bootstrap, mysql_server_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run 1 failed, as planned" in done.stdout
    assert "run 2 finished after 1 attempt(s)" in done.stdout
    assert "restored from checkpoint None" in done.stdout  # run 2 had nothing but MySQL
    assert "CHECK OK: 6379 rows for 200 users, 19997 events" in done.stdout, done.stdout
    assert not (tmp_path / "run-1-checkpoints").exists()


# -- MySqlOffsetsSink in-process ----------------------------------------------------------


def values_of(partition: int) -> list[bytes]:
    """Record j of ``partition``: ``k<key>,<amount>``, distinct amounts everywhere."""
    return [f"k{(partition * PER_PARTITION + j) % KEYS},{partition * PER_PARTITION + j}".encode()
            for j in range(PER_PARTITION)]


def totals_below(offsets: dict[tuple[str, int], int], topic: str) -> dict[str, tuple[int, int]]:
    """Per key (count, sum of amounts) of the records before ``offsets`` (NEXT offsets)."""
    totals: dict[str, list[int]] = {}
    for p in range(PARTITIONS):
        for value in values_of(p)[: offsets.get((topic, p), 0)]:
            key, amount = value.decode().split(",")
            acc = totals.setdefault(key, [0, 0])
            acc[0] += 1
            acc[1] += int(amount)
    return {k: (n, s) for k, (n, s) in totals.items()}


async def filled_topic(bootstrap: str) -> str:
    topic = unique_topic("offsets-sink")
    await create_topic(bootstrap, topic, partitions=PARTITIONS)
    for p in range(PARTITIONS):
        await produce(bootstrap, topic, values_of(p), partition=p)
    return topic


def new_table(mysql_url: str) -> str:
    table = f"counts_{secrets.token_hex(3)}"
    execute(mysql_url, f"CREATE TABLE {table} (k VARCHAR(16) NOT NULL PRIMARY KEY, n INT NOT NULL, "
                       "total BIGINT NOT NULL) ENGINE=InnoDB")
    return table


def table_totals(mysql_url: str, table: str) -> dict[str, tuple[int, int]]:
    return {k: (int(n), int(s)) for k, n, s in query(mysql_url, f"SELECT k, n, total FROM {table}")}


def stored_offsets(mysql_url: str, name: str) -> dict[tuple[str, int], int]:
    """``_streamflow_kafka_offsets`` read with SQL (not through load_offsets)."""
    rows = query(mysql_url, "SELECT topic, `partition`, next_offset FROM _streamflow_kafka_offsets "
                            "WHERE name = %s", (name,))
    return {(t, int(p)): int(o) for t, p, o in rows}


def crash_once_mysql_holds_offsets(mysql_url: str, name: str, after: int
                                   ) -> Callable[[str], Coroutine[Any, Any, str]]:
    """A map that slows the job down (so it spans checkpoints) and fails it once, after
    ``after`` records, at the first record that sees offsets of ``name`` committed in
    MySQL: a failure that surely lands after a committed checkpoint. A plain function is
    shared by the subtasks, so ``seen`` and ``crashed`` count for all of them."""
    seen = 0
    crashed = False

    async def chaos(value: str) -> str:
        nonlocal seen, crashed
        seen += 1
        if seen % 100 == 0:
            await asyncio.sleep(0.05)
            if not crashed and seen >= after and await asyncio.to_thread(stored_offsets, mysql_url, name):
                crashed = True
                raise RuntimeError(f"crash on purpose after {seen} records")
        return value

    return chaos


def build(env: StreamEnvironment, bootstrap: str, topic: str, mysql_url: str, table: str, name: str, *,
          starting_offsets: StartingOffsets | None = None,
          chaos: Callable[[str], Coroutine[Any, Any, str]] | None = None) -> None:
    source = KafkaSource(bootstrap, topics=topic, bounded=True, value_deserializer="str",
                         starting_offsets=starting_offsets or StartingOffsets.earliest())
    stream = env.from_source(source, name="numbers").uid("numbers")
    if chaos is not None:
        stream = stream.map(chaos).uid("chaos")
    (
        stream.rebalance()
        .sink_to(MySqlOffsetsSink(
            mysql_url, table=table, name=name, batch_size=100,
            statement=f"INSERT INTO {table} (k, n, total) VALUES (%s, %s, %s) "
                      "ON DUPLICATE KEY UPDATE n = n + VALUES(n), total = total + VALUES(total)",
            row_fn=lambda v: (v.split(",")[0], 1, int(v.split(",")[1])),
        ))
        .uid("counts")
        .set_parallelism(1)
    )


def new_env(checkpoints: Path, restart: RestartStrategy) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.2, directory=checkpoints)
    env.set_restart_strategy(restart)
    return env


async def test_a_fresh_job_from_load_offsets_after_a_failed_job_counts_every_record_once(
    tmp_path: Path, kafka_bootstrap: str, mysql_url: str
) -> None:
    topic, table, name = await filled_topic(kafka_bootstrap), new_table(mysql_url), f"n-{secrets.token_hex(3)}"
    first = new_env(tmp_path / "chk-1", RestartStrategy.none())
    build(first, kafka_bootstrap, topic, mysql_url, table, name,
          chaos=crash_once_mysql_holds_offsets(mysql_url, name, after=PARTITIONS * PER_PARTITION // 3))
    with pytest.raises(JobFailedError, match="crash on purpose"):
        await first.execute("offsets-sink-first")

    # What the failed job left in MySQL is consistent: the rows are exactly the records
    # before the offsets committed with them.
    stored = await load_offsets(mysql_url, name)
    assert stored == stored_offsets(mysql_url, name)
    assert set(stored) <= {(topic, p) for p in range(PARTITIONS)}
    assert 0 < sum(stored.values()) < PARTITIONS * PER_PARTITION
    assert table_totals(mysql_url, table) == totals_below(stored, topic)

    # A new job without the first one's checkpoints (another directory), from MySQL.
    second = new_env(tmp_path / "chk-2", RestartStrategy.none())
    build(second, kafka_bootstrap, topic, mysql_url, table, name,
          starting_offsets=StartingOffsets.offsets(stored))
    result = await second.execute("offsets-sink-second")
    assert result.restored_from is None
    ends = {(topic, p): PER_PARTITION for p in range(PARTITIONS)}
    assert table_totals(mysql_url, table) == totals_below(ends, topic)
    assert stored_offsets(mysql_url, name) == ends


async def test_a_finished_run_stores_the_end_offsets_and_a_rerun_from_them_adds_nothing(
    tmp_path: Path, kafka_bootstrap: str, mysql_url: str
) -> None:
    topic, table, name = await filled_topic(kafka_bootstrap), new_table(mysql_url), f"n-{secrets.token_hex(3)}"
    assert await load_offsets(mysql_url, name) == {}  # nothing stored yet under this name
    env = new_env(tmp_path / "chk-1", RestartStrategy.none())
    build(env, kafka_bootstrap, topic, mysql_url, table, name)
    await env.execute("offsets-sink-once")
    ends = {(topic, p): PER_PARTITION for p in range(PARTITIONS)}
    assert stored_offsets(mysql_url, name) == ends
    everything = totals_below(ends, topic)
    assert table_totals(mysql_url, table) == everything
    assert sum(n for n, _ in everything.values()) == PARTITIONS * PER_PARTITION

    again = new_env(tmp_path / "chk-2", RestartStrategy.none())
    build(again, kafka_bootstrap, topic, mysql_url, table, name,
          starting_offsets=StartingOffsets.offsets(await load_offsets(mysql_url, name)))
    await again.execute("offsets-sink-again")
    assert table_totals(mysql_url, table) == everything
    assert stored_offsets(mysql_url, name) == ends


async def test_a_restart_from_the_checkpoint_applies_each_checkpoint_once(
    tmp_path: Path, kafka_bootstrap: str, mysql_url: str
) -> None:
    """The other resume path: the job's own restart restores its checkpoint, whose
    pending handle may or may not be in MySQL already; the progress row decides."""
    topic, table, name = await filled_topic(kafka_bootstrap), new_table(mysql_url), f"n-{secrets.token_hex(3)}"
    env = new_env(tmp_path / "chk", RestartStrategy.fixed_delay(attempts=2, delay=0.1))
    build(env, kafka_bootstrap, topic, mysql_url, table, name,
          chaos=crash_once_mysql_holds_offsets(mysql_url, name, after=PARTITIONS * PER_PARTITION // 3))
    result = await env.execute("offsets-sink-restart")
    assert result.attempts == 2 and result.restored_from is not None
    ends = {(topic, p): PER_PARTITION for p in range(PARTITIONS)}
    assert table_totals(mysql_url, table) == totals_below(ends, topic)
    assert stored_offsets(mysql_url, name) == ends
