"""Operator state: lists and broadcast maps scoped to an operator subtask, not to a key.

A source keeps its split positions here, a sink its pending transactions, a broadcast
operator its broadcast state. On restore the runtime hands every new subtask the
snapshots of all old subtasks, in old-subtask order, and :func:`restore_operator_state`
decides what each subtask gets:

* split mode (``get_list_state``): with unchanged parallelism every subtask gets exactly
  its own old items; after rescaling all items are concatenated and dealt round robin
  (item ``i`` to subtask ``i % parallelism``), see :func:`redistribute_split`;
* union mode (``get_union_list_state``): every subtask gets all items of all old subtasks
  and keeps what it needs;
* broadcast mode (``get_broadcast_state``): a map every subtask holds an identical copy
  of; each new subtask gets the copy of one old subtask (copied on scale-up, dropped on
  scale-down), see :func:`~streamflow.state.broadcast.redistribute_broadcast`.

Snapshot format 2 (broadcast items are ``(map_key, value)`` pairs)::

    {"format": 2, "states": {name: {"mode": "split" | "union" | "broadcast",
                                    "serializer": "<serializer name>", "items": [...]}}}

The task pickles the snapshot, so items (and map keys) come back with exactly their
types. A state whose descriptor names a serializer other than the default stores each
item (each map value) as that serializer's bytes, and a restore checks that the
descriptor registering it names the same serializer. Format 1 (before exact types; no
serializer, broadcast keys that were tuples came back as lists) is still read.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from streamflow.errors import ConfigError, StateError
from streamflow.state.broadcast import BroadcastState, redistribute_broadcast
from streamflow.state.descriptors import ListStateDescriptor, MapStateDescriptor, StateDescriptor
from streamflow.state.serializers import StateSerializer, serializer_failure, serializer_mismatch, stores_in_place
from streamflow.state.shapes import tuplify

__all__ = [
    "OperatorListState",
    "OperatorStateMode",
    "OperatorStateStore",
    "redistribute_split",
    "restore_operator_state",
]

SNAPSHOT_FORMAT = 2
LEGACY_FORMAT = 1
_IN_PLACE = "pickle"

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class OperatorStateMode(enum.Enum):
    """How a list of operator state is redistributed when the job is restored."""

    SPLIT = "split"
    """Every subtask keeps its own items; on rescale, all items are dealt round robin."""
    UNION = "union"
    """Every subtask gets the items of all old subtasks."""
    BROADCAST = "broadcast"
    """A map identical on every subtask; each new subtask gets one old subtask's copy."""


class OperatorListState(Generic[T]):
    """A list owned by one operator subtask; same methods as keyed ``ListState``."""

    __slots__ = ("name", "mode", "_items")

    def __init__(self, name: str, mode: OperatorStateMode, items: Iterable[T] = ()) -> None:
        self.name = name
        self.mode = mode
        self._items: list[T] = list(items)

    def get(self) -> list[T]:
        """A copy of the list."""
        return list(self._items)

    def add(self, value: T) -> None:
        """Append one value."""
        self._items.append(value)

    def add_all(self, values: Iterable[T]) -> None:
        """Append every value of ``values``."""
        self._items.extend(values)

    def update(self, values: Iterable[T]) -> None:
        """Replace the list with ``values``."""
        self._items = list(values)

    def clear(self) -> None:
        """Empty the list."""
        self._items = []

    def __repr__(self) -> str:
        return f"OperatorListState({self.name!r}, {self.mode.value})"


class _Restored:
    """A state restored and not registered yet: its share of items as saved."""

    __slots__ = ("mode", "items", "serializer")

    def __init__(self, mode: OperatorStateMode, items: list[Any], serializer: str | None) -> None:
        self.mode = mode
        self.items = items
        self.serializer = serializer  # None: format 1, values already decoded

    @property
    def encoded(self) -> bool:
        """Whether the items are serializer bytes rather than values."""
        return self.serializer is not None and self.serializer != _IN_PLACE


class OperatorStateStore:
    """The operator state of one subtask, handed to ``CheckpointedFunction`` hooks.

    A fresh store has ``is_restored`` False; :meth:`restore` (or
    :func:`restore_operator_state`) builds one with ``is_restored`` True whose lists
    already hold this subtask's share. Restored lists that no function registers again
    are kept and snapshotted unchanged, so a run that does not touch them loses nothing.
    """

    def __init__(self) -> None:
        self.is_restored = False
        self._states: dict[str, OperatorListState[Any]] = {}
        self._broadcast: dict[str, BroadcastState[Any, Any]] = {}
        self._serializers: dict[str, StateSerializer] = {}
        self._restored: dict[str, _Restored] = {}

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> OperatorListState[T]:
        """A split-mode list: on rescale its items are dealt evenly over the subtasks."""
        return self._register(descriptor, OperatorStateMode.SPLIT)

    def get_union_list_state(self, descriptor: ListStateDescriptor[T]) -> OperatorListState[T]:
        """A union-mode list: on restore every subtask gets the items of all old subtasks."""
        return self._register(descriptor, OperatorStateMode.UNION)

    def get_broadcast_state(self, descriptor: MapStateDescriptor[K, V]) -> BroadcastState[K, V]:
        """A broadcast map: identical on every subtask; on restore each subtask gets one copy.

        The runtime of a broadcast operator registers the states declared in
        ``DataStream.broadcast(...)`` and hands user code read-write or read-only views;
        any CheckpointedFunction may use one too, as long as it updates every subtask's
        copy the same way.
        """
        if not isinstance(descriptor, MapStateDescriptor):
            raise StateError(f"broadcast state is a map; pass a MapStateDescriptor, got {descriptor!r}")
        name = descriptor.name
        _refuse_ttl(descriptor.ttl, name)
        state = self._broadcast.get(name)
        if state is not None:
            self._check_serializer(descriptor)
            return state
        self._check_free(name, OperatorStateMode.BROADCAST)
        items = self._adopt(descriptor, broadcast=True)
        state = BroadcastState.from_items(name, items)
        self._broadcast[name] = state
        return state

    def _check_free(self, name: str, mode: OperatorStateMode) -> None:
        """Refuse ``name`` in ``mode`` if it is registered or restored in another mode."""
        if name in self._broadcast:
            other = OperatorStateMode.BROADCAST
        elif name in self._states:
            other = self._states[name].mode
        elif name in self._restored:
            other = self._restored[name].mode
        else:
            return
        if other is not mode:
            raise StateError(
                f"operator state {name!r} is a {_describe(other)}, cannot use it as a {_describe(mode)}; "
                "rename the state to change its mode",
                state=name,
            )

    def _register(self, descriptor: ListStateDescriptor[T], mode: OperatorStateMode) -> OperatorListState[T]:
        if not isinstance(descriptor, ListStateDescriptor):
            raise StateError(
                f"operator state is list state (or broadcast state, from get_broadcast_state); pass a "
                f"ListStateDescriptor, got {descriptor!r}"
            )
        name = descriptor.name
        _refuse_ttl(descriptor.ttl, name)
        restored = self._restored.get(name)
        restored_mode = mode if restored is None else restored.mode
        if name in self._broadcast or restored_mode is OperatorStateMode.BROADCAST:
            self._check_free(name, mode)
        state = self._states.get(name)
        if state is None:
            items = self._adopt(descriptor, broadcast=False)
            state = OperatorListState(name, restored_mode, items)
            self._states[name] = state
        else:
            self._check_serializer(descriptor)
        if state.mode is not mode:
            raise StateError(
                f"operator state {name!r} is a {state.mode.value} list state, cannot use it as a {mode.value} "
                f"list state; rename the state to change its mode",
                state=name,
            )
        return state

    def _adopt(self, descriptor: StateDescriptor, *, broadcast: bool) -> list[Any]:
        """The restored items of ``descriptor``'s state (none if not restored), read with
        its serializer, which must be the one they were saved with."""
        name = descriptor.name
        serializer = descriptor.effective_serializer
        restored = self._restored.pop(name, None)
        self._serializers[name] = serializer
        if restored is None:
            return []
        if restored.serializer is not None and restored.serializer != serializer.name:
            self._restored[name] = restored  # still there for a corrected registration
            del self._serializers[name]
            raise serializer_mismatch(f"operator state {name!r}", name, restored.serializer, serializer.name)
        if not restored.encoded:
            return restored.items
        loads = serializer.loads
        try:
            if broadcast:
                return [(key, loads(data)) for key, data in restored.items]
            return [loads(data) for data in restored.items]
        except Exception as exc:  # noqa: BLE001 - a user serializer may raise anything
            self._restored[name] = restored
            del self._serializers[name]
            raise StateError(
                f"operator state {name!r} does not load with serializer {serializer.name!r} "
                f"({type(exc).__name__}: {exc}); the snapshot is damaged or the serializer cannot read what it wrote",
                state=name,
            ) from exc

    def _check_serializer(self, descriptor: StateDescriptor) -> None:
        registered = self._serializers[descriptor.name]
        if registered.name != descriptor.effective_serializer.name:
            raise StateError(
                f"operator state {descriptor.name!r} is registered with serializer {registered.name!r}, not "
                f"{descriptor.effective_serializer.name!r}; use one serializer per state name",
                state=descriptor.name,
            )

    def snapshot(self) -> dict[str, Any]:
        """Every state's items (format in the module docstring); lists are copied.

        Raises:
            StateSerializationError: a state's serializer refused an item; it names the
                state but not the operator (the caller adds it).
        """
        states: dict[str, Any] = {
            name: {"mode": old.mode.value, "serializer": old.serializer or _IN_PLACE, "items": list(old.items)}
            for name, old in self._restored.items()
        }
        for name, state in self._states.items():
            serializer = self._serializers[name]
            items = state.get() if stores_in_place(serializer) else _dump(name, state.get(), serializer, broadcast=False)
            states[name] = {"mode": state.mode.value, "serializer": serializer.name, "items": items}
        for name, broadcast in self._broadcast.items():
            serializer = self._serializers[name]
            pairs = broadcast.snapshot_items()
            if not stores_in_place(serializer):
                pairs = _dump(name, pairs, serializer, broadcast=True)
            states[name] = {"mode": OperatorStateMode.BROADCAST.value, "serializer": serializer.name, "items": pairs}
        return {"format": SNAPSHOT_FORMAT, "states": states}

    @classmethod
    def restore(
        cls, snapshots_by_old_subtask: Sequence[dict[str, Any]], subtask_index: int, parallelism: int
    ) -> OperatorStateStore:
        """The store of subtask ``subtask_index`` of ``parallelism``, from all old snapshots.

        Args:
            snapshots_by_old_subtask: ``snapshot()`` of every old subtask, in subtask order
                (format 1 or 2); an old subtask without operator state may give ``{}``.
            subtask_index: the new subtask being restored.
            parallelism: the new parallelism.

        Raises:
            ConfigError: ``subtask_index`` is not within ``range(parallelism)``.
            StateError: a snapshot has an unknown format, or old subtasks disagree on a
                list's mode or serializer.
        """
        if parallelism < 1 or not 0 <= subtask_index < parallelism:
            raise ConfigError(
                f"cannot restore operator state for subtask {subtask_index!r} of parallelism {parallelism!r}; "
                "subtask_index must be in range(parallelism)"
            )
        kinds: dict[str, tuple[OperatorStateMode, str | None]] = {}
        for snapshot in snapshots_by_old_subtask:
            if snapshot == {}:
                continue  # an old subtask that had no operator state
            version = snapshot.get("format") if isinstance(snapshot, dict) else None
            if version not in (SNAPSHOT_FORMAT, LEGACY_FORMAT):
                raise StateError(
                    f"operator state snapshot has format {version!r}; this version of streamflow reads formats "
                    f"{LEGACY_FORMAT} and {SNAPSHOT_FORMAT}"
                )
            for name, data in snapshot["states"].items():
                try:
                    mode = OperatorStateMode(data["mode"])
                except ValueError:
                    raise StateError(
                        f"operator state {name!r} has unknown mode {data['mode']!r}; expected 'split', 'union' "
                        "or 'broadcast'",
                        state=name,
                    ) from None
                kind = (mode, data.get("serializer"))
                seen = kinds.setdefault(name, kind)
                if seen != kind:
                    raise StateError(
                        f"old subtasks disagree on operator state {name!r}: mode {seen[0].value} with serializer "
                        f"{seen[1]!r} and mode {mode.value} with serializer {kind[1]!r}; the snapshots are "
                        "inconsistent",
                        state=name,
                    )
        store = cls()
        store.is_restored = True
        for name, (mode, serializer) in kinds.items():
            lists = [
                list(snapshot.get("states", {}).get(name, {}).get("items", ())) for snapshot in snapshots_by_old_subtask
            ]
            if mode is OperatorStateMode.UNION:
                items = [item for old in lists for item in old]
            elif mode is OperatorStateMode.BROADCAST:
                copies = [
                    snapshot["states"][name]["items"] if name in snapshot.get("states", {}) else None
                    for snapshot in snapshots_by_old_subtask
                ]
                items = redistribute_broadcast(copies, subtask_index)
                if serializer is None:  # format 1
                    items = _legacy_pairs(name, items)
            else:
                items = redistribute_split(lists, parallelism)[subtask_index]
            store._restored[name] = _Restored(mode, items, serializer)
        return store


def _dump(name: str, items: list[Any], serializer: StateSerializer, *, broadcast: bool) -> list[Any]:
    """Each item (each map value of broadcast ``(key, value)`` pairs) as serializer bytes."""
    dumps = serializer.dumps
    out: list[Any] = []
    for index, item in enumerate(items):
        value = item[1] if broadcast else item
        try:
            data = dumps(value)
        except Exception as exc:  # noqa: BLE001 - a user serializer may raise anything
            where = f"broadcast state {name!r} (map key {item[0]!r})" if broadcast else (
                f"operator state {name!r} (element {index})"
            )
            raise serializer_failure(exc, serializer=serializer, value=value, where=where, state=name) from exc
        out.append((item[0], data) if broadcast else data)
    return out


def _legacy_pairs(name: str, items: list[Any]) -> list[tuple[Any, Any]]:
    """Format-1 broadcast items: ``[key, value]`` lists from JSON, where a key that is a
    list can only have been a tuple (a list is never a dict key)."""
    return BroadcastState.from_items(name, items, key=tuplify).snapshot_items()


def _describe(mode: OperatorStateMode) -> str:
    return "broadcast state" if mode is OperatorStateMode.BROADCAST else f"{mode.value} list state"


def _refuse_ttl(ttl: object, name: str) -> None:
    if ttl is not None:
        raise StateError(
            f"operator state {name!r} cannot have a ttl (TTL applies to keyed state only); drop ttl=",
            state=name,
        )


def restore_operator_state(
    snapshots_by_old_subtask: Sequence[dict[str, Any]], subtask_index: int, parallelism: int
) -> OperatorStateStore:
    """Same as :meth:`OperatorStateStore.restore`."""
    return OperatorStateStore.restore(snapshots_by_old_subtask, subtask_index, parallelism)


def redistribute_split(lists: Sequence[Sequence[T]], parallelism: int) -> list[list[T]]:
    """Deal the old subtasks' lists over ``parallelism`` new subtasks (split mode).

    With unchanged parallelism (``len(lists) == parallelism``) subtask ``i`` keeps
    ``lists[i]``, so a restart without rescaling moves nothing. Otherwise the lists are
    concatenated in old-subtask order and item ``i`` goes to subtask ``i % parallelism``:
    an even split, and deterministic, so every new subtask computes the same assignment
    independently. Returns new lists; the input is not modified.

    Raises:
        ConfigError: ``parallelism`` is below 1.
    """
    if parallelism < 1:
        raise ConfigError(f"redistribute_split needs parallelism >= 1, got {parallelism!r}")
    if len(lists) == parallelism:
        return [list(old) for old in lists]
    everything = [item for old in lists for item in old]
    return [everything[i::parallelism] for i in range(parallelism)]
