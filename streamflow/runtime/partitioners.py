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

    __slots__ = ("channels", "partitioning", "_next", "_selector", "_key_group", "_split")

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
        hashed = partitioning is Partitioning.HASH and len(channels) > 1
        self._split = HashSplit(max_parallelism, len(channels)) if hashed else None

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
        groups (the keyed operator downstream never computes them again)."""
        selector = self._selector
        assert selector is not None  # a hash edge always carries its key selector
        keys = list(map(selector, batch.records))
        key_groups = self._key_group.of_all(keys)
        split = self._split
        if split is None:  # one subtask downstream: the batch goes whole, keyed
            await self.channels[0].put(
                Batch(batch.records, batch.positions, batch.origin, keys, key_groups, batch.timestamps)
            )
            return
        for channel, part in zip(self.channels, split.parts(batch, keys, key_groups)):
            if part is not None:
                await channel.put(part)

    async def broadcast_control(self, element: Any) -> None:
        for channel in self.channels:
            await channel.put(element)


class HashSplit:
    """Splits keyed batches by the subtask that owns each record's key group, keeping
    input order within each part.

    What a hash exchange to several subtasks costs per record beyond computing keys and
    key groups: one loop files each record's index with its owner, through a table of
    each key group's index-list ``append`` built once; each part's lists are then picked
    by ``itemgetter`` (in C). The index lists are reused from batch to batch, and so are
    the index numbers (ints above 256 are objects: counting them out anew per record
    costs an allocation each).
    """

    __slots__ = ("_indexes", "_file_under_owner", "_numbers")

    def __init__(self, max_parallelism: int, parallelism: int) -> None:
        self._indexes: list[list[int]] = [[] for _ in range(parallelism)]
        appends = [indexes.append for indexes in self._indexes]
        self._file_under_owner = [appends[owner] for owner in subtask_table(max_parallelism, parallelism)]
        self._numbers: list[int] = []

    def parts(self, batch: Batch, keys: list[Any], key_groups: list[int]) -> list[Batch | None]:
        """Per subtask, its records of ``batch`` (None when it has none), with their
        positions, timestamps, ``keys`` and ``key_groups``."""
        count = len(key_groups)
        numbers = self._numbers
        if len(numbers) < count:
            numbers.extend(range(len(numbers), count))
        file_under_owner = self._file_under_owner
        try:
            for index, key_group in zip(numbers, key_groups):
                file_under_owner[key_group](index)
            return [self._part(batch, keys, key_groups, indexes, count) for indexes in self._indexes]
        finally:
            for indexes in self._indexes:
                indexes.clear()

    @staticmethod
    def _part(batch: Batch, keys: list[Any], key_groups: list[int], indexes: list[int], count: int) -> Batch | None:
        if not indexes:
            return None
        records, positions, timestamps = batch.records, batch.positions, batch.timestamps
        if len(indexes) == count:  # every record goes to this subtask: the lists as they are
            return Batch(records, positions, batch.origin, keys, key_groups, timestamps)
        if len(indexes) == 1:
            only = indexes[0]
            return Batch(
                [records[only]], None if positions is None else [positions[only]], batch.origin, [keys[only]],
                [key_groups[only]], None if timestamps is None else [timestamps[only]],
            )
        pick = itemgetter(*indexes)
        return Batch(
            list(pick(records)), None if positions is None else list(pick(positions)), batch.origin,
            list(pick(keys)), list(pick(key_groups)), None if timestamps is None else list(pick(timestamps)),
        )
