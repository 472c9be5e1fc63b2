"""MySqlSink in running jobs on a real MariaDB: a session killed mid-epoch fails the
attempt and the restart is exact (XA); at-least-once upserts leave no duplicate."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from mysql_kit import ALO, new_table, rows, sink
from streamflow import RestartStrategy, StreamEnvironment
from streamflow.connectors.collection import CollectionSource
from streamflow.testing.mysql import execute, query

RECORDS = [(f"k{i % 7}", i) for i in range(3000)]


class Chaos:
    """Once, after ``at`` records: run ``action`` (class-level flag: every subtask and
    attempt has its own copy of the function). Paces the stream so checkpoints interleave."""

    done = False

    def __init__(self, at: int, action: Any) -> None:
        self.at, self.action, self.seen = at, action, 0

    async def __call__(self, record: Any) -> Any:
        self.seen += 1
        if self.seen % 100 == 0:
            await asyncio.sleep(0.02)
        if not Chaos.done and self.seen >= self.at:
            Chaos.done = True
            await asyncio.to_thread(self.action)
        return record


def job(tmp_path: Path, target: Any, action: Any, parallelism: int = 1) -> StreamEnvironment:
    Chaos.done = False
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(0.1, directory=tmp_path / f"chk-{secrets.token_hex(2)}")
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=3, delay=0.1))
    (env.from_source(CollectionSource(RECORDS, batch_size=20)).uid("src")
        .map(Chaos(len(RECORDS) // 2 // parallelism, action)).uid("chaos")
        .sink_to(target).uid("out"))
    return env


def kill_sessions_of(url: str) -> None:
    """KILL every session on the sink's database but our own: the connection is lost."""
    database = url.rsplit("/", 1)[1]
    ids = [r[0] for r in query(url, "SELECT id FROM information_schema.processlist "
                                    "WHERE db = %s AND id <> CONNECTION_ID()", (database,))]
    assert ids, "the sink has no session to kill"
    for session in ids:
        execute(url, f"KILL {session}")


async def test_a_lost_connection_fails_the_attempt_and_the_restart_is_exact(mysql_url: str, tmp_path: Path) -> None:
    table = new_table(mysql_url)
    env = job(tmp_path, sink(mysql_url, table, batch_size=50), lambda: kill_sessions_of(mysql_url), parallelism=2)
    result = await env.execute(f"xa-kill-{secrets.token_hex(2)}")
    assert result.attempts == 2 and result.restored_from is not None
    assert sorted(rows(mysql_url, table)) == sorted(RECORDS)


async def test_at_least_once_upserts_replay_without_duplicates(mysql_url: str, tmp_path: Path) -> None:
    table = new_table(mysql_url)
    upsert = f"INSERT INTO {table} (k, v) VALUES (%s, %s) ON DUPLICATE KEY UPDATE v = VALUES(v)"

    def fail() -> None:
        raise RuntimeError("failure on purpose")

    env = job(tmp_path, sink(mysql_url, table, statement=upsert, delivery_guarantee=ALO, batch_size=64), fail)
    result = await env.execute(f"alo-{secrets.token_hex(2)}")
    assert result.attempts == 2
    assert sorted(rows(mysql_url, table)) == sorted(RECORDS)  # UNIQUE (k, v): no row twice


async def test_exactly_once_rows_are_committed_with_checkpoints(mysql_url: str, tmp_path: Path) -> None:
    table = new_table(mysql_url)
    env = job(tmp_path, sink(mysql_url, table, batch_size=100), lambda: None)
    result = await env.execute(f"xa-{secrets.token_hex(2)}")
    assert result.checkpoints_completed >= 2
    assert rows(mysql_url, table) == RECORDS  # one subtask: insertion order is record order
    markers = query(mysql_url, "SELECT count(*) FROM _streamflow_xa_markers WHERE job = %s", (result.job_name,))
    assert 1 <= markers[0][0] <= result.checkpoints_completed + 1

