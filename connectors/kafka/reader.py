"""KafkaSourceReader: one source subtask's consumer, its splits and its poll loop.

Lifecycle (called from the subtask's own task, one call at a time):

1. ``open``: connect; list the partitions of the selected topics; keep the restored
   splits this subtask owns; make splits for owned partitions no checkpoint covers
   (starting offsets resolved to numbers at once); in bounded mode fix every split's
   stop offset; ``assign`` and ``seek`` each partition to its NEXT offset.
2. ``poll``: hand out what the last ``getmany`` returned, one partition (and at most
   ``max_records``) per batch, the partitions taking turns (round robin): a partition
   with a backlog never waits for another one's whole fetch; when that is used up, look
   for new partitions if discovery is due, then ``getmany`` again. The consumer hands
   out whole record batches (:mod:`.fetch`; ConsumerRecords only if aiokafka's internals
   differ from the ones it knows).
3. ``snapshot_splits(n)``: per partition the offset after the last record handed out
   (and, with a group, remember them for step 4).
4. ``notify_checkpoint_complete(n)``: commit checkpoint n's offsets to the group, for
   lag monitoring only.
5. ``close``: stop the consumer and the admin client.

``metrics()`` gives the job's metrics this subtask's consumer lag (``pendingRecords``).

(Over 400 lines: one consumer's lifecycle, whose steps share its splits and clients;
offsets, metadata, watermarks, deserializing and consumer lag are in modules of their own.)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from operator import attrgetter
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.config import seconds
from streamflow.connectors.kafka.clients import start_client, watch_client
from streamflow.connectors.kafka.deserializers import decode_batch, resolve_deserializer
from streamflow.connectors.kafka.fetch import read_batches, records_of
from streamflow.connectors.kafka.lag import ConsumerLag
from streamflow.connectors.kafka.metadata import describe_partitions, missing_topic_error
from streamflow.connectors.kafka.offsets import (
    KafkaSplit,
    OffsetKind,
    OffsetReset,
    StartingOffsets,
    owner_of,
)
from streamflow.connectors.kafka.progress import OffsetsBoard
from streamflow.connectors.kafka.records import KafkaOutput
from streamflow.connectors.kafka.source_settings import KafkaSourceSettings
from streamflow.errors import ConnectorError

__all__ = ["KafkaSourceReader"]

log = logging.getLogger("streamflow.connectors.kafka")

_ADMIN_OPTIONS = frozenset(inspect.signature(AIOKafkaAdminClient).parameters) - {"loop", "bootstrap_servers"}
_COMMITS_KEPT = 64  # offsets of checkpoints not yet completed; older ones are dropped


class KafkaSourceReader:
    """Reads the partitions its subtask owns; see the module docstring for the steps."""

    def __init__(
        self, source: KafkaSourceSettings, ctx: SourceContext, *, owns: Callable[[str, int], bool] | None = None
    ) -> None:
        """``owns(topic, partition)``: whether this subtask reads a partition; by default
        the stable assignment :func:`.offsets.owner_of` (an exchange reader assigns by
        its worker's partition range instead)."""
        self._source = source
        self._ctx = ctx
        self._owns = owns if owns is not None else self._owned_by_stable_assignment
        self._uid = ctx.operator_uid
        self._where = f"KafkaSource {ctx.operator_uid!r} (subtask {ctx.subtask_index})"
        self._servers = str(source.bootstrap_servers)
        self._timeout = seconds(source.request_timeout, "request_timeout")
        self._value_fn = resolve_deserializer(source.value_deserializer, "value_deserializer")
        self._key_fn = resolve_deserializer(source.key_deserializer, "key_deserializer")
        self._output = KafkaOutput(source.output)
        self._topics = list(source.topics) if source.topics is not None else None
        self._pattern = re.compile(source.topic_pattern) if source.topic_pattern is not None else None
        self._bounded = source.bounded
        interval = None if source.bounded else source.discovery_interval
        self._discovery_interval = None if interval is None else seconds(interval, "discovery_interval")
        self._next_discovery = float("inf")
        self._consumer: Any = None
        self._admin: Any = None
        self._splits: dict[TopicPartition, KafkaSplit] = {}
        self._reading: set[TopicPartition] = set()  # assigned and not finished
        # What the last getmany returned and poll has not handed out yet, the partition
        # whose turn it is first: [split, records, index of the next record to hand
        # out, partition]
        self._pending: deque[list[Any]] = deque()
        self._commits: dict[int, dict[TopicPartition, int]] = {}
        self._lag = ConsumerLag(read_committed=source.isolation_level == "read_committed", timeout=self._timeout)

    # -- open -------------------------------------------------------------------------

    async def open(self) -> None:
        source, ctx = self._source, self._ctx
        self._consumer = AIOKafkaConsumer(**self._consumer_args())
        self._admin = AIOKafkaAdminClient(**self._admin_args())
        watch_client(self._consumer._client, self._where)
        watch_client(self._admin._client, f"{self._where} (metadata)")
        await self._connect()
        read_batches(self._consumer, self._where)  # before the first fetch: see .fetch
        found, missing = await self._describe(led_only=False)
        if missing:
            raise missing_topic_error(self._uid, missing, self._servers)
        restored = self._restored()
        mine: list[KafkaSplit] = []
        for split in restored:
            if not self._owns(split.topic, split.partition):
                continue
            if split.partition not in found.get(split.topic, ()):
                log.warning(
                    "%s: dropping restored partition %s (next offset %d): its topic is no longer read or the "
                    "partition no longer exists",
                    self._where, split.name, split.offset,
                )
                continue
            mine.append(split)
        covered = {(s.topic, s.partition) for s in restored}
        new = [
            TopicPartition(topic, p)
            for topic, partitions in found.items()
            for p in partitions
            if (topic, p) not in covered and self._owns(topic, p)
        ]
        # Partitions no checkpoint covers after a restore appeared since the job started:
        # all their records are new, so they start at the earliest offset. That holds
        # when the restored source owned no partition at all, too; only a source without
        # restored state (a first run, or a source added since) uses starting_offsets.
        fresh = ctx.restored_splits is None and ctx.all_restored_splits is None
        starting = source.starting_offsets if fresh else StartingOffsets.earliest()
        mine += await self._new_splits(new, starting)
        if self._bounded:
            await self._fix_stops(mine)
        else:
            for split in mine:
                split.stop = None
        if not found and source.topic_pattern is not None:
            log.warning(
                "%s: no topic matches %r yet%s", self._where, self._pattern,
                "" if self._discovery_interval is None else f"; looking again every {self._discovery_interval:g}s",
            )
        self._assign(mine)
        if self._discovery_interval is not None:
            self._next_discovery = ctx.clock.now() + self._discovery_interval

    def _owned_by_stable_assignment(self, topic: str, partition: int) -> bool:
        return owner_of(topic, partition, self._ctx.parallelism) == self._ctx.subtask_index

    def _consumer_args(self) -> dict[str, Any]:
        ctx, source = self._ctx, self._source
        client_id = re.sub(r"[^A-Za-z0-9._-]", "_", f"streamflow-{ctx.job_name}-{ctx.operator_uid}-{ctx.subtask_index}")
        args: dict[str, Any] = {
            "bootstrap_servers": self._servers,
            "client_id": client_id,
            "group_id": source.group_id,
            "enable_auto_commit": False,
            "isolation_level": source.isolation_level,
            # A stored offset no longer in the log (deleted by retention) restarts at the
            # earliest record still there, as Kafka consumers do by default.
            "auto_offset_reset": "earliest",
            "request_timeout_ms": int(self._timeout * 1000),
        }
        args.update(source.consumer_options)
        return args

    def _admin_args(self) -> dict[str, Any]:
        args = {k: v for k, v in self._consumer_args().items() if k in _ADMIN_OPTIONS}
        args["bootstrap_servers"] = self._servers
        return args

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await start_client(self._admin.start(), self._where)
                await start_client(self._consumer.start(), self._where)
        except (KafkaError, OSError, TimeoutError) as exc:
            why = f"no answer within request_timeout={self._timeout:g}s" if isinstance(exc, TimeoutError) else str(exc)
            raise ConnectorError(
                f"{self._where}: cannot reach a Kafka broker at bootstrap_servers={self._servers!r} ({why}). "
                "Check the host and port, that the broker is running and reachable from here, and that its "
                "advertised.listeners name an address this machine can connect to.",
                operator=self._uid,
                bootstrap_servers=self._servers,
            ) from exc

    async def _describe(self, *, led_only: bool) -> tuple[dict[str, list[int]], list[str]]:
        async with self._kafka_call("reading topic metadata"):
            found, missing = await describe_partitions(
                self._admin, topics=self._topics, pattern=self._pattern, led_only=led_only
            )
        return found, missing

    def _restored(self) -> list[KafkaSplit]:
        """Every old subtask's splits (each subtask keeps those it owns now)."""
        ctx = self._ctx
        states = ctx.all_restored_splits if ctx.all_restored_splits is not None else ctx.restored_splits
        splits: dict[tuple[str, int], KafkaSplit] = {}
        for state in states or ():
            split = KafkaSplit.restore(state, self._uid)
            splits.setdefault((split.topic, split.partition), split)
        return list(splits.values())

    async def _new_splits(self, partitions: list[TopicPartition], starting: StartingOffsets) -> list[KafkaSplit]:
        """Splits at ``starting``, resolved to offsets now (a checkpoint must pin them)."""
        if not partitions:
            return []
        consumer = self._consumer
        kind = starting.kind
        offsets: dict[TopicPartition, int] = {}
        async with self._kafka_call(f"looking up the starting offsets ({starting.describe()})"):
            if kind is OffsetKind.COMMITTED:
                for tp in partitions:
                    committed = await consumer.committed(tp)
                    if committed is not None:
                        offsets[tp] = committed
            elif kind is OffsetKind.TIMESTAMP:
                found = await consumer.offsets_for_times({tp: starting.timestamp_ms for tp in partitions})
                offsets = {tp: hit.offset for tp, hit in found.items() if hit is not None}
            elif kind is OffsetKind.SPECIFIC:
                offsets = {
                    tp: starting.specific[(tp.topic, tp.partition)]
                    for tp in partitions
                    if (tp.topic, tp.partition) in starting.specific
                }
            rest = [tp for tp in partitions if tp not in offsets]
            if rest:
                if kind is OffsetKind.TIMESTAMP or kind is OffsetKind.LATEST:
                    offsets.update(await consumer.end_offsets(rest))
                elif kind is OffsetKind.EARLIEST or starting.reset is OffsetReset.EARLIEST:
                    offsets.update(await consumer.beginning_offsets(rest))
                else:
                    offsets.update(await consumer.end_offsets(rest))
        return [KafkaSplit(tp.topic, tp.partition, offsets[tp]) for tp in partitions]

    async def _fix_stops(self, splits: list[KafkaSplit]) -> None:
        """Bounded mode: a split without a stop ends at the partition's end offset now
        (the last stable offset under read_committed)."""
        open_ended = [TopicPartition(s.topic, s.partition) for s in splits if s.stop is None]
        if not open_ended:
            return
        async with self._kafka_call("looking up the end offsets of bounded mode"):
            ends = await self._consumer.end_offsets(open_ended)
        for split in splits:
            if split.stop is None:
                split.stop = ends[TopicPartition(split.topic, split.partition)]

    def _assign(self, splits: list[KafkaSplit]) -> None:
        """Read exactly ``splits``, each from its NEXT offset (replaces any assignment)."""
        self._splits = {TopicPartition(s.topic, s.partition): s for s in splits}
        self._reading = {tp for tp, s in self._splits.items() if not s.finished}
        self._pending.clear()
        if not self._splits:
            return
        consumer = self._consumer
        consumer.assign(list(self._splits))
        for tp, split in self._splits.items():
            consumer.seek(tp, split.offset)
        finished = [tp for tp in self._splits if tp not in self._reading]
        if finished:
            consumer.pause(*finished)

    def active_splits(self) -> list[str]:
        """The partitions read and not finished, by split name (for per-partition watermarks)."""
        return [split.name for tp, split in self._splits.items() if tp in self._reading]

    # -- poll -------------------------------------------------------------------------

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        pending = self._pending
        if pending:
            return self._hand_out(max_records)
        if self._bounded:
            await self._finish_drained()
            if not self._reading:
                return None
        elif self._ctx.clock.now() >= self._next_discovery:
            await self._discover()
        if not self._reading:
            await asyncio.sleep(max_wait)
            return self._nothing()
        try:
            fetched = await self._consumer.getmany(timeout_ms=int(max_wait * 1000))
        except KafkaError as exc:
            raise ConnectorError(
                f"{self._where}: fetching from {self._servers!r} failed: {type(exc).__name__}: {exc}",
                operator=self._uid,
                bootstrap_servers=self._servers,
            ) from exc
        splits = self._splits
        for tp, fetched_records in fetched.items():
            records = records_of(fetched_records)
            split = splits[tp]
            stop = split.stop
            if stop is not None and records[-1].offset >= stop:
                records = [r for r in records if r.offset < stop]
                if not records:
                    continue
            pending.append([split, records, 0, tp])
        if pending:
            return self._hand_out(max_records)
        return self._nothing()

    def _hand_out(self, max_records: int) -> SourceBatch:
        """One batch of the partition whose turn it is; a partition with records left
        goes to the back of the line."""
        entry = self._pending.popleft()
        split, records, start, tp = entry
        end = start + max_records
        if end >= len(records):
            chunk = records if start == 0 else records[start:]
        else:
            chunk = records[start:end]
            entry[2] = end
            self._pending.append(entry)
        values, offsets, timestamps, failures = decode_batch(
            chunk, self._output, self._value_fn, self._key_fn, topic=tp.topic, partition=tp.partition
        )
        split.offset = chunk[-1].offset + 1
        if split.stop is not None and split.offset >= split.stop:
            self._finish(tp)
        return SourceBatch(values, offsets, split.name, failures, timestamps=timestamps)

    def _nothing(self) -> SourceBatch:
        return SourceBatch([], [], "")

    async def _finish_drained(self) -> None:
        """Bounded mode: a partition with nothing pending whose consumer position reached
        its stop is done (records below it were handed out or are invisible: transaction
        markers, aborted records under read_committed)."""
        for tp in list(self._reading):
            split = self._splits[tp]
            assert split.stop is not None  # bounded splits always have one
            if await self._consumer.position(tp) >= split.stop:
                split.offset = max(split.offset, split.stop)
                self._finish(tp)

    def _finish(self, tp: TopicPartition) -> None:
        self._reading.discard(tp)
        self._consumer.pause(tp)

    async def _discover(self) -> None:
        ctx = self._ctx
        assert self._discovery_interval is not None  # only called when discovery is on
        self._next_discovery = ctx.clock.now() + self._discovery_interval
        try:
            found, _ = await self._describe(led_only=True)
            new = [
                TopicPartition(topic, p)
                for topic, partitions in found.items()
                for p in partitions
                if TopicPartition(topic, p) not in self._splits
                and self._owns(topic, p)
            ]
            splits = await self._new_splits(new, StartingOffsets.earliest())
        except ConnectorError as exc:
            log.warning("%s: partition discovery failed, reading on: %s", self._where, exc)
            return
        if splits:
            log.info(
                "%s: found new partitions %s; reading them from their earliest offset",
                self._where, ", ".join(s.name for s in splits),
            )
            self._assign([*self._splits.values(), *splits])

    # -- checkpoints ------------------------------------------------------------------

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        if self._source.group_id is not None:
            commits = self._commits
            commits[checkpoint_id] = {tp: split.offset for tp, split in self._splits.items()}
            while len(commits) > _COMMITS_KEPT:
                del commits[min(commits)]
        ctx = self._ctx
        ctx.services.shared(OffsetsBoard).publish(
            ctx.operator_uid, ctx.subtask_index, ctx.parallelism, checkpoint_id,
            {(tp.topic, tp.partition): split.offset for tp, split in self._splits.items()},
        )
        return [split.state() for split in self._splits.values()]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Commit checkpoint n's offsets to the group (lag monitoring; a failure only logs)."""
        done = [n for n in self._commits if n <= checkpoint_id]
        if not done:
            return
        offsets = self._commits[max(done)]
        for n in done:
            del self._commits[n]
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._consumer.commit(offsets)
        except (KafkaError, TimeoutError) as exc:
            log.warning(
                "%s: committing the offsets of checkpoint %d to group %r failed (%r); they serve lag "
                "monitoring only, recovery uses the checkpoint",
                self._where, checkpoint_id, self._source.group_id, exc,
            )

    def metrics(self) -> dict[str, float]:
        """``pendingRecords``: records in this subtask's partitions not handed out yet
        (absent until every partition's end offset is known)."""
        pending = self._lag.pending_records(self._consumer, self._splits)
        return {} if pending is None else {"pendingRecords": pending}

    async def close(self) -> None:
        await self._lag.close()
        cancelled = False
        for client, stop in ((self._consumer, "stop"), (self._admin, "close")):
            if client is None:
                continue
            try:
                await getattr(client, stop)()
            except asyncio.CancelledError:
                cancelled = True  # close the other client too, then let the cancel go on
            except Exception as exc:  # noqa: BLE001 - closing must not hide the job's outcome
                log.debug("%s: closing %s raised %r", self._where, type(client).__name__, exc)
        if cancelled:
            raise asyncio.CancelledError

    # -- errors -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _kafka_call(self, what: str) -> AsyncIterator[None]:
        """Bound a broker call by request_timeout; a Kafka error or timeout becomes a
        ConnectorError naming the source, the servers and the step."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except (KafkaError, TimeoutError) as exc:
            why = (
                f"no answer within request_timeout={self._timeout:g}s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            raise ConnectorError(
                f"{self._where}: {what} at {self._servers!r} failed: {why}",
                operator=self._uid,
                bootstrap_servers=self._servers,
            ) from exc
