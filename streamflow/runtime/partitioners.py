"""Record writers: route a task's output batches to the channels of one edge.

Control elements (barriers, watermarks, end of input) go to every channel of the edge,
in order with the batches, so each downstream subtask sees them between the same records.
"""

from __future__ import annotations

from typing import Any, Callable

from streamflow.core.elements import Batch
from streamflow.graph.spec import Partitioning
from streamflow.partitioning.keygroups import KeyGroupAssigner, subtask_table
from streamflow.runtime.channel import Channel


class RecordWriter:
    """Output of one task subtask along one edge; ``channels[i]`` leads to subtask i."""

    __slots__ = ("channels", "partitioning", "_next", "_selector", "_key_group", "_table")

    def __init__(
        self,
        channels: list[Channel],
        partitioning: Partitioning,
        key_selector: Callable[[Any], Any] | None,
        max_parallelism: int,
    ) -> None:
        self.channels = channels
        self.partitioning = partitioning
        self._next = 0
        self._selector = key_selector
        self._key_group = KeyGroupAssigner(max_parallelism)
        self._table = subtask_table(max_parallelism, len(channels))

    async def emit(self, batch: Batch) -> None:
        channels = self.channels
        kind = self.partitioning
        if len(channels) == 1 and kind is not Partitioning.HASH:
            await channels[0].put(batch)
        elif kind is Partitioning.HASH:
            await self._emit_hashed(batch)
        elif kind is Partitioning.BROADCAST:
            for channel in channels:
                await channel.put(batch)
        else:  # REBALANCE (FORWARD always has one channel per writer)
            index = self._next
            self._next = (index + 1) % len(channels)
            await channels[index].put(batch)

    async def _emit_hashed(self, batch: Batch) -> None:
        selector = self._selector
        assert selector is not None  # a hash edge always carries its key selector
        key_group_of = self._key_group
        table = self._table
        records = batch.records
        positions = batch.positions
        timestamps = batch.timestamps
        count = len(self.channels)
        if count == 1:  # one subtask downstream: the batch goes whole, keyed
            keys = [selector(record) for record in records]
            await self.channels[0].put(
                Batch(records, positions, batch.origin, keys, [key_group_of(k) for k in keys], timestamps)
            )
            return
        parts: list[tuple[list[Any], list[Any], list[int], list[Any] | None, list[float | None] | None]] = [
            ([], [], [], [] if positions is not None else None, [] if timestamps is not None else None)
            for _ in range(count)
        ]
        for index, record in enumerate(records):
            key = selector(record)
            key_group = key_group_of(key)
            part = parts[table[key_group]]
            part[0].append(record)
            part[1].append(key)
            part[2].append(key_group)
            if positions is not None:
                part[3].append(positions[index])  # type: ignore[union-attr]
            if timestamps is not None:
                part[4].append(timestamps[index])  # type: ignore[union-attr]
        for target, (part_records, keys, key_groups, part_positions, part_timestamps) in enumerate(parts):
            if part_records:
                await self.channels[target].put(
                    Batch(part_records, part_positions, batch.origin, keys, key_groups, part_timestamps)
                )

    async def broadcast_control(self, element: Any) -> None:
        for channel in self.channels:
            await channel.put(element)
