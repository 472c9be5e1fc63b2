"""ExactlyOnceSqliteSink driven through the SinkWriter protocol directly."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from streamflow.api.connector import SinkContext
from streamflow.connectors import ExactlyOnceSqliteSink
from streamflow.connectors.sqlite import SqliteSinkWriter
from streamflow.errors import ConfigError, ConnectorError, DataLossError, UserFunctionError

CREATE = "CREATE TABLE IF NOT EXISTS counts(word TEXT PRIMARY KEY, n INTEGER NOT NULL)"
# Additive on purpose: applying a checkpoint's rows twice would show as a doubled count.
ADD = "INSERT INTO counts(word, n) VALUES (?, ?) ON CONFLICT(word) DO UPDATE SET n = n + excluded.n"


def sink(db: Path, **overrides: Any) -> ExactlyOnceSqliteSink:
    kwargs: dict[str, Any] = {"table": "counts", "statement": ADD, "row_fn": lambda r: (r[0], r[1]),
                              "create_sql": CREATE}
    return ExactlyOnceSqliteSink(db, **{**kwargs, **overrides})


def ctx(*, restored: list[Any] | None = None, subtask: int = 0, parallelism: int = 1,
        checkpointing: bool = True) -> SinkContext:
    return SinkContext(job_name="j", operator_uid="counts-sink", subtask_index=subtask,
                       parallelism=parallelism, checkpointing=checkpointing, restored_state=restored)


async def writer(db: Path, **kwargs: Any) -> SqliteSinkWriter:
    w = sink(db).create_writer(ctx(**kwargs))
    await w.open()
    return w


async def crash(w: SqliteSinkWriter) -> None:
    """Drop the writer as a crash would (no close); only release its connection thread."""
    assert w._conn is not None
    await w._conn.close()
    w._conn = None


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def counts(db: Path) -> dict[str, int]:
    return {str(w): int(n) for w, n in query(db, "SELECT word, n FROM counts")}


async def test_rows_are_applied_only_when_the_checkpoint_completes(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    w = await writer(db)
    await w.write([("a", 1), ("b", 2)])
    state = await w.snapshot(1)
    assert state[0]["handle"] == {"checkpoint_id": 1, "subtask": 0, "rows": 2}
    assert counts(db) == {}
    assert query(db, "SELECT count(*) FROM _streamflow_staged") == [(2,)]
    await w.notify_checkpoint_complete(1)
    assert counts(db) == {"a": 1, "b": 2}
    assert query(db, "SELECT count(*) FROM _streamflow_staged") == [(0,)]
    assert query(db, "SELECT sink, subtask, checkpoint_id FROM _streamflow_commits") == [("counts-sink", 0, 1)]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    await w.close()


async def test_committing_the_same_handle_twice_applies_rows_once(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    w = await writer(db)
    await w.write([("a", 1)])
    handle = (await w.snapshot(1))[0]["handle"]
    await w.commit(handle)
    await w.commit(handle)
    assert counts(db) == {"a": 1}
    await w.close()


async def test_crash_between_pre_commit_and_commit_then_recover_commits_once(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    first = await writer(db)
    await first.write([("a", 1)])
    state1 = await first.snapshot(1)  # checkpoint 1 completes; commit never runs
    await first.write([("a", 10)])
    await first.snapshot(2)  # staged for checkpoint 2, which never completes
    await crash(first)
    assert counts(db) == {}

    second = await writer(db, restored=state1)
    assert counts(db) == {"a": 1}
    assert query(db, "SELECT count(*) FROM _streamflow_staged") == [(0,)]  # checkpoint 2 aborted
    await crash(second)

    third = await writer(db, restored=state1)  # crash again before any new checkpoint
    assert counts(db) == {"a": 1}
    await third.write([("a", 10)])  # the replay of what followed checkpoint 1
    await third.snapshot(2)
    await third.notify_checkpoint_complete(2)
    assert counts(db) == {"a": 11}
    await third.close()


async def test_aborted_checkpoint_is_committed_with_the_next(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    w = await writer(db)
    await w.write([("a", 1)])
    await w.snapshot(1)
    await w.notify_checkpoint_aborted(1)
    await w.write([("a", 2)])
    state = await w.snapshot(2)
    assert [e["checkpoint_id"] for e in state] == [1, 2]
    await w.notify_checkpoint_complete(2)
    assert counts(db) == {"a": 3}
    await w.close()


async def test_subtasks_share_the_database(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    writers = [await writer(db, subtask=i, parallelism=2) for i in range(2)]
    for i, w in enumerate(writers):
        await w.write([(f"w{i}", 1), ("both", 1)])
    await asyncio.gather(*(w.snapshot(1) for w in writers))
    await asyncio.gather(*(w.notify_checkpoint_complete(1) for w in writers))
    assert counts(db) == {"w0": 1, "w1": 1, "both": 2}
    for w in writers:
        await w.close()


async def test_rescaled_restore_commits_other_subtasks_handles(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    old = [await writer(db, subtask=i, parallelism=2) for i in range(2)]
    states = []
    for i, w in enumerate(old):
        await w.write([(f"w{i}", 1)])
        states += await w.snapshot(1)
        await crash(w)
    new = await writer(db, restored=states)
    assert counts(db) == {"w0": 1, "w1": 1}
    await new.close()


async def test_finish_without_checkpointing_and_a_fresh_rerun_apply_again(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    for _ in range(2):  # a fresh start must not mistake old markers for its own commits
        w = await writer(db, checkpointing=False)
        await w.write([("a", 1)])
        await w.finish()
        await w.close()
    assert counts(db) == {"a": 2}


async def test_lost_staged_rows_are_data_loss(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    w = await writer(db)
    await w.write([("a", 1)])
    handle = (await w.snapshot(1))[0]["handle"]
    query(db, "DELETE FROM _streamflow_staged")
    with pytest.raises(DataLossError, match="staged 1 rows but 0 are left"):
        await w.commit(handle)
    await w.close()


async def test_bytes_and_null_values_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    create = "CREATE TABLE IF NOT EXISTS blobs(k TEXT, v BLOB, f REAL)"
    s = ExactlyOnceSqliteSink(db, table="blobs", statement="INSERT INTO blobs VALUES (?, ?, ?)",
                              row_fn=lambda r: r, create_sql=create)
    w = s.create_writer(ctx())
    await w.open()
    await w.write([("x", b"\x00\xff", 1.5), ("y", None, None)])
    await w.snapshot(1)
    await w.notify_checkpoint_complete(1)
    assert query(db, "SELECT * FROM blobs ORDER BY k") == [("x", b"\x00\xff", 1.5), ("y", None, None)]
    await w.close()


async def test_missing_table_is_a_config_error_saying_what_to_do(tmp_path: Path) -> None:
    w = sink(tmp_path / "out.db", create_sql=None).create_writer(ctx())
    with pytest.raises(ConfigError, match="does not exist.*create_sql"):
        await w.open()


async def test_row_fn_failure_is_a_user_function_error(tmp_path: Path) -> None:
    w = await writer(tmp_path / "out.db")
    with pytest.raises(UserFunctionError, match="row_fn"):
        await w.write([42])
    await w.close()


async def test_unstageable_value_is_a_connector_error(tmp_path: Path) -> None:
    w = await writer(tmp_path / "out.db")
    await w.write([("a", object())])
    with pytest.raises(ConnectorError, match="cannot stage row"):
        await w.snapshot(1)
    await w.close()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"table": ""}, "table"), ({"statement": " "}, "statement"), ({"row_fn": 3}, "row_fn")],
)
def test_bad_config_is_a_config_error(tmp_path: Path, overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        sink(tmp_path / "x.db", **overrides)


def test_in_memory_database_is_rejected() -> None:
    with pytest.raises(ConfigError, match="database file path"):
        ExactlyOnceSqliteSink(":memory:", table="t", statement="s", row_fn=tuple)
