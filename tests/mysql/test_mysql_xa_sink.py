"""The exactly-once (XA) MySqlSink writer against a real MariaDB server: the commit path,
recovery of prepared transactions, lingering ones, markers and errors."""

from __future__ import annotations

import secrets

import pytest

from mysql_kit import EO, crash, ctx, new_table, opened, records, rows, sink
from streamflow.connectors.mysql import MySqlStatementError
from streamflow.connectors.mysql.xids import FORMAT_ID, Xid
from streamflow.errors import ConfigError, DataLossError, UserFunctionError
from streamflow.testing.mysql import execute, prepared_xids_of, query


def job() -> str:
    return f"job-{secrets.token_hex(3)}"


def ours(url: str, name: str) -> list[Xid]:
    return prepared_xids_of(url, name, "out")


async def test_rows_are_invisible_until_their_checkpoint_completes(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    await writer.write(records("a", 10))  # 10 rows, batch_size 4: two batches sent at once
    assert rows(mysql_url, table) == []
    state = await writer.snapshot(1)
    assert rows(mysql_url, table) == []
    [entry] = state
    xid = Xid.from_handle(entry["handle"]["xid"])
    assert entry["handle"]["rows"] == 10 and entry["checkpoint_id"] == 1
    assert xid.format_id == FORMAT_ID and xid.subtask == 0 and xid.checkpoint_id == 1
    assert ours(mysql_url, name) == [xid]  # prepared on the server
    await writer.write(records("a", 3, start=11))
    await writer.notify_checkpoint_complete(1)
    assert rows(mysql_url, table) == records("a", 10)
    assert ours(mysql_url, name) == []
    await writer.snapshot(2)
    await writer.notify_checkpoint_complete(2)
    assert rows(mysql_url, table) == records("a", 13)
    await writer.close()


async def test_an_epoch_without_records_starts_no_xa_transaction(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    [entry] = await writer.snapshot(1)
    assert entry["handle"] == {"xid": None, "checkpoint_id": 1, "rows": 0}
    assert ours(mysql_url, name) == []
    await writer.notify_checkpoint_complete(1)
    await writer.close()
    assert rows(mysql_url, table) == []


async def test_a_restore_commits_the_prepared_transaction_once_even_when_restored_twice(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    await writer.write(records("a", 5))
    state = await writer.snapshot(1)
    await writer.write(records("a", 2, start=6))  # epoch 2: never prepared, rolled back by the crash
    await crash(writer)  # the process dies before checkpoint 1 completes is known to the sink
    assert rows(mysql_url, table) == []
    first = await opened(sink(mysql_url, table), ctx(name, restored=state))
    assert rows(mysql_url, table) == records("a", 5)
    await crash(first)
    # A second restore from the same checkpoint: XAER_NOTA, and the marker proves the commit.
    second = await opened(sink(mysql_url, table), ctx(name, restored=state))
    assert rows(mysql_url, table) == records("a", 5)
    await second.write(records("a", 2, start=6))
    await second.snapshot(2)
    await second.notify_checkpoint_complete(2)
    await second.close()
    assert rows(mysql_url, table) == records("a", 7)
    assert ours(mysql_url, name) == []


async def test_prepared_transactions_of_an_uncompleted_checkpoint_are_rolled_back(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    await writer.write(records("a", 3))
    state1 = await writer.snapshot(1)
    await writer.notify_checkpoint_complete(1)
    await writer.write(records("a", 4, start=4))
    await writer.snapshot(2)  # prepared; checkpoint 2 never completes
    await crash(writer)
    assert len(ours(mysql_url, name)) == 1
    restored = await opened(sink(mysql_url, table), ctx(name, restored=state1))
    assert ours(mysql_url, name) == []  # rolled back: it belongs to no completed checkpoint
    assert rows(mysql_url, table) == records("a", 3)
    await restored.write(records("a", 4, start=4))  # the replay
    await restored.snapshot(2)
    await restored.notify_checkpoint_complete(2)
    await restored.close()
    assert rows(mysql_url, table) == records("a", 7)


async def test_a_fresh_start_rolls_back_what_an_earlier_run_left_prepared(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    await writer.write(records("a", 3))
    await writer.snapshot(1)
    await crash(writer)
    fresh = await opened(sink(mysql_url, table), ctx(name))
    assert ours(mysql_url, name) == []
    await fresh.close()
    assert rows(mysql_url, table) == []


async def test_other_sinks_transactions_are_left_alone(mysql_url: str) -> None:
    table, mine, other = new_table(mysql_url), job(), job()
    stranger = await opened(sink(mysql_url, table), ctx(other))
    await stranger.write(records("b", 2))
    state = await stranger.snapshot(1)
    writer = await opened(sink(mysql_url, table), ctx(mine))  # a fresh start of another job
    assert len(ours(mysql_url, other)) == 1
    await writer.close()
    await stranger.notify_checkpoint_complete(1)
    await stranger.close()
    assert rows(mysql_url, table) == records("b", 2) and state


async def test_rescale_two_to_one_commits_both_subtasks_handles(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    states = []
    for subtask, key in ((0, "a"), (1, "b")):
        writer = await opened(sink(mysql_url, table), ctx(name, subtask=subtask, parallelism=2))
        await writer.write(records(key, 3))
        states += await writer.snapshot(1)
        await crash(writer)
    restored = await opened(sink(mysql_url, table), ctx(name, parallelism=1, restored=states))
    assert sorted(rows(mysql_url, table)) == records("a", 3) + records("b", 3)
    await restored.snapshot(2)
    await restored.notify_checkpoint_complete(2)
    await restored.close()
    assert ours(mysql_url, name) == []


async def test_an_xid_rolled_back_behind_the_sinks_back_is_data_loss(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    await writer.write(records("a", 3))
    state = await writer.snapshot(1)
    await crash(writer, mysql_url)
    [xid] = ours(mysql_url, name)
    execute(mysql_url, f"XA ROLLBACK {xid.sql()}")  # an operator "cleaning up"
    with pytest.raises(DataLossError, match="XAER_NOTA.*marker row") as info:
        await opened(sink(mysql_url, table), ctx(name, restored=state))
    assert info.value.checkpoint_id == 1 and "3 rows" in str(info.value)


async def test_the_marker_row_is_written_inside_the_transaction(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    await writer.write(records("a", 1))
    [entry] = await writer.snapshot(7)
    xid = str(Xid.from_handle(entry["handle"]["xid"]))
    marker = "SELECT job, operator_uid, subtask, checkpoint_id FROM _streamflow_xa_markers WHERE xid = %s"
    assert query(mysql_url, marker, (xid,)) == []  # not visible while prepared
    await writer.notify_checkpoint_complete(7)
    assert query(mysql_url, marker, (xid,)) == [(name, "out", 0, 7)]
    await writer.close()


async def test_a_rejected_row_names_table_statement_and_record(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    with pytest.raises(MySqlStatementError) as info:
        await writer.write([("a", 1), ("a", 2), ("a", 2), ("a", 3)])  # a duplicate (k, v)
    message = str(info.value)
    assert table in message and "INSERT INTO" in message and "('a', 2)" in message and "Duplicate" in message
    assert info.value.retriable is False and info.value.table == table
    await writer.close()
    assert rows(mysql_url, table) == [] and ours(mysql_url, name) == []


async def test_a_failing_row_function_names_the_record(mysql_url: str) -> None:
    table = new_table(mysql_url)
    writer = await opened(sink(mysql_url, table, row_fn=lambda r: (r["k"], r["v"])), ctx(job()))
    with pytest.raises(UserFunctionError, match="row_fn.*'oops'"):
        await writer.write(["oops"])
    await writer.close()


async def test_a_killed_session_fails_the_epoch_and_a_restore_is_exact(mysql_url: str) -> None:
    table, name = new_table(mysql_url), job()
    writer = await opened(sink(mysql_url, table), ctx(name))
    await writer.write(records("a", 4))
    state = await writer.snapshot(1)
    await writer.notify_checkpoint_complete(1)
    await writer.write(records("a", 4, start=5))  # sent: the epoch's XA transaction is open
    execute(mysql_url, f"KILL {writer.current.conn.server_thread_id[0]}")
    with pytest.raises(Exception) as info:
        await writer.write(records("a", 4, start=9))
    assert "connection to MySQL broke" in str(info.value) and info.value.retriable
    await writer.close()
    restored = await opened(sink(mysql_url, table), ctx(name, restored=state))
    await restored.write(records("a", 8, start=5))
    await restored.snapshot(2)
    await restored.notify_checkpoint_complete(2)
    await restored.close()
    assert rows(mysql_url, table) == records("a", 12)


async def test_a_missing_table_is_a_config_error_that_says_to_create_it(mysql_url: str) -> None:
    with pytest.raises(ConfigError, match="does not exist.*CREATE TABLE"):
        await opened(sink(mysql_url, "no_such_table"), ctx(job()))


async def test_without_checkpointing_rows_are_committed_at_end_of_input(mysql_url: str) -> None:
    table = new_table(mysql_url)
    writer = await opened(sink(mysql_url, table), ctx(job(), checkpointing=False))
    await writer.write(records("a", 6))
    assert rows(mysql_url, table) == []
    await writer.finish()
    await writer.close()
    assert rows(mysql_url, table) == records("a", 6)


def test_eo_is_not_the_default_but_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="mysql://user:password@host:3306/database"):
        sink("postgres://x/y", "t")
    with pytest.raises(ConfigError, match=r"\*\*\*"):
        sink("mysql://u:secret@h", "t")  # no database; the password is not shown
    with pytest.raises(ConfigError, match="AT_LEAST_ONCE, EXACTLY_ONCE"):
        sink("mysql://u@h/db", "t", delivery_guarantee="none")
    assert sink("mysql://u@h/db", "t", delivery_guarantee="exactly_once").delivery_guarantee is EO
