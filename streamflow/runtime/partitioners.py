"""Record writers: route a task's output batches to the channels of one edge.

Control elements (barriers, watermarks, end of input) go to every channel of the edge,
in order with the batches, so each downstream subtask sees them between the same records.
"""

from __future__ import annotations

from operator import itemgetter
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
        """Split ``batch`` by owning subtask, each part carrying its records' keys and key
        groups (the keyed operator downstream never computes them again).

        Keys and key groups are mapped over the whole batch, one loop sorts record
        indexes by target, and each part's lists are picked by ``itemgetter`` (in C).
        """
        selector = self._selector
        assert selector is not None  # a hash edge always carries its key selector
        records, positions = batch.records, batch.positions
        keys = list(map(selector, records))
        key_groups = self._key_group.of_all(keys)
        channels = self.channels
        if len(channels) == 1:  # one subtask downstream: the batch goes whole, keyed
            await channels[0].put(Batch(records, positions, batch.origin, keys, key_groups, batch.timestamps))
            return
        buckets: list[list[int]] = [[] for _ in channels]
        add = [bucket.append for bucket in buckets]
        table = self._table
        for index, key_group in enumerate(key_groups):
            add[table[key_group]](index)
        timestamps = batch.timestamps
        for channel, indexes in zip(channels, buckets):
            if not indexes:
                continue
            pick = _picker(indexes)
            await channel.put(Batch(
                pick(records), None if positions is None else pick(positions), batch.origin, pick(keys),
                pick(key_groups), None if timestamps is None else pick(timestamps),
            ))

    async def broadcast_control(self, element: Any) -> None:
        for channel in self.channels:
            await channel.put(element)


def _picker(indexes: list[int]) -> Callable[[list[Any]], list[Any]]:
    """A function taking the items at ``indexes`` (at least one) out of a list."""
    if len(indexes) == 1:
        only = indexes[0]
        return lambda items: [items[only]]
    get = itemgetter(*indexes)
    return lambda items: list(get(items))
