"""State handles bound to one key and namespace: trigger state and per-window state.

A trigger asks ``ctx.get_partitioned_state(descriptor)`` and a ProcessWindowFunction
``ctx.window_state(descriptor)`` / ``ctx.global_state(descriptor)``; each gets one of
these handles over the :class:`~streamflow.windowing.store.WindowStateStore`, bound to
the key and window of the call. Descriptors are the usual ones of
:mod:`streamflow.state.descriptors` (value, list, reducing, aggregating); the handles
offer the same methods as the keyed state handles.

:func:`merge_scoped` folds the state of merged session windows into the merge result
(Flink's ``mergePartitionedState``): lists are concatenated, reducing values reduced,
accumulators merged with the aggregate function's ``merge``; a value state cannot be
merged.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from streamflow.errors import StateError
from streamflow.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamflow.windowing.store import ABSENT, WindowStateStore

__all__ = [
    "ScopedAggregatingState",
    "ScopedListState",
    "ScopedReducingState",
    "ScopedValueState",
    "merge_scoped",
    "scoped_state",
]


class _Scoped:
    __slots__ = ("_store", "_key", "_namespace", "_name", "descriptor")

    def __init__(
        self, descriptor: Any, store: WindowStateStore, key: Any, namespace: Hashable | None, name: str
    ) -> None:
        self.descriptor = descriptor
        self._store = store
        self._key = key
        self._namespace = namespace
        self._name = name

    def _get(self) -> Any:
        return self._store.get(self._key, self._namespace, self._name)

    def _put(self, value: Any) -> None:
        self._store.put(self._key, self._namespace, self._name, value)

    def clear(self) -> None:
        self._store.remove(self._key, self._namespace, self._name)


class ScopedValueState(_Scoped):
    __slots__ = ()

    def value(self) -> Any:
        stored = self._get()
        return self.descriptor.default if stored is ABSENT else stored

    def update(self, value: Any) -> None:
        self._put(value)


class ScopedListState(_Scoped):
    __slots__ = ()

    def get(self) -> list[Any]:
        stored = self._get()
        return [] if stored is ABSENT else list(stored)

    def add(self, value: Any) -> None:
        stored = self._get()
        self._put([value] if stored is ABSENT else [*stored, value])

    def add_all(self, values: Iterable[Any]) -> None:
        new = list(values)
        if new:
            stored = self._get()
            self._put(new if stored is ABSENT else [*stored, *new])

    def update(self, values: Iterable[Any]) -> None:
        new = list(values)
        if new:
            self._put(new)
        else:
            self.clear()


class ScopedReducingState(_Scoped):
    __slots__ = ()

    def get(self) -> Any:
        stored = self._get()
        return None if stored is ABSENT else stored

    def add(self, value: Any) -> None:
        stored = self._get()
        self._put(value if stored is ABSENT else self.descriptor.reduce_fn(stored, value))


class ScopedAggregatingState(_Scoped):
    __slots__ = ()

    def get(self) -> Any:
        stored = self._get()
        return None if stored is ABSENT else self.descriptor.aggregate_fn.get_result(stored)

    def add(self, value: Any) -> None:
        fn = self.descriptor.aggregate_fn
        stored = self._get()
        self._put(fn.add(value, fn.create_accumulator() if stored is ABSENT else stored))


_HANDLES: dict[type[StateDescriptor], type[_Scoped]] = {
    ValueStateDescriptor: ScopedValueState,
    ListStateDescriptor: ScopedListState,
    ReducingStateDescriptor: ScopedReducingState,
    AggregatingStateDescriptor: ScopedAggregatingState,
}


def scoped_state(
    descriptor: StateDescriptor, store: WindowStateStore, key: Any, namespace: Hashable | None, prefix: str
) -> Any:
    """The handle for ``descriptor``, stored under ``prefix + descriptor.name``."""
    handle = _HANDLES.get(type(descriptor))
    if handle is None:
        raise StateError(
            f"window state {getattr(descriptor, 'name', descriptor)!r}: {type(descriptor).__name__} is not "
            "supported here; use a ValueStateDescriptor, ListStateDescriptor, ReducingStateDescriptor or "
            "AggregatingStateDescriptor",
            state=getattr(descriptor, "name", None),
        )
    return handle(descriptor, store, key, namespace, prefix + descriptor.name)


def merge_scoped(
    descriptor: StateDescriptor,
    store: WindowStateStore,
    key: Any,
    target: Hashable,
    sources: Iterable[Hashable],
    prefix: str,
) -> None:
    """Fold the state ``descriptor`` of the ``sources`` namespaces into ``target`` and
    remove it from the sources."""
    name = prefix + descriptor.name
    values = []
    for source in sources:
        stored = store.get(key, source, name)
        if stored is not ABSENT:
            values.append(stored)
            store.remove(key, source, name)
    if not values:
        return
    current = store.get(key, target, name)
    if current is not ABSENT:
        values.insert(0, current)
    if isinstance(descriptor, ListStateDescriptor):
        merged: Any = [item for stored in values for item in stored]
    elif isinstance(descriptor, ReducingStateDescriptor):
        merged = values[0]
        for value in values[1:]:
            merged = descriptor.reduce_fn(merged, value)
    elif isinstance(descriptor, AggregatingStateDescriptor):
        merge = getattr(descriptor.aggregate_fn, "merge", None)
        if merge is None:
            raise StateError(
                f"state {descriptor.name!r} of merging windows needs an aggregate function with "
                "merge(a, b) to combine the accumulators of merged windows",
                state=descriptor.name,
            )
        merged = values[0]
        for value in values[1:]:
            merged = merge(merged, value)
    else:
        raise StateError(
            f"state {descriptor.name!r} ({type(descriptor).__name__}) cannot be merged when windows merge; "
            "keep it in a ReducingStateDescriptor, ListStateDescriptor or AggregatingStateDescriptor",
            state=descriptor.name,
        )
    store.put(key, target, name, merged)
