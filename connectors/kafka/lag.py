"""Consumer lag of one KafkaSource reader: Flink's ``pendingRecords`` (FLIP-33).

The lag of a partition is its end offset minus the NEXT offset the reader will hand
out, so records fetched but still waiting in the reader count as pending. The end
offset is the newest of two readings: what the consumer's last fetch response said
(free: the high watermark, or the last stable offset under ``read_committed``), and a
ListOffsets look-up. A backpressured reader stops fetching, so the first reading goes
stale exactly when the lag grows; the look-up fixes that. It runs in the background, at
most once per ``refresh`` seconds and only while the job's metrics are read (a scrape,
the dashboard, ``JobClient.metrics()``, the periodic metrics log line), never from the
record path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition

from streamflow.connectors.kafka.offsets import KafkaSplit

__all__ = ["ConsumerLag"]

log = logging.getLogger("streamflow.connectors.kafka")


class ConsumerLag:
    """Pending records of the partitions one reader owns (see the module docstring)."""

    def __init__(self, *, read_committed: bool, timeout: float, refresh: float = 5.0) -> None:
        self._read_committed = read_committed
        self._timeout = timeout
        self._refresh = refresh
        self._looked_up: dict[TopicPartition, int] = {}
        self._last_lookup = float("-inf")
        self._lookup: asyncio.Task[None] | None = None
        self._closed = False

    def pending_records(self, consumer: Any, splits: Mapping[TopicPartition, KafkaSplit]) -> int | None:
        """Records not yet handed out, summed over ``splits``; None while the end offset
        of some partition is unknown (before the first fetch or look-up answered): a sum
        over some partitions would understate the lag."""
        if consumer is None or not splits:
            return None
        self._maybe_look_up(consumer, list(splits))
        assigned = consumer.assignment()
        total = 0
        for tp, split in splits.items():
            end = self._end_offset(consumer, tp) if tp in assigned else self._looked_up.get(tp)
            if split.stop is not None:
                end = split.stop if end is None else min(end, split.stop)
            if end is None:
                return None
            total += max(0, end - split.offset)
        return total

    def _end_offset(self, consumer: Any, tp: TopicPartition) -> int | None:
        fetched = consumer.last_stable_offset(tp) if self._read_committed else consumer.highwater(tp)
        looked_up = self._looked_up.get(tp)
        candidates = [o for o in (fetched, looked_up) if isinstance(o, int) and o >= 0]
        return max(candidates) if candidates else None

    def _maybe_look_up(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        now = time.monotonic()
        running = self._lookup is not None and not self._lookup.done()
        if self._closed or running or now - self._last_lookup < self._refresh:
            return
        self._last_lookup = now
        try:
            self._lookup = asyncio.get_running_loop().create_task(self._look_up(consumer, partitions))
        except RuntimeError:  # read outside the job's loop: the fetch readings must do
            self._lookup = None

    async def _look_up(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                offsets = await consumer.end_offsets(partitions)
        except Exception as exc:  # noqa: BLE001 - a metric never fails the job
            log.debug("looking up end offsets for the consumer lag failed: %r", exc)
            return
        self._looked_up.update(offsets)

    async def close(self) -> None:
        """Stop a look-up still running and start no more (before the consumer stops)."""
        self._closed = True
        lookup, self._lookup = self._lookup, None
        if lookup is not None and not lookup.done():
            lookup.cancel()
            await asyncio.wait({lookup})  # a cancel of close() itself still propagates
