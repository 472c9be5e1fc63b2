"""Keyed state handles of the heap backend (states without TTL).

A handle is bound to a :class:`KeyContext` that the backend shares with every handle; the
runtime sets the context's key and key group before each record, and every call reads
them at call time. So a user function fetches its handles once, in ``open``, and uses
them for every record.

Storage is one table per state name: ``table[key_group][key] -> stored value``. Nested
dicts make a snapshot or restore of whole key groups a walk over a few dicts, and keep
the per-record cost at two dict lookups. These methods run once or more per record, so
the common paths are written out inline (no helper calls, no allocation beyond the
user's own data); a missing current key is detected on the miss path, where a sentinel key
group that is never in any table sends the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Generic, TypeVar

from streamflow.errors import StateError
from streamflow.state.descriptors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamflow.state.ttl import MISSING

__all__ = ["AggregatingState", "KeyContext", "ListState", "MapState", "ReducingState", "ValueState"]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")

Table = dict[int, dict[Any, Any]]


class _NoKey:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no current key>"


NO_KEY: Final = _NoKey()
NO_KEY_GROUP: Final = -1


class KeyContext:
    """The current key and key group, shared by a backend and all of its handles."""

    __slots__ = ("key", "key_group")

    def __init__(self) -> None:
        self.key: Any = NO_KEY
        self.key_group: int = NO_KEY_GROUP


def no_current_key(name: str | None) -> StateError:
    """The error for keyed state (``name``, or the current key itself) used with no key set."""
    what = "the current key was asked for" if name is None else f"state {name!r} was accessed"
    return StateError(
        f"keyed state used outside a keyed context; use it in a KeyedProcessFunction or after key_by "
        f"({what} while no record key was current)",
        state=name,
    )


class KeyedState:
    """Common base of the keyed state handles: the name, the key context and the table."""

    __slots__ = ("name", "_ctx", "_table")

    def __init__(self, descriptor: StateDescriptor, ctx: KeyContext, table: Table) -> None:
        self.name = descriptor.name
        self._ctx = ctx
        self._table = table

    def _group(self) -> dict[Any, Any] | None:
        """The current key group's dict, or None if it holds nothing yet."""
        ctx = self._ctx
        group = self._table.get(ctx.key_group)
        if group is None and ctx.key is NO_KEY:
            raise no_current_key(self.name)
        return group

    def _write_group(self) -> dict[Any, Any]:
        """The current key group's dict, created on first write."""
        ctx = self._ctx
        if ctx.key is NO_KEY:
            raise no_current_key(self.name)
        group = self._table.get(ctx.key_group)
        if group is None:
            group = self._table[ctx.key_group] = {}
        return group

    def clear(self) -> None:
        """Remove the current key's value."""
        ctx = self._ctx
        group = self._table.get(ctx.key_group)
        if group is not None:
            group.pop(ctx.key, None)
        elif ctx.key is NO_KEY:
            raise no_current_key(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ValueState(KeyedState, Generic[T]):
    """One value per key; ``value()`` returns the descriptor's default while unset."""

    __slots__ = ("_default",)

    def __init__(self, descriptor: ValueStateDescriptor[T], ctx: KeyContext, table: Table) -> None:
        super().__init__(descriptor, ctx, table)
        self._default = descriptor.default

    def value(self) -> T | None:
        """The current key's value, or the descriptor's default."""
        ctx = self._ctx
        group = self._table.get(ctx.key_group)
        if group is None:
            if ctx.key is NO_KEY:
                raise no_current_key(self.name)
            return self._default
        return group.get(ctx.key, self._default)

    def update(self, value: T) -> None:
        """Set the current key's value."""
        ctx = self._ctx
        key = ctx.key
        if key is NO_KEY:
            raise no_current_key(self.name)
        group = self._table.get(ctx.key_group)
        if group is None:
            self._table[ctx.key_group] = {key: value}
        else:
            group[key] = value


class ListState(KeyedState, Generic[T]):
    """A list per key. ``get()`` returns a copy; an empty list is not stored."""

    __slots__ = ()

    def __init__(self, descriptor: ListStateDescriptor[T], ctx: KeyContext, table: Table) -> None:
        super().__init__(descriptor, ctx, table)

    def get(self) -> list[T]:
        """A copy of the current key's list ([] if none)."""
        group = self._group()
        if group is None:
            return []
        items = group.get(self._ctx.key)
        return [] if items is None else list(items)

    def add(self, value: T) -> None:
        """Append one value to the current key's list."""
        ctx = self._ctx
        key = ctx.key
        if key is NO_KEY:
            raise no_current_key(self.name)
        group = self._table.get(ctx.key_group)
        if group is None:
            self._table[ctx.key_group] = {key: [value]}
            return
        items = group.get(key)
        if items is None:
            group[key] = [value]
        else:
            items.append(value)

    def add_all(self, values: Iterable[T]) -> None:
        """Append every value of ``values`` to the current key's list."""
        group = self._write_group()
        new = list(values)
        if new:
            key = self._ctx.key
            items = group.get(key)
            if items is None:
                group[key] = new
            else:
                items.extend(new)

    def update(self, values: Iterable[T]) -> None:
        """Replace the current key's list with ``values`` (an empty iterable clears it)."""
        group = self._write_group()
        new = list(values)
        if new:
            group[self._ctx.key] = new
        else:
            group.pop(self._ctx.key, None)


class MapState(KeyedState, Generic[K, V]):
    """A map per key. ``keys()``, ``values()`` and ``items()`` return new lists."""

    __slots__ = ()

    def __init__(self, descriptor: MapStateDescriptor[K, V], ctx: KeyContext, table: Table) -> None:
        super().__init__(descriptor, ctx, table)

    def _map(self) -> dict[Any, Any] | None:
        group = self._group()
        return None if group is None else group.get(self._ctx.key)

    def get(self, map_key: K, default: V | None = None) -> V | None:
        """The value under ``map_key`` in the current key's map, or ``default``."""
        ctx = self._ctx
        group = self._table.get(ctx.key_group)
        if group is None:
            if ctx.key is NO_KEY:
                raise no_current_key(self.name)
            return default
        entries = group.get(ctx.key)
        return default if entries is None else entries.get(map_key, default)

    def put(self, map_key: K, value: V) -> None:
        """Set ``map_key`` to ``value`` in the current key's map."""
        ctx = self._ctx
        key = ctx.key
        if key is NO_KEY:
            raise no_current_key(self.name)
        group = self._table.get(ctx.key_group)
        if group is None:
            self._table[ctx.key_group] = {key: {map_key: value}}
            return
        entries = group.get(key)
        if entries is None:
            group[key] = {map_key: value}
        else:
            entries[map_key] = value

    def put_all(self, mapping: Mapping[K, V]) -> None:
        """Set every entry of ``mapping`` in the current key's map."""
        group = self._write_group()
        if mapping:
            key = self._ctx.key
            entries = group.get(key)
            if entries is None:
                group[key] = dict(mapping)
            else:
                entries.update(mapping)

    def remove(self, map_key: K) -> None:
        """Remove ``map_key`` from the current key's map (no error if absent)."""
        group = self._group()
        if group is not None:
            entries = group.get(self._ctx.key)
            if entries is not None:
                entries.pop(map_key, None)
                if not entries:
                    del group[self._ctx.key]

    def contains(self, map_key: K) -> bool:
        """Whether the current key's map has ``map_key``."""
        entries = self._map()
        return entries is not None and map_key in entries

    def keys(self) -> list[K]:
        """The map keys of the current key's map."""
        entries = self._map()
        return [] if entries is None else list(entries)

    def values(self) -> list[V]:
        """The values of the current key's map."""
        entries = self._map()
        return [] if entries is None else list(entries.values())

    def items(self) -> list[tuple[K, V]]:
        """The ``(map_key, value)`` pairs of the current key's map."""
        entries = self._map()
        return [] if entries is None else list(entries.items())

    def is_empty(self) -> bool:
        """Whether the current key's map has no entries."""
        return not self._map()


class ReducingState(KeyedState, Generic[T]):
    """One value per key, combined with each added value by the descriptor's reduce_fn."""

    __slots__ = ("_reduce",)

    def __init__(self, descriptor: ReducingStateDescriptor[T], ctx: KeyContext, table: Table) -> None:
        super().__init__(descriptor, ctx, table)
        self._reduce = descriptor.reduce_fn

    def get(self) -> T | None:
        """The reduced value of the current key, or None if nothing was added."""
        group = self._group()
        return None if group is None else group.get(self._ctx.key)

    def add(self, value: T) -> None:
        """Reduce ``value`` into the current key's value."""
        ctx = self._ctx
        key = ctx.key
        if key is NO_KEY:
            raise no_current_key(self.name)
        group = self._table.get(ctx.key_group)
        if group is None:
            self._table[ctx.key_group] = {key: value}
            return
        current = group.get(key, MISSING)
        group[key] = value if current is MISSING else self._reduce(current, value)


class AggregatingState(KeyedState, Generic[IN, ACC, OUT]):
    """One accumulator per key, folded by the descriptor's aggregate function."""

    __slots__ = ("_fn",)

    def __init__(self, descriptor: AggregatingStateDescriptor[IN, ACC, OUT], ctx: KeyContext, table: Table) -> None:
        super().__init__(descriptor, ctx, table)
        self._fn: AggregateFunction[IN, ACC, OUT] = descriptor.aggregate_fn

    def get(self) -> OUT | None:
        """``get_result`` of the current key's accumulator, or None if nothing was added."""
        group = self._group()
        if group is None:
            return None
        accumulator = group.get(self._ctx.key, MISSING)
        return None if accumulator is MISSING else self._fn.get_result(accumulator)

    def add(self, value: IN) -> None:
        """Fold ``value`` into the current key's accumulator."""
        ctx = self._ctx
        key = ctx.key
        if key is NO_KEY:
            raise no_current_key(self.name)
        group = self._table.get(ctx.key_group)
        if group is None:
            group = self._table[ctx.key_group] = {}
        accumulator = group.get(key, MISSING)
        if accumulator is MISSING:
            accumulator = self._fn.create_accumulator()
        group[key] = self._fn.add(value, accumulator)
