"""Helpers shared by the MySQL sink tests: a table per test, contexts, sinks, a crash."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from streamflow.api.connector import SinkContext, SinkWriter
from streamflow.connectors.mysql import DeliveryGuarantee, MySqlSink
from streamflow.connectors.mysql.xa_writer import MySqlXaWriter
from streamflow.testing.mysql import execute, query

EO = DeliveryGuarantee.EXACTLY_ONCE
ALO = DeliveryGuarantee.AT_LEAST_ONCE


def new_table(url: str, prefix: str = "t") -> str:
    """A new table ``(k VARCHAR, v INT, UNIQUE (k, v))``: a duplicate row fails loudly."""
    table = f"{prefix}_{secrets.token_hex(3)}"
    execute(url, f"CREATE TABLE {table} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
                 "k VARCHAR(32) NOT NULL, v INT NOT NULL, UNIQUE KEY kv (k, v)) ENGINE=InnoDB")
    return table


def sink(url: str, table: str, **kwargs: Any) -> MySqlSink:
    settings: dict[str, Any] = {
        "table": table,
        "statement": f"INSERT INTO {table} (k, v) VALUES (%s, %s)",
        "row_fn": lambda r: r,
        "delivery_guarantee": EO,
        "batch_size": 4,
    }
    settings.update(kwargs)
    return MySqlSink(url, **settings)


def ctx(job: str, *, subtask: int = 0, parallelism: int = 1, restored: list[Any] | None = None,
        checkpointing: bool = True) -> SinkContext:
    return SinkContext(job_name=job, operator_uid="out", subtask_index=subtask, parallelism=parallelism,
                       checkpointing=checkpointing, checkpoint_interval=1.0, restored_state=restored)


async def opened(s: MySqlSink, context: SinkContext) -> Any:
    writer = s.create_writer(context)
    await writer.open()
    return writer


async def crash(writer: SinkWriter, url: str | None = None) -> None:
    """Drop ``writer`` as a dying process would: its sessions end without a word, so the
    server rolls back the open transaction and keeps the prepared ones. With ``url``, wait
    until the server has seen the sessions end (a prepared xid is then detached)."""
    assert isinstance(writer, MySqlXaWriter)
    sessions = [c.server_thread_id[0] for c in [*writer._idle, *writer._prepared_on.values()]]
    writer._close_all()
    await asyncio.sleep(0.01)  # the loop closes the sockets
    deadline = time.monotonic() + 10
    while url is not None and sessions and query(
        url, f"SELECT count(*) FROM information_schema.processlist WHERE id IN ({', '.join(map(str, sessions))})"
    )[0][0]:
        assert time.monotonic() < deadline, "the server did not notice the sessions end"
        await asyncio.sleep(0.02)


def rows(url: str, table: str) -> list[tuple[str, int]]:
    return [(k, int(v)) for k, v in query(url, f"SELECT k, v FROM {table} ORDER BY seq")]


def records(key: str, n: int, start: int = 1) -> list[tuple[str, int]]:
    return [(key, i) for i in range(start, start + n)]
