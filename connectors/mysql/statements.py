"""Records to rows, and rows to the user's statement in batches (executemany).

aiomysql turns ``INSERT ... VALUES (%s, ...) [ON DUPLICATE KEY UPDATE ...]`` run by
``executemany`` into multi-row INSERTs, one round trip per ~1 MB of rows. When a batch
fails, its rows are run one at a time to find the record that broke it, so the error can
name the table, the statement and that record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import aiomysql
import pymysql

from streamflow.connectors.mysql.connection import is_connection_lost
from streamflow.errors import ConnectorError, UserFunctionError

__all__ = ["MySqlStatementError", "RowBatch", "StatementRunner"]


class MySqlStatementError(ConnectorError):
    """The server rejected the sink's statement for a record (bad value, duplicate key,
    wrong SQL). Not retried: the same record would fail again.

    Fields: ``operator``, ``subtask``, ``table``, ``statement``, ``record`` (repr), ``code``.
    """

    retriable = False


class RowBatch:
    """Rows waiting to be written, with the records they came from (for error messages)."""

    __slots__ = ("records", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.records: list[Any] = []

    def __len__(self) -> int:
        return len(self.rows)

    def take(self) -> tuple[list[tuple[Any, ...]], list[Any]]:
        rows, records = self.rows, self.records
        self.rows, self.records = [], []
        return rows, records


class StatementRunner:
    """Runs one sink's statement over its rows; knows its name for error messages."""

    def __init__(self, *, table: str, statement: str, row_fn: Callable[[Any], Sequence[Any]],
                 operator: str, subtask: int) -> None:
        self.table = table
        self.statement = statement
        self._row_fn = row_fn
        self._operator = operator
        self._subtask = subtask
        self.where = f"MySqlSink {operator!r}[{subtask}]"

    def add(self, batch: RowBatch, records: list[Any]) -> None:
        """Map ``records`` through ``row_fn`` into ``batch``."""
        row_fn, rows = self._row_fn, batch.rows
        for record in records:
            try:
                rows.append(tuple(row_fn(record)))
            except Exception as exc:
                raise UserFunctionError(
                    f"row_fn of {self.where} failed on record {record!r:.200}: {exc!r}; it must "
                    f"return a tuple of SQL values for the statement on table {self.table!r}",
                    operator=self._operator, subtask=self._subtask, position=None,
                    record=repr(record)[:200],
                ) from exc
        batch.records.extend(records)

    async def execute(self, conn: aiomysql.Connection, batch: RowBatch) -> None:
        """Write the batch's rows with one executemany; empties the batch."""
        if not batch.rows:
            return
        rows, records = batch.take()
        async with conn.cursor() as cur:
            try:
                await cur.executemany(self.statement, rows)
                return
            except pymysql.MySQLError as exc:
                if is_connection_lost(exc):
                    raise self.lost(exc, "writing rows") from exc
                failure = exc
            # Find the record that broke the batch (the attempt fails either way).
            for row, record in zip(rows, records):
                try:
                    await cur.execute(self.statement, row)
                except pymysql.MySQLError as exc:
                    if is_connection_lost(exc):
                        raise self.lost(exc, "writing rows") from exc
                    raise self._rejected(exc, record, row) from exc
            raise self._rejected(failure, None, None) from failure

    def lost(self, exc: BaseException, action: str) -> ConnectorError:
        return ConnectorError(
            f"{self.where}: the connection to MySQL broke while {action}: {exc!r}; the attempt "
            "fails and a restart resumes from the last checkpoint",
            operator=self._operator, subtask=self._subtask,
        )

    def _rejected(self, exc: pymysql.MySQLError, record: Any, row: tuple[Any, ...] | None) -> MySqlStatementError:
        code = exc.args[0] if exc.args else None
        what = (f"on record {record!r:.200} (row {row!r:.200})" if row is not None
                else "on a batch whose rows all pass one by one (is the batch over max_allowed_packet?)")
        return MySqlStatementError(
            f"{self.where}: table {self.table!r} rejected statement {self.statement!r} {what}: "
            f"{exc.args[-1] if exc.args else exc!r} (error {code}); fix row_fn, the statement or the table",
            operator=self._operator, subtask=self._subtask, table=self.table,
            statement=self.statement, record=repr(record)[:200], code=code,
        )
