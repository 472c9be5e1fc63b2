"""MySqlOffsetsSink: results and the Kafka source's offsets in ONE local MySQL transaction.

The pattern from the field for databases without XA (or users who may not use it): the
database itself records how far the input was consumed, atomically with the results, and
a job started without a checkpoint resumes from there (:func:`load_offsets`, passed to
``KafkaSource(starting_offsets=StartingOffsets.offsets(...))``).

The commit path (one sink subtask; parallelism 1, so one transaction covers all results):

1. ``write``: rows are buffered in memory for the open epoch.
2. Barrier n: the buffered rows and the NEXT offsets every KafkaSource subtask stored in
   checkpoint n (:mod:`streamflow.connectors.kafka.progress`) become the handle, kept in
   checkpoint n itself: nothing is sent to MySQL yet.
3. Checkpoint n completes: BEGIN; read this sink's progress row FOR UPDATE; unless it
   says n was applied already, run the statement over the rows, upsert the offsets and
   the progress row; COMMIT. A restore applies its checkpoint's pending handles the same
   way, so a handle is applied once whatever crashes in between.

The progress row holds ``(run, checkpoint)``: checkpoint ids start at 1 again in a job
started afresh, so "already applied" means the same lineage (``run``, carried by the
handles through restores) at a checkpoint >= n.

Starting from the offsets in MySQL is exact when the pipeline keeps no state across
checkpoints that MySQL does not hold: stateless transforms, or aggregates applied as
increments (``ON DUPLICATE KEY UPDATE total = total + VALUES(total)``), as in
``examples/kafka_offsets_in_mysql.py``. Restoring a checkpoint (which holds keyed state
and the source offsets) stays the way to resume a stateful job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import aiomysql
import pymysql

from streamflow.api.connector import SinkContext
from streamflow.api.delivery import DeliveryGuarantee
from streamflow.connectors.kafka.progress import OffsetsBoard
from streamflow.connectors.mysql.connection import (
    MySqlAddress,
    check_connect_args,
    connect,
    create_tables,
    is_connection_lost,
    parse_mysql_url,
    table_exists,
)
from streamflow.connectors.mysql.sink import check_names, check_table_exists
from streamflow.connectors.mysql.statements import RowBatch, StatementRunner
from streamflow.errors import ConfigError, ConnectorError
from streamflow.transactions.two_phase import TwoPhaseCommitSinkWriter

__all__ = ["MySqlOffsetsSink", "load_offsets"]

OFFSETS_TABLE = "_streamflow_kafka_offsets"
PROGRESS_TABLE = "_streamflow_progress"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} ("
    " name VARCHAR(255) NOT NULL, topic VARCHAR(249) NOT NULL, `partition` INT NOT NULL,"
    " next_offset BIGINT NOT NULL, checkpoint_id BIGINT NOT NULL,"
    " updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),"
    " PRIMARY KEY (name, topic, `partition`)) ENGINE=InnoDB",
    f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} ("
    " name VARCHAR(255) NOT NULL, sink VARCHAR(255) NOT NULL, run CHAR(32) NOT NULL,"
    " checkpoint_id BIGINT NOT NULL, PRIMARY KEY (name, sink)) ENGINE=InnoDB",
)


@dataclass(frozen=True, slots=True)
class MySqlOffsetsSink:
    """Apply ``statement`` to ``row_fn(record)`` for every record, and store the Kafka
    source offsets in the same transaction, once per completed checkpoint.

    Args:
        url: ``mysql://user:password@host:port/database``.
        table, statement, row_fn: as :class:`~streamflow.connectors.mysql.MySqlSink`. The
            rows wait in the checkpoint until it completes, so their values must pickle
            (they come back exactly: a datetime or Decimal stays one).
        name: whose offsets these are (like a consumer group); :func:`load_offsets` reads
            them back by this name. Default: the job name.
        source_uid: the uid of the KafkaSource whose offsets to store; default: every
            KafkaSource of the job.
        batch_size: rows per executemany at commit.
        connect_args: further ``aiomysql.connect`` arguments.
    """

    # Declared for the job: restoring past a damaged completed checkpoint would duplicate
    # this sink's committed output, so it is refused unless allowed.
    delivery_guarantee: ClassVar[DeliveryGuarantee] = DeliveryGuarantee.EXACTLY_ONCE

    url: str
    _: KW_ONLY
    table: str
    statement: str
    row_fn: Callable[[Any], Sequence[Any]]
    name: str | None = None
    source_uid: str | None = None
    batch_size: int = 1000
    connect_args: Mapping[str, Any] = field(default_factory=dict)
    address: MySqlAddress = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", parse_mysql_url(self.url, "MySqlOffsetsSink"))
        check_names(self, "MySqlOffsetsSink")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"MySqlOffsetsSink batch_size must be an int >= 1, got {self.batch_size!r}",
                              value=repr(self.batch_size))
        check_connect_args(self.connect_args, "MySqlOffsetsSink")
        object.__setattr__(self, "connect_args", MappingProxyType(dict(self.connect_args)))

    def create_writer(self, ctx: SinkContext) -> MySqlOffsetsWriter:
        if ctx.parallelism != 1:
            raise ConfigError(
                f"MySqlOffsetsSink {ctx.operator_uid!r} runs at parallelism {ctx.parallelism}; it "
                "needs parallelism 1 (one transaction holds all results with the offsets): call "
                ".set_parallelism(1) on the sink",
                operator=ctx.operator_uid,
            )
        if not ctx.checkpointing:
            raise ConfigError(
                f"MySqlOffsetsSink {ctx.operator_uid!r} commits on checkpoint completion: enable "
                "checkpointing (env.enable_checkpointing(...))",
                operator=ctx.operator_uid,
            )
        return MySqlOffsetsWriter(ctx, self)


class MySqlOffsetsWriter(TwoPhaseCommitSinkWriter[RowBatch]):
    """The single writer; see the module docstring for the commit path."""

    def __init__(self, ctx: SinkContext, sink: MySqlOffsetsSink) -> None:
        super().__init__(ctx)
        self._sink = sink
        self._name = sink.name or ctx.job_name
        self._runner = StatementRunner(table=sink.table, statement=sink.statement, row_fn=sink.row_fn,
                                       operator=ctx.operator_uid, subtask=ctx.subtask_index)
        self.where = f"MySqlOffsetsSink {ctx.operator_uid!r}"
        # The lineage: carried on by the handles of a restore, new for a fresh start.
        runs = [e["handle"]["run"] for e in ctx.restored_state or []
                if isinstance(e, dict) and isinstance(e.get("handle"), dict) and "run" in e["handle"]]
        self._run = runs[-1] if runs else uuid.uuid4().hex
        self._conn: aiomysql.Connection | None = None

    async def open(self) -> None:
        self._conn = await connect(self._sink.address, self.where, self._sink.connect_args)
        try:
            await check_table_exists(self._conn, self._sink.table, self._sink.address, self.where)
            await create_tables(self._conn, *_DDL)
            await super().open()
        except BaseException:
            await self._disconnect()
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self._disconnect()

    async def begin(self) -> RowBatch:
        return RowBatch()

    async def write_to(self, txn: RowBatch, records: list[Any]) -> None:
        self._runner.add(txn, records)

    async def pre_commit(self, txn: RowBatch, checkpoint_id: int) -> Any:
        offsets = self.ctx.services.shared(OffsetsBoard).offsets_at(checkpoint_id, self._sink.source_uid)
        rows, _ = txn.take()
        return {"run": self._run, "checkpoint_id": checkpoint_id, "rows": rows,
                "offsets": sorted([t, p, o] for (t, p), o in offsets.items())}

    async def commit(self, handle: Any) -> None:
        try:
            run, checkpoint_id = str(handle["run"]), int(handle["checkpoint_id"])
            rows = [tuple(r) for r in handle["rows"]]
            offsets = [(str(t), int(p), int(o)) for t, p, o in handle["offsets"]]
        except (TypeError, KeyError, ValueError) as exc:
            raise ConnectorError(f"{self.where}: not an offsets-sink handle: {handle!r:.200}") from exc
        conn = self._conn
        assert conn is not None, "commit before open"
        uid = self.ctx.operator_uid
        try:
            async with conn.cursor() as cur:
                await cur.execute("BEGIN")
                try:
                    await cur.execute(f"SELECT run, checkpoint_id FROM {PROGRESS_TABLE} "
                                      "WHERE name = %s AND sink = %s FOR UPDATE", (self._name, uid))
                    done = await cur.fetchone()
                    if done is not None and done[0] == run and int(done[1]) >= checkpoint_id:
                        await cur.execute("ROLLBACK")
                        return  # applied before
                    for start in range(0, len(rows), self._sink.batch_size):
                        batch = RowBatch()
                        batch.rows = rows[start:start + self._sink.batch_size]
                        batch.records = list(batch.rows)  # the rows are what error messages show
                        await self._runner.execute(conn, batch)
                    if offsets:
                        await cur.executemany(
                            f"INSERT INTO {OFFSETS_TABLE} (name, topic, `partition`, next_offset, checkpoint_id) "
                            "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
                            "next_offset = VALUES(next_offset), checkpoint_id = VALUES(checkpoint_id)",
                            [(self._name, t, p, o, checkpoint_id) for t, p, o in offsets],
                        )
                    await cur.execute(
                        f"INSERT INTO {PROGRESS_TABLE} (name, sink, run, checkpoint_id) VALUES (%s, %s, %s, %s) "
                        "ON DUPLICATE KEY UPDATE run = VALUES(run), checkpoint_id = VALUES(checkpoint_id)",
                        (self._name, uid, run, checkpoint_id),
                    )
                    await cur.execute("COMMIT")
                except BaseException:
                    if not conn.closed:
                        await cur.execute("ROLLBACK")
                    raise
        except pymysql.MySQLError as exc:
            if is_connection_lost(exc):
                raise self._runner.lost(exc, f"committing checkpoint {checkpoint_id}") from exc
            raise ConnectorError(f"{self.where}: committing checkpoint {checkpoint_id} failed: {exc!r}",
                                 operator=uid, checkpoint_id=checkpoint_id) from exc

    async def abort(self, txn: RowBatch) -> None:
        txn.take()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.close()


async def load_offsets(url: str, name: str, connect_args: Mapping[str, Any] | None = None
                       ) -> dict[tuple[str, int], int]:
    """The NEXT offsets stored under ``name`` by :class:`MySqlOffsetsSink`, as
    ``{(topic, partition): offset}`` for ``StartingOffsets.offsets(...)``; empty when
    nothing was stored yet (then the source's default applies)."""
    address = parse_mysql_url(url, "load_offsets")
    conn = await connect(address, "load_offsets", connect_args)
    try:
        if not await table_exists(conn, OFFSETS_TABLE):
            return {}
        async with conn.cursor() as cur:
            await cur.execute(f"SELECT topic, `partition`, next_offset FROM {OFFSETS_TABLE} WHERE name = %s",
                              (name,))
            return {(str(t), int(p)): int(o) for t, p, o in await cur.fetchall()}
    finally:
        conn.close()
