"""The exactly-once MySQL sink writer: one XA transaction per subtask and checkpoint epoch.

The commit path, on the two-phase-commit base (docs/architecture.md, "Two-phase-commit
sinks"):

1. The first record of an epoch takes a connection and runs ``XA START`` with a new
   xid (:mod:`.xids`). Rows go in by ``executemany`` every ``batch_size`` records.
2. Barrier n (``pre_commit``): the last rows, then the marker row (xid, job, uid,
   subtask, n) into the markers table, ``XA END``, ``XA PREPARE``. The handle
   ``{"xid", "checkpoint_id", "rows"}`` goes into checkpoint n. The connection stays
   with the prepared transaction (a session cannot start another XA transaction while
   one is prepared), so the next epoch takes another connection from the writer's pool.
3. Checkpoint n completes: ``XA COMMIT`` on the connection that prepared it (or any,
   once that one is gone: a prepared transaction outlives its session).
4. A restore commits the handles of the restored checkpoint the same way. A server that
   answers ``XAER_NOTA`` (unknown xid) may have committed it already, or lost it: the
   marker row, written inside the transaction, tells which. No marker: DataLossError.
5. Then every other prepared xid of this sink (``XA RECOVER``) of the subtask indices
   this writer owns is rolled back: transactions whose checkpoint never completed.

Markers older than :data:`MARKERS_KEPT` checkpoints of a subtask are deleted after each
commit: a restore never goes back that far.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiomysql
import pymysql

from streamflow.api.connector import SinkContext
from streamflow.connectors.mysql.connection import connect, create_tables, is_connection_lost
from streamflow.connectors.mysql.settings import MySqlSinkSettings
from streamflow.connectors.mysql.statements import RowBatch
from streamflow.connectors.mysql.xids import Xid, sink_key
from streamflow.errors import ConfigError, ConnectorError, DataLossError
from streamflow.transactions.two_phase import TwoPhaseCommitSinkWriter

__all__ = ["DETACH_WAIT", "MARKERS_KEPT", "MySqlXaWriter"]

MARKERS_KEPT = 1000
DETACH_WAIT = 30.0
"""Seconds a commit waits for a prepared xid still attached to the session of a dead
attempt (until the server notices the disconnect, it answers XAER_NOTA to others)."""
_XAER_NOTA = 1397
_NO_PRIVILEGE = (1227, 1044, 1142)
_log = logging.getLogger(__name__)


def markers_ddl(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS `{table}` ("
        " xid VARCHAR(160) NOT NULL PRIMARY KEY,"
        " sink_key CHAR(16) NOT NULL, subtask INT NOT NULL, checkpoint_id BIGINT NOT NULL,"
        " job VARCHAR(255) NOT NULL, operator_uid VARCHAR(255) NOT NULL,"
        " created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),"
        " KEY by_checkpoint (sink_key, subtask, checkpoint_id)"
        ") ENGINE=InnoDB"
    )


@dataclass(slots=True)
class XaTxn:
    """The open epoch: rows not yet sent, and once the first record came, its xid and
    connection."""

    batch: RowBatch = field(default_factory=RowBatch)
    xid: Xid | None = None
    conn: aiomysql.Connection | None = field(default=None, repr=False)
    rows: int = 0


class MySqlXaWriter(TwoPhaseCommitSinkWriter[XaTxn]):
    """One subtask's EXACTLY_ONCE writer; see the module docstring for the commit path."""

    def __init__(self, ctx: SinkContext, sink: MySqlSinkSettings) -> None:
        super().__init__(ctx)
        self._sink = sink
        self._runner = sink.runner(ctx)
        self.where = self._runner.where
        self._key = sink_key(ctx.job_name, ctx.operator_uid, sink.address.database)
        self._attempt = secrets.token_hex(4)
        self._count = 0
        self._next_checkpoint = 1
        self._idle: list[aiomysql.Connection] = []
        self._prepared_on: dict[Xid, aiomysql.Connection] = {}
        restored = [e.get("checkpoint_id", 0) for e in ctx.restored_state or [] if isinstance(e, dict)]
        if restored:
            self._next_checkpoint = max(int(c) for c in restored) + 1

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            conn = await self._take()
            try:
                await self._sink.check_table(conn, self.where)
                await create_tables(conn, markers_ddl(self._sink.marker_table))
            finally:
                self._give_back(conn)
            await super().open()
        except BaseException:
            self._close_all()
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._close_all()

    # -- the transaction steps -------------------------------------------------------------

    async def begin(self) -> XaTxn:
        return XaTxn()

    async def write_to(self, txn: XaTxn, records: list[Any]) -> None:
        self._runner.add(txn.batch, records)
        txn.rows += len(records)
        if len(txn.batch) >= self._sink.batch_size:
            await self._flush(txn)

    async def pre_commit(self, txn: XaTxn, checkpoint_id: int) -> Any:
        self._next_checkpoint = checkpoint_id + 1
        if txn.rows == 0:
            return {"xid": None, "checkpoint_id": checkpoint_id, "rows": 0}
        await self._flush(txn)
        assert txn.xid is not None and txn.conn is not None
        xid, conn = txn.xid, txn.conn
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    f"INSERT INTO `{self._sink.marker_table}` "
                    "(xid, sink_key, subtask, checkpoint_id, job, operator_uid) VALUES (%s, %s, %s, %s, %s, %s)",
                    (str(xid), self._key, self.ctx.subtask_index, checkpoint_id,
                     self.ctx.job_name, self.ctx.operator_uid),
                )
                await cur.execute(f"XA END {xid.sql()}")
                await cur.execute(f"XA PREPARE {xid.sql()}")
        except pymysql.MySQLError as exc:
            self._discard(conn)
            txn.conn = None
            raise self._failed(exc, f"preparing XA transaction {xid} of checkpoint {checkpoint_id}") from exc
        txn.conn = None
        self._prepared_on[xid] = conn
        return {"xid": xid.to_handle(), "checkpoint_id": checkpoint_id, "rows": txn.rows}

    async def commit(self, handle: Any) -> None:
        try:
            xid = Xid.from_handle(handle["xid"]) if handle["xid"] is not None else None
            checkpoint_id, rows = int(handle["checkpoint_id"]), int(handle["rows"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ConnectorError(f"{self.where}: not a MySQL XA handle: {handle!r}", handle=repr(handle)) from exc
        if xid is None:
            return
        conn = self._prepared_on.pop(xid, None)
        if conn is not None:
            try:
                await self._xa_commit(conn, xid, checkpoint_id, rows)
                self._give_back(conn)
                return
            except ConnectorError as exc:
                self._discard(conn)
                if not is_connection_lost(exc.__cause__ or exc):
                    raise
                # The preparing session is gone; the prepared transaction is not.
        conn = await self._take()
        try:
            await self._xa_commit(conn, xid, checkpoint_id, rows)
        except BaseException:
            self._discard(conn)
            raise
        self._give_back(conn)

    async def abort(self, txn: XaTxn) -> None:
        txn.batch.take()
        conn, txn.conn = txn.conn, None
        if conn is None or txn.xid is None:
            return
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"XA END {txn.xid.sql()}")
                await cur.execute(f"XA ROLLBACK {txn.xid.sql()}")
        except pymysql.MySQLError as exc:
            # Closing the session rolls back a transaction that was never prepared.
            _log.warning("%s: rolling back XA transaction %s failed (%r); closing its connection",
                         self.where, txn.xid, exc)
            self._discard(conn)
            return
        self._give_back(conn)

    async def abort_lingering(self) -> None:
        """Roll back every prepared xid of this sink (``XA RECOVER``) of the subtask
        indices this writer owns (its own; subtask 0 also every index >= parallelism)
        that is not one of this writer's live transactions."""
        mine, parallelism = self.ctx.subtask_index, self.ctx.parallelism
        live = set(self._prepared_on) | {Xid.from_handle(h["xid"]) for h in self.pending_handles() if h["xid"]}
        conn = await self._take()
        try:
            async with conn.cursor() as cur:
                try:
                    await cur.execute("XA RECOVER")
                except pymysql.MySQLError as exc:
                    raise self._recover_failed(exc) from exc
                found = [Xid.from_recover(row) for row in await cur.fetchall()]
                for xid in found:
                    if not xid.belongs_to(self._key) or xid in live:
                        continue
                    if xid.subtask == mine or (mine == 0 and xid.subtask >= parallelism):
                        _log.info("%s: rolling back lingering XA transaction %s", self.where, xid)
                        await cur.execute(f"XA ROLLBACK {xid.sql()}")
        except pymysql.MySQLError as exc:
            self._discard(conn)
            raise self._failed(exc, "rolling back lingering XA transactions") from exc
        self._give_back(conn)

    # -- helpers ---------------------------------------------------------------------------

    async def _flush(self, txn: XaTxn) -> None:
        if not txn.batch.rows:
            return
        if txn.conn is None:
            self._count += 1
            xid = Xid.of(self._key, self.ctx.subtask_index, self._next_checkpoint, self._attempt, self._count)
            conn = await self._take()
            try:
                async with conn.cursor() as cur:
                    await cur.execute(f"XA START {xid.sql()}")
            except pymysql.MySQLError as exc:
                self._discard(conn)
                raise self._failed(exc, f"starting XA transaction {xid}") from exc
            txn.xid, txn.conn = xid, conn
        try:
            await self._runner.execute(txn.conn, txn.batch)
        except ConnectorError:
            self._discard(txn.conn)  # the server rolls back the unprepared transaction
            txn.conn = None
            raise

    async def _xa_commit(self, conn: aiomysql.Connection, xid: Xid, checkpoint_id: int, rows: int) -> None:
        markers = f"`{self._sink.marker_table}`"
        deadline = time.monotonic() + DETACH_WAIT
        try:
            async with conn.cursor() as cur:
                while True:
                    try:
                        await cur.execute(f"XA COMMIT {xid.sql()}")
                        break
                    except pymysql.err.MySQLError as exc:
                        if not exc.args or exc.args[0] != _XAER_NOTA:
                            raise
                        await cur.execute(f"SELECT 1 FROM {markers} WHERE xid = %s", (str(xid),))
                        if await cur.fetchone() is not None:
                            break  # committed before, by an attempt that died before saying so
                        await cur.execute("XA RECOVER")
                        listed = any(Xid.from_recover(r) == xid for r in await cur.fetchall())
                        if not listed or time.monotonic() > deadline:
                            raise self._lost(xid, checkpoint_id, rows) from exc
                        # Prepared, but still attached to the session of a dying attempt:
                        # the server lets no one else commit it until it notices the end.
                        await asyncio.sleep(0.1)
                await cur.execute(
                    f"DELETE FROM {markers} WHERE sink_key = %s AND subtask = %s AND checkpoint_id < %s",
                    (self._key, xid.subtask, checkpoint_id - MARKERS_KEPT),
                )
        except pymysql.MySQLError as exc:
            raise self._failed(exc, f"committing XA transaction {xid} of checkpoint {checkpoint_id}") from exc

    def _lost(self, xid: Xid, checkpoint_id: int, rows: int) -> DataLossError:
        return DataLossError(
            f"{self.where}: XA transaction {xid} of checkpoint {checkpoint_id} ({rows} rows) is "
            f"unknown to the server (XAER_NOTA) and its marker row is not in "
            f"{self._sink.marker_table!r}: it was rolled back, so data of a completed checkpoint "
            "is lost. Was it rolled back by hand (XA ROLLBACK), or the database restored from a "
            "backup? Rerun the job from a checkpoint taken before that data, or repair the table.",
            operator=self.ctx.operator_uid, subtask=self.ctx.subtask_index, checkpoint_id=checkpoint_id,
        )

    def _recover_failed(self, exc: pymysql.MySQLError) -> Exception:
        if exc.args and exc.args[0] in _NO_PRIVILEGE:
            return ConfigError(
                f"{self.where}: XA RECOVER was refused ({exc.args[-1]}); the sink's user needs "
                "the XA_RECOVER_ADMIN privilege on MySQL 8 (GRANT XA_RECOVER_ADMIN ON *.* TO ...)",
                operator=self.ctx.operator_uid,
            )
        return self._failed(exc, "listing prepared XA transactions (XA RECOVER)")

    def _failed(self, exc: BaseException, action: str) -> ConnectorError:
        if is_connection_lost(exc):
            return self._runner.lost(exc, action)
        return ConnectorError(f"{self.where}: {action} failed: {exc!r}", operator=self.ctx.operator_uid,
                              subtask=self.ctx.subtask_index)

    async def _take(self) -> aiomysql.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return await connect(self._sink.address, self.where, self._sink.connect_args)

    def _give_back(self, conn: aiomysql.Connection) -> None:
        if not conn.closed:
            self._idle.append(conn)

    @staticmethod
    def _discard(conn: aiomysql.Connection | None) -> None:
        if conn is not None and not conn.closed:
            conn.close()

    def _close_all(self) -> None:
        """Close every connection. Prepared transactions survive their sessions; the open
        one, if any, is rolled back by the server."""
        for conn in [*self._idle, *self._prepared_on.values()]:
            self._discard(conn)
        self._idle.clear()
        self._prepared_on.clear()
        if self.current is not None:
            self._discard(self.current.conn)
