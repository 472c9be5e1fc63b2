"""Pure logic of the MySQL sinks: xids, URLs, and the board of source offsets."""

from __future__ import annotations

import pytest

from streamflow.connectors.kafka.progress import OffsetsBoard
from streamflow.connectors.mysql import parse_mysql_url
from streamflow.connectors.mysql.xids import FORMAT_ID, Xid, sink_key
from streamflow.core.services import JobServices
from streamflow.errors import ConfigError, StateError


def test_xids_name_sink_subtask_and_checkpoint_and_fit_xa_limits() -> None:
    key = sink_key("a-very-long-job-name" * 10, "uid" * 50, "db")
    xid = Xid.of(key, 12, 2**63 - 1, "0123abcd", 99999)
    assert len(xid.gtrid.encode()) <= 64 and len(xid.bqual.encode()) <= 64
    assert (xid.subtask, xid.checkpoint_id, xid.format_id) == (12, 2**63 - 1, FORMAT_ID)
    assert xid.belongs_to(key) and not xid.belongs_to(sink_key("other", "uid", "db"))
    assert Xid.from_handle(xid.to_handle()) == xid


def test_the_sink_key_separates_jobs_uids_and_databases() -> None:
    keys = {sink_key("j", "u", "d"), sink_key("j", "u", "e"), sink_key("j", "v", "d"), sink_key("k", "u", "d")}
    assert len(keys) == 4 and sink_key("j", "u", "d") == sink_key("j", "u", "d")


def test_an_xid_reads_back_from_xa_recover_rows() -> None:
    xid = Xid.of("0123456789abcdef", 1, 5, "feedbeef", 3)
    data = (xid.gtrid + xid.bqual).encode()
    assert Xid.from_recover((FORMAT_ID, len(xid.gtrid), len(xid.bqual), data)) == xid
    assert xid.sql() == f"X'{xid.gtrid.encode().hex()}',X'{xid.bqual.encode().hex()}',{FORMAT_ID}"


def test_urls_parse_and_never_echo_the_password() -> None:
    address = parse_mysql_url("mysql://etl:p%40ss@db.local:3307/shop")
    assert (address.host, address.port, address.user, address.password, address.database) == (
        "db.local", 3307, "etl", "p@ss", "shop")
    assert "p@ss" not in str(address)
    with pytest.raises(ConfigError) as info:
        parse_mysql_url("mysql://etl:secret@db.local:3307")
    assert "secret" not in str(info.value)


def test_the_board_merges_every_source_subtask_at_a_checkpoint() -> None:
    board = OffsetsBoard()
    board.publish("src", 0, 2, 1, {("t", 0): 10})
    board.publish("src", 1, 2, 1, {("t", 1): 20})
    board.publish("src", 0, 2, 2, {("t", 0): 15})
    # subtask 1 finished after checkpoint 1: its last offsets hold for checkpoint 2
    assert board.offsets_at(2) == {("t", 0): 15, ("t", 1): 20}
    assert board.offsets_at(1) == {("t", 0): 10, ("t", 1): 20}
    with pytest.raises(StateError, match="no KafkaSource 'other'"):
        board.offsets_at(1, "other")


def test_a_restarted_attempt_replaces_what_the_failed_one_published() -> None:
    board = OffsetsBoard()
    board.publish("src", 0, 1, 3, {("t", 0): 30})
    board.publish("src", 0, 1, 4, {("t", 0): 40})  # attempt 1 dies before 4 completes
    board.publish("src", 0, 1, 4, {("t", 0): 38})  # attempt 2, restored from 3
    assert board.offsets_at(4) == {("t", 0): 38}


def test_a_missing_subtask_is_reported() -> None:
    board = OffsetsBoard()
    board.publish("src", 0, 2, 1, {("t", 0): 1})
    with pytest.raises(StateError, match="subtask 1 has no offsets"):
        board.offsets_at(1)


def test_each_job_run_has_a_board_of_its_own() -> None:
    """Readers and sinks reach the board through their context's services: one per run,
    so a sink never reads another job's offsets (it was a process global, keyed by run)."""
    run_a, run_b = JobServices(), JobServices()
    run_a.shared(OffsetsBoard).publish("src", 0, 1, 1, {("t", 0): 7})
    assert run_a.shared(OffsetsBoard) is run_a.shared(OffsetsBoard)
    assert run_a.shared(OffsetsBoard).offsets_at(1) == {("t", 0): 7}
    with pytest.raises(StateError, match="no KafkaSource of this job"):
        run_b.shared(OffsetsBoard).offsets_at(1)
