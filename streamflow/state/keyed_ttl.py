"""Keyed state handles with time to live.

Each class subclasses the plain handle of its kind (so ``isinstance(h, ValueState)``
holds either way) and stores ``(value, last_update_timestamp)`` tuples where the plain
handle stores values: per element for ListState and per entry for MapState, as in Flink.
Every method first gives the state's :class:`~streamflow.state.ttl.TtlPolicy` a chance to
run an incremental cleanup step. Keeping TTL in separate classes is what makes states
without TTL free of any TTL cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from streamflow.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)
from streamflow.state.keyed import (
    AggregatingState,
    KeyContext,
    ListState,
    MapState,
    ReducingState,
    Table,
    ValueState,
)
from streamflow.state.ttl import MISSING, TtlPolicy

__all__ = ["TtlAggregatingState", "TtlListState", "TtlMapState", "TtlReducingState", "TtlValueState"]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


class TtlValueState(ValueState[T]):
    """ValueState whose value expires ``ttl`` seconds after its last refresh."""

    __slots__ = ("_ttl",)

    def __init__(self, descriptor: ValueStateDescriptor[T], ctx: KeyContext, table: Table, ttl: TtlPolicy) -> None:
        super().__init__(descriptor, ctx, table)
        self._ttl = ttl

    def value(self) -> T | None:
        self._ttl.on_access()
        group = self._group()
        if group is None:
            return self._default
        key = self._ctx.key
        entry = group.get(key)
        if entry is None:
            return self._default
        value = self._ttl.read(group, key, entry, self._ttl.clock.now())
        return self._default if value is MISSING else value

    def update(self, value: T) -> None:
        self._ttl.on_access()
        self._write_group()[self._ctx.key] = (value, self._ttl.clock.now())

    def clear(self) -> None:
        self._ttl.on_access()
        super().clear()


class TtlListState(ListState[T]):
    """ListState whose elements expire one by one, each ``ttl`` after it was added."""

    __slots__ = ("_ttl",)

    def __init__(self, descriptor: ListStateDescriptor[T], ctx: KeyContext, table: Table, ttl: TtlPolicy) -> None:
        super().__init__(descriptor, ctx, table)
        self._ttl = ttl

    def get(self) -> list[T]:
        ttl = self._ttl
        ttl.on_access()
        group = self._group()
        if group is None:
            return []
        key = self._ctx.key
        items = group.get(key)
        if items is None:
            return []
        now = ttl.clock.now()
        span = ttl.ttl
        result: list[T] = []
        kept: list[tuple[Any, float]] = []
        dropped = False
        for entry in items:
            if entry[1] + span > now:  # TtlPolicy.alive, inlined
                result.append(entry[0])
                kept.append((entry[0], now) if ttl.refresh_on_read else entry)
            else:
                if ttl.return_expired:
                    result.append(entry[0])
                if ttl.cleanup_on_read:
                    dropped = True
                else:
                    kept.append(entry)
        if dropped or ttl.refresh_on_read:
            if kept:
                group[key] = kept
            else:
                del group[key]
        return result

    def add(self, value: T) -> None:
        self._ttl.on_access()
        group = self._write_group()
        key = self._ctx.key
        entry = (value, self._ttl.clock.now())
        items = group.get(key)
        if items is None:
            group[key] = [entry]
        else:
            items.append(entry)

    def add_all(self, values: Iterable[T]) -> None:
        self._ttl.on_access()
        group = self._write_group()
        now = self._ttl.clock.now()
        new = [(value, now) for value in values]
        if new:
            key = self._ctx.key
            items = group.get(key)
            if items is None:
                group[key] = new
            else:
                items.extend(new)

    def update(self, values: Iterable[T]) -> None:
        self._ttl.on_access()
        now = self._ttl.clock.now()
        super().update([(value, now) for value in values])  # type: ignore[misc]

    def clear(self) -> None:
        self._ttl.on_access()
        super().clear()


class TtlMapState(MapState[K, V]):
    """MapState whose entries expire one by one, each ``ttl`` after its last refresh."""

    __slots__ = ("_ttl",)

    def __init__(self, descriptor: MapStateDescriptor[K, V], ctx: KeyContext, table: Table, ttl: TtlPolicy) -> None:
        super().__init__(descriptor, ctx, table)
        self._ttl = ttl

    def _read(self, map_key: K) -> Any:
        """The visible value under ``map_key``, or MISSING; applies read-time TTL rules."""
        group = self._group()
        if group is None:
            return MISSING
        key = self._ctx.key
        entries = group.get(key)
        if entries is None:
            return MISSING
        entry = entries.get(map_key)
        if entry is None:
            return MISSING
        value = self._ttl.read(entries, map_key, entry, self._ttl.clock.now())
        if not entries:
            del group[key]
        return value

    def _visible(self) -> list[tuple[K, V]]:
        """Every visible entry of the current key's map, applying read-time TTL rules."""
        group = self._group()
        if group is None:
            return []
        key = self._ctx.key
        entries = group.get(key)
        if entries is None:
            return []
        ttl = self._ttl
        now = ttl.clock.now()
        result: list[tuple[K, V]] = []
        for map_key, entry in list(entries.items()):
            value = ttl.read(entries, map_key, entry, now)
            if value is not MISSING:
                result.append((map_key, value))
        if not entries:
            del group[key]
        return result

    def get(self, map_key: K, default: V | None = None) -> V | None:
        self._ttl.on_access()
        value = self._read(map_key)
        return default if value is MISSING else value

    def put(self, map_key: K, value: V) -> None:
        self._ttl.on_access()
        super().put(map_key, (value, self._ttl.clock.now()))  # type: ignore[arg-type]

    def put_all(self, mapping: Mapping[K, V]) -> None:
        self._ttl.on_access()
        now = self._ttl.clock.now()
        super().put_all({map_key: (value, now) for map_key, value in mapping.items()})  # type: ignore[misc]

    def remove(self, map_key: K) -> None:
        self._ttl.on_access()
        super().remove(map_key)

    def contains(self, map_key: K) -> bool:
        self._ttl.on_access()
        return self._read(map_key) is not MISSING

    def keys(self) -> list[K]:
        self._ttl.on_access()
        return [map_key for map_key, _ in self._visible()]

    def values(self) -> list[V]:
        self._ttl.on_access()
        return [value for _, value in self._visible()]

    def items(self) -> list[tuple[K, V]]:
        self._ttl.on_access()
        return self._visible()

    def is_empty(self) -> bool:
        """Whether no entry is visible; does not refresh or remove anything."""
        ttl = self._ttl
        ttl.on_access()
        entries = self._map()
        if not entries:
            return True
        if ttl.return_expired:
            return False
        now = ttl.clock.now()
        return not any(ttl.alive(timestamp, now) for _, timestamp in entries.values())

    def clear(self) -> None:
        self._ttl.on_access()
        super().clear()


class TtlReducingState(ReducingState[T]):
    """ReducingState whose value expires ``ttl`` after its last add (or read, if so set).

    An expired value never enters a reduction: ``add`` after expiry starts afresh.
    """

    __slots__ = ("_ttl",)

    def __init__(self, descriptor: ReducingStateDescriptor[T], ctx: KeyContext, table: Table, ttl: TtlPolicy) -> None:
        super().__init__(descriptor, ctx, table)
        self._ttl = ttl

    def get(self) -> T | None:
        self._ttl.on_access()
        return _read_single(self._group(), self._ctx.key, self._ttl)  # type: ignore[no-any-return]

    def add(self, value: T) -> None:
        ttl = self._ttl
        ttl.on_access()
        group = self._write_group()
        key = self._ctx.key
        now = ttl.clock.now()
        entry = group.get(key)
        if entry is not None and ttl.alive(entry[1], now):
            value = self._reduce(entry[0], value)
        group[key] = (value, now)

    def clear(self) -> None:
        self._ttl.on_access()
        super().clear()


class TtlAggregatingState(AggregatingState[IN, ACC, OUT]):
    """AggregatingState whose accumulator expires ``ttl`` after its last add.

    An expired accumulator is never folded into: ``add`` after expiry starts a new one.
    """

    __slots__ = ("_ttl",)

    def __init__(
        self, descriptor: AggregatingStateDescriptor[IN, ACC, OUT], ctx: KeyContext, table: Table, ttl: TtlPolicy
    ) -> None:
        super().__init__(descriptor, ctx, table)
        self._ttl = ttl

    def get(self) -> OUT | None:
        self._ttl.on_access()
        accumulator = _read_single(self._group(), self._ctx.key, self._ttl)
        return None if accumulator is None else self._fn.get_result(accumulator)

    def add(self, value: IN) -> None:
        ttl = self._ttl
        ttl.on_access()
        group = self._write_group()
        key = self._ctx.key
        now = ttl.clock.now()
        entry = group.get(key)
        if entry is not None and ttl.alive(entry[1], now):
            accumulator = entry[0]
        else:
            accumulator = self._fn.create_accumulator()
        group[key] = (self._fn.add(value, accumulator), now)

    def clear(self) -> None:
        self._ttl.on_access()
        super().clear()


def _read_single(group: dict[Any, Any] | None, key: Any, ttl: TtlPolicy) -> Any:
    """The visible stored value of ``key`` in ``group``, or None."""
    if group is None:
        return None
    entry = group.get(key)
    if entry is None:
        return None
    value = ttl.read(group, key, entry, ttl.clock.now())
    return None if value is MISSING else value
