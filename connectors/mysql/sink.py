"""MySqlSink: write records as rows of a MySQL or MariaDB table, exactly once (XA) or at
least once (idempotent upserts).

* ``EXACTLY_ONCE``: one XA transaction per subtask and checkpoint, prepared at the
  barrier and committed when the checkpoint completes (:mod:`.xa_writer`). Readers see a
  checkpoint's rows when it completes. The user needs the ``XA_RECOVER_ADMIN`` privilege
  on MySQL 8 (MariaDB: none beyond the tables').
* ``AT_LEAST_ONCE``: autocommit batches, flushed at every barrier (:mod:`.upsert_writer`);
  the statement must be an upsert, since a restore writes some rows again.

Records become rows through ``row_fn(record) -> tuple`` and go into ``statement``, an SQL
statement with ``%s`` placeholders, written in batches of ``batch_size`` by executemany.
The table is the user's to create (see the examples for DDL); the sink only checks that
it exists. The exactly-once mode also creates its markers table (``marker_table``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any

import aiomysql

from streamflow.api.connector import SinkContext, SinkWriter
from streamflow.api.delivery import DeliveryGuarantee, parse_guarantee
from streamflow.connectors.mysql.connection import MySqlAddress, check_connect_args, parse_mysql_url, table_exists
from streamflow.connectors.mysql.statements import StatementRunner
from streamflow.connectors.mysql.upsert_writer import MySqlUpsertWriter
from streamflow.connectors.mysql.xa_writer import MySqlXaWriter
from streamflow.errors import ConfigError

__all__ = ["MySqlSink"]

_NAME = r"[A-Za-z0-9_$]+"


@dataclass(frozen=True, slots=True)
class MySqlSink:
    """Apply ``statement`` to ``row_fn(record)`` for every record.

    Example::

        MySqlSink(
            "mysql://etl:secret@db:3306/shop", table="minute_totals",
            statement="INSERT INTO minute_totals (user_id, minute, n, total) "
                      "VALUES (%s, %s, %s, %s)",
            row_fn=lambda t: (t.user, t.minute, t.count, t.total),
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
        )

    Args:
        url: ``mysql://user:password@host:port/database``.
        table: the table the statement writes (checked to exist; named in errors).
        statement: SQL with ``%s`` placeholders, one per value of a row. For
            AT_LEAST_ONCE, an upsert (``INSERT ... ON DUPLICATE KEY UPDATE``).
        row_fn: ``record -> tuple of values``.
        delivery_guarantee: AT_LEAST_ONCE (default) or EXACTLY_ONCE.
        batch_size: rows per executemany.
        marker_table: EXACTLY_ONCE's table of commit markers (created if missing).
        connect_args: further ``aiomysql.connect`` arguments (``ssl``, timeouts).
    """

    url: str
    _: KW_ONLY
    table: str
    statement: str
    row_fn: Callable[[Any], Sequence[Any]]
    delivery_guarantee: DeliveryGuarantee = DeliveryGuarantee.AT_LEAST_ONCE
    batch_size: int = 1000
    marker_table: str = "_streamflow_xa_markers"
    connect_args: Mapping[str, Any] = field(default_factory=dict)
    address: MySqlAddress = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", parse_mysql_url(self.url, "MySqlSink"))
        object.__setattr__(self, "delivery_guarantee", parse_guarantee(
            self.delivery_guarantee, "MySqlSink", (DeliveryGuarantee.AT_LEAST_ONCE, DeliveryGuarantee.EXACTLY_ONCE)))
        check_names(self, "MySqlSink")
        if not isinstance(self.marker_table, str) or not _is_name(self.marker_table):
            raise ConfigError(f"MySqlSink marker_table must be a plain table name, got {self.marker_table!r}",
                              value=repr(self.marker_table))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"MySqlSink batch_size must be an int >= 1, got {self.batch_size!r}",
                              value=repr(self.batch_size))
        check_connect_args(self.connect_args, "MySqlSink")
        object.__setattr__(self, "connect_args", MappingProxyType(dict(self.connect_args)))

    def runner(self, ctx: SinkContext) -> StatementRunner:
        return StatementRunner(table=self.table, statement=self.statement, row_fn=self.row_fn,
                               operator=ctx.operator_uid, subtask=ctx.subtask_index)

    async def check_table(self, conn: aiomysql.Connection, where: str) -> None:
        await check_table_exists(conn, self.table, self.address, where)

    @property
    def stateful(self) -> bool:
        """Only EXACTLY_ONCE keeps state (prepared XA transactions, whose xids carry the
        uid): AT_LEAST_ONCE needs no ``.uid(...)`` for savepoints."""
        return self.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE

    def create_writer(self, ctx: SinkContext) -> SinkWriter:
        if self.delivery_guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            return MySqlXaWriter(ctx, self)
        return MySqlUpsertWriter(ctx, self)


def _is_name(value: str) -> bool:
    return re.fullmatch(_NAME, value) is not None


def check_names(sink: Any, what: str) -> None:
    """ConfigError unless ``sink`` has a str table and statement and a callable row_fn."""
    for name in ("table", "statement"):
        value = getattr(sink, name)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{what} {name} must be a non-empty str, got {value!r}", value=repr(value))
    if not callable(sink.row_fn):
        raise ConfigError(f"{what} row_fn must be a callable record -> tuple of values, got {sink.row_fn!r}",
                          value=repr(sink.row_fn))


async def check_table_exists(conn: aiomysql.Connection, table: str, address: MySqlAddress, where: str) -> None:
    """ConfigError if ``table`` (``name`` or ``schema.name``) does not exist."""
    if not await table_exists(conn, table):
        raise ConfigError(
            f"{where}: table {table!r} does not exist in {address}; the sink does not create "
            "tables: run your CREATE TABLE first (the examples show the DDL)",
            value=table,
        )
