"""Independent readers of the soak's committed output: plain aiokafka and plain PyMySQL.

Nothing here comes from streamflow (neither its connectors nor its test kit, which share
code with the sinks under test): the soak's verdict must not rest on the code it judges.

* :class:`CommittedKafkaOutput` is one ``read_committed`` consumer per round, assigned to
  every partition of the output topic from the beginning and kept across the round's job
  processes, so the progress shown after each kill is what a downstream consumer has
  seen so far. :meth:`~CommittedKafkaOutput.read_to_end` also proves that no transaction
  was left open: the last stable offset of every partition must reach its high
  watermark (an open transaction would hold read_committed consumers back).
* :func:`mysql_rows` is a plain ``SELECT`` in insertion order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from urllib.parse import unquote, urlsplit

import pymysql
from aiokafka import AIOKafkaConsumer, TopicPartition

from soak_data import Result, parse_result

TABLE_MISSING = 1146  # ER_NO_SUCH_TABLE: the job has not created it yet


class OpenTransactionError(RuntimeError):
    """A partition's last stable offset stayed below its high watermark."""


class CommittedKafkaOutput:
    """What a ``read_committed`` consumer has seen of ``topic`` (partitions 0..n-1)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic = topic
        self._assigned = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                          enable_auto_commit=False, auto_offset_reset="earliest")
        self._uncommitted = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted",
                                             enable_auto_commit=False)
        self._results: dict[int, list[Result]] = {p: [] for p in range(partitions)}

    async def __aenter__(self) -> CommittedKafkaOutput:
        await self._consumer.start()
        await self._uncommitted.start()
        self._consumer.assign(self._assigned)
        await self._consumer.seek_to_beginning(*self._assigned)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._consumer.stop()
        await self._uncommitted.stop()

    @property
    def results(self) -> list[Result]:
        """Everything read so far, by partition, each in offset order."""
        return [r for p in sorted(self._results) for r in self._results[p]]

    async def catch_up(self, timeout: float = 30.0) -> int:
        """Read up to the last stable offsets of now; return how many results are read."""
        end = await self._consumer.end_offsets(self._assigned)  # read_committed: the LSOs
        deadline = time.monotonic() + timeout
        while [tp for tp in self._assigned if await self._consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: the committed records up to {end} not read in {timeout:.0f} s")
            batch = await self._consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                self._results[tp.partition].extend(parse_result(r.value.decode()) for r in records)
        return sum(len(r) for r in self._results.values())

    async def read_to_end(self, timeout: float = 60.0) -> list[Result]:
        """Wait until no transaction is open on the topic, read everything, return it."""
        deadline = time.monotonic() + timeout
        while True:
            stable = await self._consumer.end_offsets(self._assigned)
            high = await self._uncommitted.end_offsets(self._assigned)
            if stable == high:
                break
            if time.monotonic() > deadline:
                held = {tp.partition: (stable[tp], high[tp]) for tp in self._assigned if stable[tp] != high[tp]}
                raise OpenTransactionError(
                    f"{self.topic}: transactions still open after {timeout:.0f} s "
                    f"(partition: (last stable offset, high watermark)) {held}")
            await asyncio.sleep(0.5)
        await self.catch_up(max(1.0, deadline - time.monotonic()))
        return self.results


@contextmanager
def mysql_connect(url: str) -> Iterator[pymysql.connections.Connection]:
    """An autocommit PyMySQL connection to ``mysql://user:password@host:port/database``."""
    parts = urlsplit(url)
    conn = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=unquote(parts.username or "root"), password=unquote(parts.password or ""),
                           database=parts.path.lstrip("/") or None, autocommit=True, connect_timeout=10)
    with closing(conn):
        yield conn


def mysql_rows(url: str, table: str) -> list[Result]:
    """Every row of ``table`` in insertion order (``seq``); none if it does not exist yet."""
    try:
        with mysql_connect(url) as conn, conn.cursor() as cursor:
            cursor.execute(f"SELECT k, n, id FROM {table} ORDER BY seq")
            return [(str(k), int(n), int(i)) for k, n, i in cursor.fetchall()]
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == TABLE_MISSING:
            return []
        raise


def mysql_count(url: str, table: str) -> int:
    try:
        with mysql_connect(url) as conn, conn.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == TABLE_MISSING:
            return 0
        raise
