"""The writing end of an exchange: records to the worker that owns their partition,
exactly once.

Built on the exactly-once KafkaSink writer (:mod:`.sink_exactly_once`): one transaction
per subtask per checkpoint, prepared at the barrier, committed when the writing worker's
checkpoint completes, committed again or aborted on restore, lingering ones of other
layouts aborted. What it adds:

1. ``write_timestamped`` (``write`` without timestamps): records, with their event
   timestamps when they have any, are grouped by partition (HASH: the partition of the
   record's key group; REBALANCE: a whole batch to the next partition in turn;
   BROADCAST: always the partition ``subtask % E``, so the writer's order holds for
   every reader) and each group is pickled into packs (:mod:`.exchange_codec`), one
   Kafka record per pack.
2. Event time: ``on_watermark`` keeps the newest watermark; ``snapshot(n)`` writes it
   into every partition, before pre-committing, when it moved since the last one written.
   Readers see data only at commit, so writing watermarks more often would show them
   nothing sooner. ``on_watermark_status`` writes IDLE or ACTIVE into every partition at
   once (and records after IDLE write ACTIVE first).
3. ``end_input``: END into every partition, in the open transaction: the next
   checkpoint commits it, and readers stop waiting for this writer. Without
   checkpointing ``finish`` writes it and commits.

``write_timestamped``, ``on_watermark``, ``on_watermark_status`` and ``end_input`` are
hooks the runtime calls on sink writers that have them.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, ClassVar

from streamflow.api.connector import SinkContext, SinkWriter
from streamflow.api.delivery import DeliveryGuarantee
from streamflow.api.exchange import ExchangeKind, ExchangeSpec
from streamflow.connectors.kafka.exchange_codec import Envelope, RecordKind, encode_key, encode_watermark, pack_records
from streamflow.connectors.kafka.exchange_settings import ExchangeSettings
from streamflow.connectors.kafka.sink import KafkaSink
from streamflow.errors import ConfigError, UserFunctionError
from streamflow.eventtime import WatermarkStatus
from streamflow.partitioning.keygroups import KeyGroupAssigner
from streamflow.partitioning.workers import partition_table

__all__ = ["ExchangeRecordError", "ExchangeSink", "ExchangeWriter"]

_NEG_INF = float("-inf")


class ExchangeRecordError(UserFunctionError):
    """A record cannot cross to another worker: its key selector failed, or it does not
    pickle. Not retried: the same record would fail again."""

    retriable = False


@dataclass(frozen=True, slots=True)
class ExchangeSink:
    """The sink node of an exchange in a worker's graph (made by :class:`KafkaExchange`)."""

    exchange: ExchangeSettings
    spec: ExchangeSpec
    delivery_guarantee: ClassVar[DeliveryGuarantee] = DeliveryGuarantee.EXACTLY_ONCE

    def create_writer(self, ctx: SinkContext) -> ExchangeWriter:
        return ExchangeWriter(ctx, self.exchange, self.spec)


def _envelope_key(envelope: Envelope) -> bytes:
    return envelope.key


def _envelope_value(envelope: Envelope) -> bytes:
    return envelope.value


def _envelope_partition(envelope: Envelope, key: bytes | None, count: int) -> int:
    return envelope.partition


class ExchangeWriter:
    """One writer subtask of an exchange; see the module docstring for the steps."""

    def __init__(self, ctx: SinkContext, exchange: ExchangeSettings, spec: ExchangeSpec) -> None:
        if ctx.parallelism != spec.writer_parallelism:
            raise ConfigError(
                f"exchange {spec.topic!r} expects {spec.writer_parallelism} writers, but its writer "
                f"{ctx.operator_uid!r} runs with parallelism {ctx.parallelism}: its readers would wait for "
                "writers that never write (or miss some); the worker graph and the exchange disagree",
                operator=ctx.operator_uid,
            )
        self.ctx = ctx
        self._exchange = exchange
        self._spec = spec
        self._where = f"exchange writer {ctx.operator_uid!r}[{ctx.subtask_index}]"
        inner = KafkaSink(
            exchange.bootstrap_servers, spec.topic,
            delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
            key=_envelope_key, key_serializer="bytes", value_serializer=_envelope_value,
            partitioner=_envelope_partition, transactional_id_prefix=spec.topic,
            transaction_timeout=exchange.transaction_timeout, producer_config=exchange.producer_config,
        )
        self._inner: SinkWriter = inner.create_writer(ctx)
        partitions = spec.partitions
        self._partitions = range(partitions)
        self._key_group = KeyGroupAssigner(spec.max_parallelism)
        self._table = partition_table(spec.max_parallelism, partitions)
        self._next = ctx.subtask_index % partitions  # REBALANCE turns; BROADCAST's fixed partition
        self._keys = {
            kind: encode_key(kind, ctx.subtask_index, ctx.parallelism, spec.generation) for kind in RecordKind
        }
        self._watermark = _NEG_INF
        self._written_watermark = _NEG_INF
        self._idle = False
        self._ended = False

    # -- the SinkWriter protocol ------------------------------------------------------------

    async def open(self) -> None:
        await self._exchange.ensure_topic(self._spec, self._where)
        await self._inner.open()

    async def write(self, records: list[Any]) -> None:
        await self.write_timestamped(records, None)

    async def write_timestamped(self, records: list[Any], timestamps: list[float | None] | None) -> None:
        """``records`` with their event timestamps (a parallel list, or None when none
        has one): a window after the exchange sees the same event time as before it."""
        if not records:
            return
        envelopes = self._control(RecordKind.ACTIVE) if self._idle else []
        self._idle = False
        data = self._keys[RecordKind.DATA]
        for partition, group, stamps in self._group(records, timestamps):
            try:
                packs = pack_records(group, stamps)
            except Exception as exc:
                raise self._record_error("pickling", _unpicklable(group), exc) from exc
            envelopes.extend(Envelope(partition, data, pack) for pack in packs)
        await self._inner.write(envelopes)

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        if self._watermark > self._written_watermark and not self._ended:
            await self._inner.write(self._control(RecordKind.WATERMARK, encode_watermark(self._watermark)))
            self._written_watermark = self._watermark
        return await self._inner.snapshot(checkpoint_id)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await self._inner.notify_checkpoint_complete(checkpoint_id)

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        await self._inner.notify_checkpoint_aborted(checkpoint_id)

    async def finish(self) -> None:
        if not self.ctx.checkpointing:
            await self.end_input()  # committed by the inner finish right below
        await self._inner.finish()

    async def close(self) -> None:
        await self._inner.close()

    # -- event time and end of input (hooks the runtime calls) ------------------------------

    async def on_watermark(self, timestamp: float) -> None:
        """The upstream's event time reached ``timestamp``; written at the next barrier."""
        if timestamp > self._watermark:
            self._watermark = timestamp

    async def on_watermark_status(self, status: WatermarkStatus) -> None:
        """The upstream turned idle or active: every partition hears it now."""
        idle = status is WatermarkStatus.IDLE
        if idle != self._idle and not self._ended:
            self._idle = idle
            await self._inner.write(self._control(RecordKind.IDLE if idle else RecordKind.ACTIVE))

    async def end_input(self) -> None:
        """This writer's input ended: END into every partition (once)."""
        if not self._ended:
            self._ended = True
            await self._inner.write(self._control(RecordKind.END))

    # -- helpers ----------------------------------------------------------------------------

    def _group(
        self, records: list[Any], timestamps: list[float | None] | None
    ) -> list[tuple[int, list[Any], list[float | None] | None]]:
        """``(partition, records, their timestamps)`` per partition the records go to."""
        kind = self._spec.kind
        if kind is ExchangeKind.BROADCAST:
            return [(self._next, records, timestamps)]
        if kind is ExchangeKind.REBALANCE:
            partition = self._next
            self._next = (partition + 1) % len(self._partitions)
            return [(partition, records, timestamps)]
        selector = self._spec.key_selector
        assert selector is not None  # ExchangeSpec checks that a HASH exchange has one
        key_group, table = self._key_group, self._table
        groups: dict[int, list[Any]] = {}
        record = None
        try:
            if timestamps is None:  # the common case stays one lookup per record
                for record in records:
                    partition = table[key_group(selector(record))]
                    group = groups.get(partition)
                    if group is None:
                        groups[partition] = [record]
                    else:
                        group.append(record)
                return [(partition, group, None) for partition, group in groups.items()]
            stamps: dict[int, list[float | None]] = {}
            for record, timestamp in zip(records, timestamps):
                partition = table[key_group(selector(record))]
                group = groups.get(partition)
                if group is None:
                    groups[partition] = [record]
                    stamps[partition] = [timestamp]
                else:
                    group.append(record)
                    stamps[partition].append(timestamp)
        except Exception as exc:
            raise self._record_error("selecting the key of", record, exc) from exc
        return [(partition, group, stamps[partition]) for partition, group in groups.items()]

    def _control(self, kind: RecordKind, value: bytes = b"") -> list[Envelope]:
        key = self._keys[kind]
        return [Envelope(partition, key, value) for partition in self._partitions]

    def _record_error(self, step: str, record: Any, exc: Exception) -> ExchangeRecordError:
        return ExchangeRecordError(
            f"{self._where}: {step} record {record!r:.200} failed ({type(exc).__name__}: {exc}); records crossing "
            f"from {self._spec.upstream_uid!r} to {self._spec.downstream_uid!r} on another worker must pickle, as "
            "state must, and the edge's key selector must accept them",
            operator=self.ctx.operator_uid,
            subtask=self.ctx.subtask_index,
            position=None,
            record=repr(record)[:200],
        )


def _unpicklable(records: list[Any]) -> Any:
    """The first record of ``records`` that does not pickle (for the error message)."""
    for record in records:
        try:
            pickle.dumps(record)
        except Exception:  # noqa: BLE001 - looking for the culprit only
            return record
    return records
