"""Event time of an exchange reader: every writer's watermark in every partition it reads.

Each writer subtask writes its watermark, IDLE / ACTIVE and END as control records into
every partition of the exchange. A reader tracks one input per (partition, writer) and
combines them with Flink's rules (:class:`~streamflow.eventtime.WatermarkCombiner`, the
split flavour): its watermark is the minimum over the active inputs, an idle writer does
not hold it back, and a writer whose END arrived in a partition is gone from it. A
partition has ended when every writer ended in it.

Only control records of the reader's own deployment count: same generation and the
same number of writers. A reader restored from a savepoint of another deployment (a
rescale) starts every writer at minus infinity and ignores the old writers' control
records still in the topic after its offsets: the new writers' first watermarks come
after all the old data in every partition, so nothing old turns late.

The state of each partition (watermark, idle and ended writers) is part of the reader's
split state, so a writer that ended before a checkpoint is not waited for after a
restore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamflow.connectors.kafka.exchange_codec import ExchangeKey, RecordKind, decode_watermark
from streamflow.eventtime import WatermarkCombiner, WatermarkStatus

__all__ = ["ExchangeWatermarks"]

_NEG_INF = float("-inf")


class _Partition:
    __slots__ = ("watermarks", "idle", "ended")

    def __init__(self, writers: int) -> None:
        self.watermarks = [_NEG_INF] * writers
        self.idle: set[int] = set()
        self.ended: set[int] = set()


class ExchangeWatermarks:
    """The watermark of one reader over its partitions and the writers of its deployment.

    Calls: :meth:`add_partition` for each partition the reader owns (with its restored
    state, if any), :meth:`on_data` for every pack and :meth:`on_control` for every
    control record, in partition order; :attr:`watermark` whenever wanted.
    """

    __slots__ = ("writers", "generation", "combiner", "_partitions")

    def __init__(self, writers: int, generation: str) -> None:
        self.writers = writers
        self.generation = generation
        self.combiner = WatermarkCombiner.for_splits()
        self._partitions: dict[int, _Partition] = {}

    @property
    def watermark(self) -> float | None:
        """The combined watermark, ``None`` while no writer has sent one."""
        mark = self.combiner.watermark
        return None if mark == _NEG_INF else mark

    @property
    def status(self) -> WatermarkStatus:
        return self.combiner.status

    def add_partition(self, partition: int, restored: Mapping[str, Any] | None = None) -> None:
        state = self._partitions[partition] = _Partition(self.writers)
        for writer in range(self.writers):
            self.combiner.add_input((partition, writer))
        if not restored or restored.get("generation") != self.generation or restored.get("writers") != self.writers:
            return  # fresh, or another deployment's writers: they are not ours to wait for
        for writer, mark in enumerate(restored["watermarks"]):
            if mark > _NEG_INF:
                state.watermarks[writer] = mark
                self.combiner.on_watermark((partition, writer), mark)
        for writer in restored["idle"]:
            state.idle.add(writer)
            self.combiner.on_status((partition, writer), WatermarkStatus.IDLE)
        for writer in restored["ended"]:
            state.ended.add(writer)
            self.combiner.remove_input((partition, writer))

    def counts(self, key: ExchangeKey) -> bool:
        """Whether ``key``'s control records speak for a writer this reader waits for."""
        return key.generation == self.generation and key.writers == self.writers

    def on_data(self, partition: int, key: ExchangeKey) -> None:
        """A pack arrived: a writer marked idle is active again."""
        state = self._partitions[partition]
        if key.writer in state.idle and self.counts(key):
            state.idle.discard(key.writer)
            self.combiner.on_status((partition, key.writer), WatermarkStatus.ACTIVE)

    def on_control(self, partition: int, key: ExchangeKey, value: bytes | None) -> None:
        """A WATERMARK, IDLE, ACTIVE or END record. Raises ValueError for a malformed one."""
        if not self.counts(key):
            return
        writer = key.writer
        if not 0 <= writer < self.writers:
            raise ValueError(f"control record of writer {writer}, but the exchange has {self.writers} writers")
        state = self._partitions[partition]
        if writer in state.ended:
            return
        name = (partition, writer)
        kind = key.kind
        if kind is RecordKind.WATERMARK:
            mark = decode_watermark(value)
            if mark > state.watermarks[writer]:
                state.watermarks[writer] = mark
                if writer in state.idle:  # a watermark is a sign of life, as a record is
                    state.idle.discard(writer)
                    self.combiner.on_status(name, WatermarkStatus.ACTIVE)
                self.combiner.on_watermark(name, mark)
        elif kind is RecordKind.IDLE:
            if writer not in state.idle:
                state.idle.add(writer)
                self.combiner.on_status(name, WatermarkStatus.IDLE)
        elif kind is RecordKind.ACTIVE:
            if writer in state.idle:
                state.idle.discard(writer)
                self.combiner.on_status(name, WatermarkStatus.ACTIVE)
        elif kind is RecordKind.END:
            state.ended.add(writer)
            state.idle.discard(writer)
            self.combiner.remove_input(name)

    def ended(self, partition: int) -> bool:
        """Every writer of this deployment ended in ``partition``."""
        return len(self._partitions[partition].ended) == self.writers

    def snapshot(self, partition: int) -> dict[str, Any]:
        state = self._partitions[partition]
        return {
            "generation": self.generation,
            "writers": self.writers,
            "watermarks": list(state.watermarks),
            "idle": sorted(state.idle),
            "ended": sorted(state.ended),
        }
