"""What every timer store of a keyed operator offers, and reading timers back from a
snapshot.

A keyed operator subtask keeps two timer stores (processing and event time). The heap
backend's operators keep them in memory (:class:`streamflow.runtime.timers.TimerQueue`);
a backend that can hold them itself (RocksDB) hands them out through
:class:`TimerStoreBackend`, so millions of timers do not live in Python memory.

Both speak the same snapshot form: a list of ``(timestamp, key_group, key)`` entries,
what a savepoint or canonical checkpoint stores, so timers move between backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from streamflow.partitioning.keygroups import key_group_for
from streamflow.state.shapes import tuplify

__all__ = ["TimerDomain", "TimerStore", "TimerStoreBackend", "owned_timer_entries", "pop_due"]

TimerDomain = Literal["processing", "event"]


class TimerStore(Protocol):
    """One time domain's timers: a timer is ``(timestamp, key)``, registered once
    however often it is registered; the key group travels with it."""

    def __len__(self) -> int: ...

    def register(self, timestamp: float, key: Any, key_group: int) -> None: ...

    def delete(self, timestamp: float, key: Any, key_group: int) -> None: ...

    def next_time(self) -> float | None: ...

    def pop_due(self, now: float) -> list[tuple[float, int, Any]]: ...

    def pop_next(self, now: float) -> tuple[float, int, Any] | None: ...

    def snapshot(self) -> list[tuple[float, int, Any]]: ...

    def restore(self, entries: Iterable[Sequence[Any]], key_groups: range, max_parallelism: int) -> None: ...


@runtime_checkable
class TimerStoreBackend(Protocol):
    """A keyed backend that keeps its operator's timers itself (RocksDB): they go
    through its native checkpoints with the rest of its state."""

    def timer_store(self, domain: TimerDomain) -> TimerStore:
        """The store of ``domain``'s timers (the same object on every call)."""


def pop_due(store: TimerStore, now: float) -> list[tuple[float, int, Any]]:
    """Every timer of ``store`` with timestamp <= ``now``, in time order (removed),
    those registered meanwhile too: ``pop_next`` until there is none."""
    due = []
    while (entry := store.pop_next(now)) is not None:
        due.append(entry)
    return due


def owned_timer_entries(
    entries: Iterable[Sequence[Any]], key_groups: range, max_parallelism: int
) -> Iterator[tuple[float, int, Any]]:
    """The ``(timestamp, key_group, key)`` entries of a snapshot whose key group is in
    ``key_groups``.

    Snapshots written before exact state types (JSON) hold ``[timestamp, key_group,
    key]`` lists whose tuple keys came back as lists; those are turned back into tuples,
    and their key group is recomputed as the keyed state's is (see
    ``streamflow.state.heap_snapshot``).
    """
    for entry in entries:
        timestamp, key_group, key = entry
        if type(entry) is list:  # written before exact state types
            key = tuplify(key)
            if type(key) is not str and type(key) is not int:
                key_group = key_group_for(key, max_parallelism)
        if key_group in key_groups:
            yield timestamp, key_group, key
