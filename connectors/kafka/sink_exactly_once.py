"""The exactly-once Kafka sink writer: Kafka transactions on the two-phase-commit base.

One transaction per subtask per checkpoint epoch, each on a transactional producer from
the subtask's bounded id pool (:mod:`.txn_ids`). The commit path, in order:

1. ``begin`` (after each barrier) only creates a transaction object. The first record
   takes the lowest free pooled id, its producer (created and initialised the first time
   the id is used, then kept) and ``begin_transaction``. A transaction that gets no
   record never reaches Kafka: its checkpoint commits it as a no-op.
2. ``write_to``: records go out in per-partition batches; delivery is not awaited.
3. ``pre_commit`` on barrier n: wait until every batch of the transaction is acknowledged
   (all its records are on the broker; the transaction is still open: "prepared"), and
   return the handle ``{transactional_id, producer_id, epoch, checkpoint_id, records,
   started_at}`` that checkpoint n stores.
4. ``commit`` when checkpoint n completes: ``commit_transaction`` on the live producer;
   the id is then RETIRING until a checkpoint taken after the commit completes. A handle
   without its live producer (restored from a checkpoint by a new process) is committed
   by EndTxn with its producer id and epoch (:mod:`.txn_resume`), never by initialising
   a producer, which would abort it. A transaction that can no longer be committed stops
   the job with DataLossError.
5. ``open`` after a restore: commit every restored handle (idempotent), hold their ids,
   then abort what is lingering: every pooled id of this subtask not held (InitProducerId
   aborts its open transaction), after a rescale the ids of the old subtasks whose
   handles this subtask received, and on subtask 0 every id of another layout that the
   brokers list as open (ListTransactions, :mod:`.txn_listing`: runs at another
   parallelism that no restored checkpoint names). After a rescale the base defers this
   until the first checkpoint of the new attempt completes: then every restored handle
   has been committed.

Transactional ids are ``{prefix}-{uid}-{subtask}of{parallelism}-{k}`` (see
:func:`.txn_ids.transactional_id` for why the parallelism is in there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidTxnState, KafkaError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState

from streamflow.api.connector import SinkContext
from streamflow.connectors.kafka.batching import Deliveries, RecordSender
from streamflow.connectors.kafka.sink_plain import ProducerSinkSettings, start_producer, stop_producer
from streamflow.connectors.kafka.txn_ids import IdState, TransactionalIdPool, id_layout, transactional_id
from streamflow.connectors.kafka.txn_resume import (
    INVALID_PRODUCER_EPOCH,
    INVALID_PRODUCER_ID_MAPPING,
    INVALID_TXN_STATE,
    PreparedTxn,
    TransactionCoordinator,
    lost_error,
    timeout_too_long_error,
)
from streamflow.errors import ConnectorError, StateError
from streamflow.transactions.two_phase import TwoPhaseCommitSinkWriter

__all__ = ["KafkaTransactionalWriter", "TransactionalSinkSettings"]

_log = logging.getLogger(__name__)
_ABORT_CONCURRENCY = 8


@dataclass(slots=True)
class KafkaTxn:
    """The open transaction of a writer; ``tid`` and ``producer`` are set by its first record."""

    deliveries: Deliveries
    tid: str | None = None
    producer: AIOKafkaProducer | None = field(default=None, repr=False)
    records: int = 0
    started_at: float = 0.0


class TransactionalSinkSettings(ProducerSinkSettings, Protocol):
    """What the EXACTLY_ONCE writer reads of its KafkaSink besides the producer settings."""

    @property
    def transactional_id_prefix(self) -> str | None: ...
    @property
    def transactional_id_pool_size(self) -> int: ...
    @property
    def transaction_timeout_seconds(self) -> float: ...


class KafkaTransactionalWriter(TwoPhaseCommitSinkWriter[KafkaTxn]):
    """One subtask's EXACTLY_ONCE writer; see the module docstring for the commit path."""

    def __init__(self, ctx: SinkContext, sink: TransactionalSinkSettings) -> None:
        super().__init__(ctx)
        self._sink = sink
        self._timeout = sink.transaction_timeout_seconds
        self._where = f"KafkaSink {ctx.operator_uid!r}[{ctx.subtask_index}]"
        self._sender = RecordSender(sink.codec(), operator=ctx.operator_uid, subtask=ctx.subtask_index)
        self._pool = TransactionalIdPool(self._ids_of(ctx.subtask_index, ctx.parallelism))
        self._producers: dict[str, AIOKafkaProducer] = {}
        self._prepared_for: dict[str, int] = {}  # id -> checkpoint its live producer prepared
        self._coordinator: TransactionCoordinator | None = None
        # Old subtasks (parallelism, index) whose handles this subtask got after a rescale:
        # their ids may hold transactions the old attempt left open.
        self._old_layouts = sorted({
            (int(e["parallelism"]), int(e["subtask"]))
            for e in ctx.restored_state or []
            if isinstance(e, dict) and {"parallelism", "subtask"} <= e.keys()
            and e["parallelism"] != ctx.parallelism
        })  # malformed entries are reported by the base class in open()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        coordinator = TransactionCoordinator(
            self._sink.bootstrap_servers, self._sink.producer_settings(), where=self._where
        )
        await coordinator.start()
        self._coordinator = coordinator
        try:
            await super().open()
        except BaseException:
            await self._shut_down()
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self._shut_down()

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await super().notify_checkpoint_complete(checkpoint_id)
        self._pool.checkpoint_completed(checkpoint_id)

    # -- the transaction steps -------------------------------------------------------------

    async def begin(self) -> KafkaTxn:
        return KafkaTxn(Deliveries(self._where))

    async def write_to(self, txn: KafkaTxn, records: list[Any]) -> None:
        if txn.producer is None:
            await self._start(txn)
        assert txn.producer is not None
        await self._sender.send(txn.producer, records, txn.deliveries)
        txn.records += len(records)

    async def pre_commit(self, txn: KafkaTxn, checkpoint_id: int) -> Any:
        self._pool.snapshot_taken(checkpoint_id)
        self._sender.forget_topics()
        if txn.producer is None or txn.tid is None:
            return PreparedTxn(transactional_id=None, producer_id=-1, epoch=-1,
                               checkpoint_id=checkpoint_id, records=0, started_at=0.0).to_handle()
        await txn.deliveries.wait()
        manager = txn.producer._txn_manager  # aiokafka has no public getter for id and epoch
        self._prepared_for[txn.tid] = checkpoint_id
        return PreparedTxn(
            transactional_id=txn.tid,
            producer_id=int(manager.producer_id),
            epoch=int(manager.producer_epoch),
            checkpoint_id=checkpoint_id,
            records=txn.records,
            started_at=txn.started_at,
        ).to_handle()

    async def commit(self, handle: Any) -> None:
        txn = PreparedTxn.from_handle(handle)
        if txn.empty:
            return
        tid = txn.transactional_id
        assert tid is not None
        producer = self._producers.get(tid)
        if producer is not None and self._prepared_for.get(tid) == txn.checkpoint_id:
            await self._commit_live(producer, txn)
            del self._prepared_for[tid]
            self._pool.retire(tid)
            return
        if (producer is not None and _identity(producer) == (txn.producer_id, txn.epoch)
                and producer._txn_manager.state is not TransactionState.READY):
            # Our live producer has moved on to a newer transaction with the same producer
            # id and epoch: EndTxn would commit that one instead. The pool rules out reuse
            # while a handle may come back, so reaching this is a bug.
            raise StateError(
                f"{self._where}: refusing to commit the stale handle {handle!r}: its "
                f"transactional id is in use by a newer transaction of this writer; please report it",
                operator=self.ctx.operator_uid,
                subtask=self.ctx.subtask_index,
            )
        assert self._coordinator is not None
        await self._coordinator.commit(txn, transaction_timeout=self._timeout)

    async def abort(self, txn: KafkaTxn) -> None:
        txn.deliveries.discard()
        if txn.producer is None or txn.tid is None:
            return
        try:
            async with asyncio.timeout(self._sink_request_timeout()):
                await txn.producer.abort_transaction()
        except Exception as exc:  # noqa: BLE001 - a fenced producer cannot even try (state error)
            # The broker aborts it after transaction_timeout; a new producer for the id
            # (InitProducerId) aborts it at once.
            _log.warning("%s: aborting transaction %r failed (%r); dropping its producer",
                         self._where, txn.tid, exc)
            await self._drop_producer(txn.tid)
        self._pool.release(txn.tid)

    async def recover(self, restored_handles: list[Any]) -> None:
        await super().recover(restored_handles)
        txns = [PreparedTxn.from_handle(h) for h in restored_handles]
        held = [t.transactional_id for t in txns if t.transactional_id is not None]
        if txns:
            # A second restore from the same checkpoint commits them again: keep the ids
            # untouched (no InitProducerId) until a checkpoint of this attempt completes.
            self._pool.hold(held, max(t.checkpoint_id for t in txns))

    async def abort_lingering(self) -> None:
        """Abort open transactions of this sink's ids that no live transaction uses: the
        pooled ids of this subtask this writer has not initialised itself, after a
        rescale every id of the old subtasks whose handles this subtask restored, and (on
        subtask 0) every id of another layout the brokers list as open."""
        ids = [t for t in self._pool.ids_in(IdState.FREE) if t not in self._producers]
        for parallelism, subtask in self._old_layouts:
            ids.extend(self._ids_of(subtask, parallelism))
        self._old_layouts = []
        if self.ctx.subtask_index == 0:
            ids.extend(t for t in await self._open_in_other_layouts() if t not in ids)
        if not ids:
            return
        assert self._coordinator is not None
        coordinator, gate = self._coordinator, asyncio.Semaphore(_ABORT_CONCURRENCY)

        async def abort_one(tid: str) -> None:
            async with gate:
                await coordinator.abort(tid, self._timeout)

        await asyncio.gather(*(abort_one(t) for t in ids))

    async def _open_in_other_layouts(self) -> list[str]:
        """This sink's ids with a transaction open that no subtask of the current layout
        owns: left by a run at another parallelism (or with a larger id pool) that no
        checkpoint being restored names, e.g. a run that crashed before its first
        checkpoint. Until aborted they hold read_committed readers back."""
        assert self._coordinator is not None
        prefix, uid, parallelism = str(self._sink.transactional_id_prefix), self.ctx.operator_uid, self.ctx.parallelism
        listed = await self._coordinator.open_transactions(f"{prefix}-{uid}-")
        if not listed:
            return []
        current = {tid for subtask in range(parallelism) for tid in self._ids_of(subtask, parallelism)}
        found = [t for t in listed if t not in current and id_layout(t, prefix, uid) is not None]
        if found:
            _log.info("%s: aborting %d open transactions left by earlier runs at another parallelism: %s",
                      self._where, len(found), ", ".join(found))
        return found

    # -- helpers ---------------------------------------------------------------------------

    def _ids_of(self, subtask: int, parallelism: int) -> list[str]:
        """The pooled transactional ids of ``subtask`` when the sink ran with ``parallelism``."""
        prefix = str(self._sink.transactional_id_prefix)
        return [transactional_id(prefix, self.ctx.operator_uid, subtask, parallelism, k)
                for k in range(self._sink.transactional_id_pool_size)]

    async def _start(self, txn: KafkaTxn) -> None:
        tid = self._pool.acquire()
        try:
            producer = await self._producer_for(tid)
            await producer.begin_transaction()
        except BaseException:
            self._pool.release(tid)
            raise
        txn.tid, txn.producer, txn.started_at = tid, producer, time.time()

    async def _producer_for(self, tid: str) -> AIOKafkaProducer:
        producer = self._producers.get(tid)
        if producer is not None:
            if producer._txn_manager.state is TransactionState.READY:
                return producer
            await self._drop_producer(tid)  # fatal error or half-done: start afresh
        settings = self._sink.producer_settings()
        settings.setdefault("client_id", tid)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._sink.bootstrap_servers,
            transactional_id=tid,
            transaction_timeout_ms=int(self._timeout * 1000),
            **settings,
        )
        try:
            await start_producer(producer, f"{self._where} ({tid})")
        except ConnectorError as exc:
            if type(exc.__cause__).__name__ == "InvalidTransactionTimeout":
                raise timeout_too_long_error(self._where, self._timeout) from exc
            raise
        self._producers[tid] = producer
        return producer

    async def _commit_live(self, producer: AIOKafkaProducer, txn: PreparedTxn) -> None:
        try:
            await producer.commit_transaction()
        except ProducerFenced as exc:
            raise lost_error(self._where, txn, INVALID_PRODUCER_EPOCH, transaction_timeout=self._timeout) from exc
        except KafkaError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if isinstance(cause, InvalidTxnState):
                raise lost_error(self._where, txn, INVALID_TXN_STATE, transaction_timeout=self._timeout) from exc
            if type(cause).__name__ == "InvalidProducerIdMapping":
                raise lost_error(self._where, txn, INVALID_PRODUCER_ID_MAPPING,
                                 transaction_timeout=self._timeout) from exc
            raise ConnectorError(
                f"{self._where}: committing transaction {txn.transactional_id!r} of checkpoint "
                f"{txn.checkpoint_id} failed: {exc!r}; a restart commits it from the checkpoint",
                checkpoint_id=txn.checkpoint_id,
            ) from exc

    def _sink_request_timeout(self) -> float:
        return float(self._sink.producer_config.get("request_timeout_ms", 40_000)) / 1000 + 5.0

    async def _drop_producer(self, tid: str) -> None:
        producer = self._producers.pop(tid, None)
        self._prepared_for.pop(tid, None)
        if producer is not None:
            await stop_producer(producer, f"{self._where} ({tid})")

    async def _shut_down(self) -> None:
        """Stop every producer (prepared transactions stay open on the broker for a restore
        to commit) and the coordinator client. A cancel arriving meanwhile (the attempt is
        being torn down) is held until every client is closed: one skipped client would
        leak its sockets. The producers stop together: with the broker away each may take
        its whole stop timeout, and one after the other they held a restart back for a
        minute."""
        cancelled = False
        drops = [asyncio.ensure_future(self._drop_producer(tid)) for tid in list(self._producers)]
        while drops:
            try:
                await asyncio.wait(drops)
                break
            except asyncio.CancelledError:
                cancelled = True
        for drop in drops:
            if not drop.cancelled():
                drop.exception()  # stop_producer raises nothing; retrieved all the same
        coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None:
            try:
                await coordinator.close()
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    @property
    def pool(self) -> TransactionalIdPool:
        """This subtask's transactional id pool (read-only use: tests, metrics)."""
        return self._pool


def _identity(producer: AIOKafkaProducer) -> tuple[int, int]:
    manager = producer._txn_manager
    return int(manager.producer_id), int(manager.producer_epoch)

