"""The reading end of an exchange: the partitions a reader owns, read exactly once.

A KafkaSource reader (``read_committed``, no consumer group, no discovery) does the
fetching; this reader owns the exchange's meaning of what it fetches:

1. ``open``: create or check the topic; keep the restored positions of the partitions
   this reader owns now (HASH and REBALANCE: ``reader_partitions(E, G, g)`` of its global
   subtask, whatever subtask held them before; BROADCAST: every partition) and seek there.
2. ``poll``: unpack the packs of one partition into pipeline records with their event
   timestamps (the batch's ``timestamps`` stay None while no record has one), at most
   ``max_records`` per batch, a pack possibly split across batches; apply control
   records to the event time (:mod:`.exchange_watermarks`) in order with the data.
   Records of a deployment this partition does not accept are skipped (see below).
   The batch carries the combined watermark, and ``watermark_status`` says whether every
   writer it waits for is idle (the runtime forwards both). Once every owned partition
   has ended (END from every writer), the input is exhausted.
3. ``snapshot_splits(n)``: per owned partition the position of the NEXT record to hand
   out, ``(offset of its pack, records of that pack already handed out)``, the accepted
   generations and the writers' event time.

Generations: a partition read from its start accepts only the current deployment's
records (a topic outlives job runs; an earlier deployment's records are not this run's
input). A partition restored from another deployment's state (a rescale through a
savepoint set) also accepts that deployment's records: the ones after its saved offset
were committed before the savepoint and are part of the job's state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from streamflow.api.connector import RecordFailure, SourceBatch, SourceContext
from streamflow.api.exchange import ExchangeKind, ExchangeSpec
from streamflow.connectors.kafka.exchange_codec import RecordKind, decode_key, unpack_records
from streamflow.connectors.kafka.exchange_settings import ExchangeSettings
from streamflow.connectors.kafka.exchange_watermarks import ExchangeWatermarks
from streamflow.connectors.kafka.reader import KafkaSourceReader
from streamflow.connectors.kafka.records import KafkaOutput, KafkaRecord
from streamflow.connectors.kafka.source import KafkaSource
from streamflow.errors import StateError
from streamflow.eventtime import WatermarkStatus
from streamflow.partitioning.workers import reader_partitions

__all__ = ["ExchangeReader", "ExchangeSource"]

_STATE_KEYS = frozenset({"topic", "partition", "offset", "skip", "generations", "writers"})


@dataclass(frozen=True, slots=True)
class ExchangeSource:
    """The source node of an exchange in a worker's graph (made by :class:`KafkaExchange`)."""

    exchange: ExchangeSettings
    spec: ExchangeSpec

    def create_reader(self, ctx: SourceContext) -> ExchangeReader:
        return ExchangeReader(ctx, self.exchange, self.spec)


@dataclass(slots=True)
class _Position:
    """The next record to hand out in one partition: record ``skip`` of the pack at
    ``offset`` (``offset`` None: from the partition's start)."""

    offset: int | None
    skip: int
    generations: set[str]


class ExchangeReader:
    """One reader subtask of an exchange; see the module docstring for the steps."""

    def __init__(self, ctx: SourceContext, exchange: ExchangeSettings, spec: ExchangeSpec) -> None:
        self._ctx = ctx
        self._exchange = exchange
        self._spec = spec
        self._where = f"exchange reader {ctx.operator_uid!r} (subtask {ctx.subtask_index})"
        if spec.kind is ExchangeKind.BROADCAST:
            owned = range(spec.partitions)
        else:
            owned = reader_partitions(spec.partitions, ctx.parallelism, ctx.subtask_index)
        self._owned = list(owned)
        self._names = {p: f"{spec.topic}-{p}" for p in self._owned}
        self._watermarks = ExchangeWatermarks(spec.writer_parallelism, spec.generation)
        restored = self._restored()
        self._positions: dict[int, _Position] = {}
        for partition in self._owned:
            state = restored.get(partition)
            self._watermarks.add_partition(partition, None if state is None else state["writers"])
            if state is None:
                self._positions[partition] = _Position(None, 0, {spec.generation})
            else:
                accepted = {*state["generations"], spec.generation}
                self._positions[partition] = _Position(state["offset"], state["skip"], accepted)
        seeks = [
            {"topic": spec.topic, "partition": p, "offset": pos.offset, "stop": None}
            for p, pos in self._positions.items()
            if pos.offset is not None
        ]
        fetch = KafkaSource(
            exchange.bootstrap_servers, topics=[spec.topic], isolation_level="read_committed",
            output=KafkaOutput.RECORD, discovery_interval=None, request_timeout=exchange.request_timeout_seconds,
            consumer_options=exchange.consumer_options,
        )
        mine = set(self._owned)
        self._fetcher = KafkaSourceReader(
            fetch, replace(ctx, restored_splits=seeks, all_restored_splits=None),
            owns=lambda topic, partition: partition in mine,
        )
        self._chunk: list[KafkaRecord] = []  # the fetched records of one partition not yet handed out
        self._at = 0  # index into _chunk
        self._pack: list[Any] | None = None  # the unpacked records of _chunk[_at], once touched
        self._pack_timestamps: list[float | None] | None = None  # their timestamps (None: none has one)

    # -- open ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._exchange.ensure_topic(self._spec, self._where)
        await self._fetcher.open()

    def _restored(self) -> dict[int, dict[str, Any]]:
        """The restored state of each partition this reader owns (the first found)."""
        ctx = self._ctx
        states = ctx.all_restored_splits if ctx.all_restored_splits is not None else ctx.restored_splits
        mine: dict[int, dict[str, Any]] = {}
        for state in states or ():
            if not isinstance(state, dict) or not _STATE_KEYS <= state.keys():
                raise StateError(
                    f"{self._where}: restored split {state!r} is not an exchange reader's; was this uid used by "
                    "another kind of source?",
                    operator=ctx.operator_uid,
                )
            if state["topic"] != self._spec.topic:
                raise StateError(
                    f"{self._where}: the restored offsets are of exchange topic {state['topic']!r}, but this "
                    f"exchange is {self._spec.topic!r}: exchange topics are named after the job and the operator "
                    "uids, and one of them changed since the checkpoint. Run the job under its old name "
                    "(--job-name) and uids; records in flight in the old topic would be lost otherwise",
                    operator=ctx.operator_uid,
                )
            if state["partition"] in self._names:
                mine.setdefault(state["partition"], state)
        return mine

    # -- poll ---------------------------------------------------------------------------

    @property
    def watermark_status(self) -> WatermarkStatus:
        """IDLE while every writer this reader waits for is idle: the runtime forwards it
        after each batch, so a worker whose own input is idle does not hold back the
        event time after the exchange."""
        return self._watermarks.status

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        if self._at >= len(self._chunk):
            if all(self._watermarks.ended(p) for p in self._owned):
                return None  # every writer ended in every partition (at once without any)
            fetched = await self._fetcher.poll(max_records, max_wait)
            self._chunk, self._at = (fetched.records if fetched is not None else []), 0
            self._pack = self._pack_timestamps = None
            if not self._chunk:
                return SourceBatch([], [], "", None, self._watermarks.watermark)
        return self._hand_out(max_records)

    def _hand_out(self, max_records: int) -> SourceBatch:
        """Records of the current chunk (one partition) up to ``max_records``."""
        records: list[Any] = []
        positions: list[Any] = []
        timestamps: list[float | None] | None = None  # made at the first pack with timestamps
        failures: list[RecordFailure] = []
        chunk = self._chunk
        partition = chunk[0].partition
        position = self._positions[partition]
        watermarks = self._watermarks
        while self._at < len(chunk) and len(records) < max_records:
            record = chunk[self._at]
            if position.offset != record.offset:
                position.offset, position.skip = record.offset, 0  # past markers and skipped records
            try:
                key = decode_key(record.key)
                if key.kind is not RecordKind.DATA:
                    watermarks.on_control(partition, key, record.value)
                    self._next_record(position, record)
                    continue
                if key.generation not in position.generations:
                    self._next_record(position, record)
                    continue
                watermarks.on_data(partition, key)
                if self._pack is None:
                    self._pack, self._pack_timestamps = unpack_records(record.value)
            except Exception as exc:  # noqa: BLE001 - a bad record goes to the source's error policy
                failures.append(RecordFailure(record.offset, record, exc))
                self._next_record(position, record)
                continue
            pack = self._pack
            end = position.skip + max_records - len(records)
            take = pack[position.skip : end]
            stamps = self._pack_timestamps
            if stamps is not None:
                if timestamps is None:
                    timestamps = [None] * len(records)
                timestamps.extend(stamps[position.skip : end])
            elif timestamps is not None:
                timestamps.extend([None] * len(take))
            records.extend(take)
            positions.extend((record.offset, position.skip + i) for i in range(len(take)))
            position.skip += len(take)
            if position.skip >= len(pack):
                self._next_record(position, record)
        return SourceBatch(
            records, positions, self._names[partition], failures or None, watermarks.watermark, timestamps
        )

    def _next_record(self, position: _Position, record: KafkaRecord) -> None:
        position.offset, position.skip = record.offset + 1, 0
        self._at += 1
        self._pack = self._pack_timestamps = None

    def metrics(self) -> dict[str, float]:
        """The fetching reader's ``pendingRecords``: Kafka records (packs and control
        records) of the owned partitions not handed out yet, what ``streamflow status``
        shows per exchange."""
        return self._fetcher.metrics()

    # -- checkpoints --------------------------------------------------------------------

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [
            {
                "topic": self._spec.topic,
                "partition": partition,
                "offset": position.offset,
                "skip": position.skip,
                "generations": sorted(position.generations),
                "writers": self._watermarks.snapshot(partition),
            }
            for partition, position in self._positions.items()
        ]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await self._fetcher.notify_checkpoint_complete(checkpoint_id)

    async def close(self) -> None:
        await self._fetcher.close()
