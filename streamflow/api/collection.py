"""A bounded source over an in-memory sequence, for tests, examples and small inputs.

What ``env.from_collection`` reads; exported as ``streamflow.connectors.CollectionSource``
too. It lives here, next to the contract it implements, so that the DataStream API
needs nothing from ``connectors/`` (which builds on the API, not the other way round).

Delivery guarantee: exactly-once (replayable). The position of a record is its index in
the sequence; a split state stores the index of the NEXT item to read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.errors import ConfigError, StateError

__all__ = ["CollectionReader", "CollectionSource"]


@dataclass(frozen=True, slots=True)
class CollectionSource:
    """Emit ``items`` in order, then end.

    On a fresh start subtask i of p reads the i-th of p contiguous, near-equal slices, in
    order. Each slice is a split ``{"split": "collection[a:b]", "next": k, "end": b}``, so
    a restore at another parallelism hands whole unread remainders to the new subtasks.
    The items are copied into a tuple when the source is built: later changes to the
    caller's list do not change the job.
    """

    items: Sequence[Any]
    _: KW_ONLY
    batch_size: int = 500

    def __post_init__(self) -> None:
        if isinstance(self.items, (str, bytes)) or not isinstance(self.items, Sequence):
            raise ConfigError(
                f"CollectionSource needs a sequence of records (a list or tuple), got "
                f"{type(self.items).__name__}: {self.items!r:.80}; wrap a single record in a list",
                value=type(self.items).__name__,
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(
                f"CollectionSource batch_size must be a positive int, got {self.batch_size!r}",
                value=self.batch_size,
            )
        object.__setattr__(self, "items", tuple(self.items))

    def create_reader(self, ctx: SourceContext) -> CollectionReader:
        if ctx.restored_splits is None:
            n, p, i = len(self.items), ctx.parallelism, ctx.subtask_index
            start, end = i * n // p, (i + 1) * n // p
            splits = [_Split(start, end)]
        else:
            splits = [_Split.restore(s, len(self.items)) for s in ctx.restored_splits]
        return CollectionReader(tuple(self.items), splits, self.batch_size)  # already a tuple: no copy


class _Split:
    __slots__ = ("name", "next", "end")

    def __init__(self, start: int, end: int) -> None:
        self.name = f"collection[{start}:{end}]"
        self.next = start
        self.end = end

    @classmethod
    def restore(cls, state: Any, size: int) -> _Split:
        try:
            split = cls(int(state["next"]), int(state["end"]))
            split.name = str(state["split"])
        except (TypeError, KeyError, ValueError) as exc:
            raise StateError(
                f"restored split {state!r} is not a CollectionSource split; was this source "
                "uid used by another source before?",
                split=repr(state),
            ) from exc
        if not 0 <= split.next <= split.end <= size:
            raise StateError(
                f"restored split {state!r} does not fit a collection of {size} items; the "
                "collection changed since the checkpoint. Restore with the same items.",
                split=repr(state),
            )
        return split


class CollectionReader:
    """Reads its splits one after the other; ``poll`` never waits."""

    def __init__(self, items: tuple[Any, ...], splits: list[_Split], batch_size: int) -> None:
        self._items = items
        self._splits = splits
        self._batch_size = batch_size

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        while self._splits and self._splits[0].next >= self._splits[0].end:
            self._splits.pop(0)
        if not self._splits:
            return None
        split = self._splits[0]
        start = split.next
        stop = min(split.end, start + max(1, min(max_records, self._batch_size)))
        split.next = stop
        return SourceBatch(list(self._items[start:stop]), list(range(start, stop)), split.name)

    def active_splits(self) -> list[str]:
        """The splits with items still to read (for per-split watermarks)."""
        return [s.name for s in self._splits if s.next < s.end]

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [
            {"split": s.name, "next": s.next, "end": s.end} for s in self._splits if s.next < s.end
        ]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None
