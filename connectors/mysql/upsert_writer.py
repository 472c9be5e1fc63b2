"""The at-least-once MySQL sink writer: idempotent upserts, flushed at every barrier.

Rows go out by ``executemany`` every ``batch_size`` records on one autocommit
connection, and every barrier (and end of input) writes what is left before the
checkpoint is acknowledged. A restore replays the records after the checkpoint, so the
statement must make a second write of a row harmless: ``INSERT ... ON DUPLICATE KEY
UPDATE`` with the row's final values (not increments), or ``REPLACE``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import aiomysql

from streamflow.api.connector import SinkContext, SinkWriterBase
from streamflow.connectors.mysql.connection import connect
from streamflow.connectors.mysql.settings import MySqlSinkSettings
from streamflow.connectors.mysql.statements import RowBatch

__all__ = ["MySqlUpsertWriter"]

_log = logging.getLogger(__name__)
_IDEMPOTENT = re.compile(r"ON\s+DUPLICATE\s+KEY\s+UPDATE|^\s*REPLACE\s|^\s*INSERT\s+IGNORE\s", re.IGNORECASE)


class MySqlUpsertWriter(SinkWriterBase):
    """One subtask's AT_LEAST_ONCE writer."""

    def __init__(self, ctx: SinkContext, sink: MySqlSinkSettings) -> None:
        self.ctx = ctx
        self._sink = sink
        self._runner = sink.runner(ctx)
        self._batch = RowBatch()
        self._conn: aiomysql.Connection | None = None

    async def open(self) -> None:
        if not _IDEMPOTENT.search(self._sink.statement):
            _log.warning(
                "%s is AT_LEAST_ONCE but its statement is not an upsert (INSERT ... ON DUPLICATE "
                "KEY UPDATE, REPLACE or INSERT IGNORE): rows replayed after a restore are written "
                "twice or fail on a duplicate key", self._runner.where,
            )
        self._conn = await connect(self._sink.address, self._runner.where, self._sink.connect_args)
        try:
            await self._sink.check_table(self._conn, self._runner.where)
        except BaseException:
            await self.close()
            raise

    async def write(self, records: list[Any]) -> None:
        self._runner.add(self._batch, records)
        if len(self._batch) >= self._sink.batch_size:
            await self._flush()

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        await self._flush()
        return []

    async def finish(self) -> None:
        await self._flush()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.close()

    async def _flush(self) -> None:
        assert self._conn is not None, "write before open"
        await self._runner.execute(self._conn, self._batch)
