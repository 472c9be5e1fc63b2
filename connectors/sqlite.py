"""An exactly-once SQLite sink: checkpoint n's rows are applied together with a marker
for n in one SQLite transaction, so a replay can never apply them twice.

Delivery guarantee: EXACTLY-ONCE with checkpointing (two-phase commit, see
docs/architecture.md); without checkpointing the rows are applied at end of input.

The commit path, per subtask i and checkpoint n:

1. ``write``: ``row_fn(record)`` rows are buffered in memory for the open epoch.
2. pre-commit (barrier n): in one committed SQLite transaction, the buffered rows go into
   ``_streamflow_staged(sink, subtask, checkpoint_id, seq, row_json)``; the handle is
   ``{"checkpoint_id": n, "subtask": i, "rows": <count>}``.
3. commit (checkpoint n complete, or a restore from a checkpoint holding the handle), in
   ONE SQLite transaction: if ``_streamflow_commits`` has ``(sink, i, n)`` it was applied
   already, stop; else run ``statement`` over the staged rows in ``seq`` order, insert the
   marker, delete the staged rows, COMMIT.

``sink`` is the operator uid: keep it stable, and unique per database. Checkpoint ids must
not repeat within a job's lineage (the runtime numbers them on from a restore); a fresh
start (no restore) forgets the markers of its subtasks, since its ids begin again at 1.
Rows are JSON-staged: values must be None, int, float, str or bytes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite
import orjson

from streamflow.api.connector import SinkContext
from streamflow.api.delivery import DeliveryGuarantee
from streamflow.errors import ConfigError, ConnectorError, DataLossError, UserFunctionError
from streamflow.transactions.two_phase import TwoPhaseCommitSinkWriter

__all__ = ["ExactlyOnceSqliteSink", "SqliteSinkWriter"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS _streamflow_staged (
    sink TEXT NOT NULL, subtask INTEGER NOT NULL, checkpoint_id INTEGER NOT NULL,
    seq INTEGER NOT NULL, row_json TEXT NOT NULL,
    PRIMARY KEY (sink, subtask, checkpoint_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _streamflow_commits (
    sink TEXT NOT NULL, subtask INTEGER NOT NULL, checkpoint_id INTEGER NOT NULL,
    PRIMARY KEY (sink, subtask, checkpoint_id)
) WITHOUT ROWID;
"""
_BUSY_TIMEOUT = 30.0  # seconds; several subtasks (and processes) share the file

# Commits are serialised per database file within a process (SQLite has one writer at a
# time anyway; queueing here beats spinning on SQLITE_BUSY). Keyed by loop, because an
# asyncio.Lock belongs to one event loop.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _lock_for(path: str) -> asyncio.Lock:
    return _LOCKS.setdefault(asyncio.get_running_loop(), {}).setdefault(path, asyncio.Lock())


@dataclass(frozen=True, slots=True)
class ExactlyOnceSqliteSink:
    """Apply ``statement`` to ``row_fn(record)`` for every record, exactly once.

    Example::

        ExactlyOnceSqliteSink(
            "counts.db", table="counts",
            create_sql="CREATE TABLE IF NOT EXISTS counts(word TEXT PRIMARY KEY, n INTEGER)",
            statement="INSERT INTO counts(word, n) VALUES (?, ?) "
                      "ON CONFLICT(word) DO UPDATE SET n=excluded.n",
            row_fn=lambda r: (r[0], r[1]),
        )

    ``table`` is the target table; it must exist after ``create_sql`` (run at open, so
    make it idempotent with IF NOT EXISTS). Rows of an epoch are buffered in memory until
    its checkpoint.
    """

    # Declared for the job: restoring past a damaged completed checkpoint would duplicate
    # this sink's committed output, so it is refused unless allowed.
    delivery_guarantee: ClassVar[DeliveryGuarantee] = DeliveryGuarantee.EXACTLY_ONCE

    db_path: str | Path
    _: KW_ONLY
    table: str
    statement: str
    row_fn: Callable[[Any], Sequence[Any]]
    create_sql: str | None = None

    def __post_init__(self) -> None:
        try:
            path = os.fspath(self.db_path)
        except TypeError as exc:
            raise ConfigError(f"ExactlyOnceSqliteSink db_path must be a path, got {self.db_path!r}") from exc
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ConfigError(
                f"ExactlyOnceSqliteSink needs a database file path, got {path!r}; every "
                "connection to :memory: is a different database",
                value=path,
            )
        object.__setattr__(self, "db_path", path)
        for name in ("table", "statement"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"ExactlyOnceSqliteSink {name} must be a non-empty str, got {value!r}", value=value)
        if not callable(self.row_fn):
            raise ConfigError(
                f"ExactlyOnceSqliteSink row_fn must be a callable record -> tuple of values, got {self.row_fn!r}",
                value=repr(self.row_fn),
            )
        if self.create_sql is not None and not isinstance(self.create_sql, str):
            raise ConfigError(f"create_sql must be a str or None, got {self.create_sql!r}", value=repr(self.create_sql))

    def create_writer(self, ctx: SinkContext) -> SqliteSinkWriter:
        return SqliteSinkWriter(ctx, self)


class _RowsTxn:
    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []


class SqliteSinkWriter(TwoPhaseCommitSinkWriter[_RowsTxn]):
    """One subtask's writer; one aiosqlite connection (WAL mode, busy timeout)."""

    def __init__(self, ctx: SinkContext, config: ExactlyOnceSqliteSink) -> None:
        super().__init__(ctx)
        self._config = config
        self._path = os.path.abspath(str(config.db_path))
        self._sink = ctx.operator_uid
        self._conn: aiosqlite.Connection | None = None
        self._lock: asyncio.Lock | None = None

    async def open(self) -> None:
        self._lock = _lock_for(self._path)
        try:
            self._conn = await aiosqlite.connect(self._path, timeout=_BUSY_TIMEOUT, isolation_level=None)
            await self._set_up(self._conn, self._lock)
            await super().open()
        except BaseException:
            # close() may never come after a failed open; do not leak the worker thread.
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
            raise

    async def _set_up(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        try:
            async with lock:
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT * 1000)}")
                await conn.executescript(_SCHEMA)
                if self._config.create_sql:
                    await conn.executescript(self._config.create_sql)
                cur = await conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?",
                    (self._config.table,),
                )
                found = await cur.fetchone()
        except sqlite3.Error as exc:
            raise ConnectorError(
                f"ExactlyOnceSqliteSink cannot set up {self._path!r}: {exc}; check the path, "
                "its permissions and create_sql",
                path=self._path,
            ) from exc
        if found is None:
            raise ConfigError(
                f"ExactlyOnceSqliteSink: table {self._config.table!r} does not exist in "
                f"{self._path!r}; create it first or pass create_sql='CREATE TABLE IF NOT EXISTS ...'",
                path=self._path,
                value=self._config.table,
            )

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    # -- the transaction steps -----------------------------------------------------------

    async def begin(self) -> _RowsTxn:
        return _RowsTxn()

    async def write_to(self, txn: _RowsTxn, records: list[Any]) -> None:
        row_fn = self._config.row_fn
        for record in records:
            try:
                row = tuple(row_fn(record))
            except Exception as exc:
                raise UserFunctionError(
                    f"row_fn of sink {self._sink!r} failed on record {record!r:.200}: {exc!r}; "
                    "it must return a tuple of SQL values for every record",
                    operator=self._sink,
                    subtask=self.ctx.subtask_index,
                    position=None,
                    record=repr(record)[:200],
                ) from exc
            txn.rows.append(row)

    async def pre_commit(self, txn: _RowsTxn, checkpoint_id: int) -> Any:
        handle = {"checkpoint_id": checkpoint_id, "subtask": self.ctx.subtask_index, "rows": len(txn.rows)}
        if not txn.rows:
            return handle  # nothing to stage; commit is a no-op
        key = (self._sink, self.ctx.subtask_index, checkpoint_id)
        staged = [(*key, seq, _dump_row(row)) for seq, row in enumerate(txn.rows)]
        async with self._transaction("stage rows") as conn:
            # A lingering stage of the same key (an earlier attempt) is replaced, not added to.
            await conn.execute(
                "DELETE FROM _streamflow_staged WHERE sink = ? AND subtask = ? AND checkpoint_id = ?", key
            )
            await conn.executemany("INSERT INTO _streamflow_staged VALUES (?, ?, ?, ?, ?)", staged)
        txn.rows = []
        return handle

    async def commit(self, handle: Any) -> None:
        try:
            key = (self._sink, int(handle["subtask"]), int(handle["checkpoint_id"]))
            expected = int(handle["rows"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ConnectorError(f"not a SQLite sink transaction handle: {handle!r}", handle=repr(handle)) from exc
        if expected == 0:
            return
        where = "sink = ? AND subtask = ? AND checkpoint_id = ?"
        async with self._transaction("commit") as conn:
            cur = await conn.execute(f"SELECT 1 FROM _streamflow_commits WHERE {where}", key)
            if await cur.fetchone() is not None:
                return  # applied before: idempotent
            cur = await conn.execute(f"SELECT row_json FROM _streamflow_staged WHERE {where} ORDER BY seq", key)
            rows = [_load_row(r[0]) for r in await cur.fetchall()]
            if len(rows) != expected:
                raise DataLossError(
                    f"sink {self._sink!r}: checkpoint {key[2]} of subtask {key[1]} staged "
                    f"{expected} rows but {len(rows)} are left in _streamflow_staged of "
                    f"{self._path!r} and no commit marker exists: data of a completed checkpoint "
                    "is lost. Was the table edited, or the sink uid reused by another job?",
                    checkpoint_id=key[2],
                    subtask=key[1],
                )
            try:
                await conn.executemany(self._config.statement, rows)
            except sqlite3.Error as exc:
                raise ConnectorError(
                    f"sink {self._sink!r}: statement {self._config.statement!r} failed on the rows "
                    f"of checkpoint {key[2]}: {exc}; fix the statement or row_fn",
                    checkpoint_id=key[2],
                ) from exc
            await conn.execute("INSERT INTO _streamflow_commits VALUES (?, ?, ?)", key)
            await conn.execute(f"DELETE FROM _streamflow_staged WHERE {where}", key)

    async def abort(self, txn: _RowsTxn) -> None:
        txn.rows = []  # never left memory

    async def abort_lingering(self) -> None:
        mine, p = self.ctx.subtask_index, self.ctx.parallelism
        owned = "(subtask = ? OR (? = 0 AND subtask >= ?))"
        live = [int(h["checkpoint_id"]) for h in self.pending_handles()]
        spare = f" AND NOT (subtask = ? AND checkpoint_id IN ({', '.join('?' * len(live))}))" if live else ""
        async with self._transaction("abort lingering transactions") as conn:
            await conn.execute(
                f"DELETE FROM _streamflow_staged WHERE sink = ? AND {owned}{spare}",
                (self._sink, mine, mine, p, *((mine, *live) if live else ())),
            )
            if self.ctx.restored_state is None:
                # A fresh start numbers checkpoints from 1 again: old markers would make
                # its commits look already applied.
                await conn.execute(
                    f"DELETE FROM _streamflow_commits WHERE sink = ? AND {owned}", (self._sink, mine, mine, p)
                )

    # -- helpers -------------------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the per-file lock; ROLLBACK on any error."""
        conn, lock = self._conn, self._lock
        if conn is None or lock is None:
            raise ConnectorError(f"sink {self._sink!r}: {action} before open() or after close()")
        async with lock:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise ConnectorError(
                    f"sink {self._sink!r}: {action} in {self._path!r} failed: {exc}",
                    path=self._path,
                ) from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"type {type(value).__name__} is not a SQL value")


def _dump_row(row: tuple[Any, ...]) -> str:
    try:
        return orjson.dumps(row, default=_json_default).decode("utf-8")
    except TypeError as exc:  # orjson.JSONEncodeError
        raise ConnectorError(
            f"cannot stage row {row!r:.200}: {exc}; row_fn must return None, int, float, str or bytes values",
            record=repr(row)[:200],
        ) from exc


def _load_row(text: str) -> tuple[Any, ...]:
    return tuple(
        base64.b64decode(v["$bytes"]) if isinstance(v, dict) else v for v in orjson.loads(text)
    )
