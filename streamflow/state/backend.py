"""The contract between the runtime and a state backend.

The runtime owns one :class:`KeyedStateBackend` per keyed operator subtask. Before it
hands a record to user code it calls ``set_current_key(key, key_group)``; state handles
returned by ``get_state`` read and write under the current key at call time, so a user
function fetches its handles once in ``open`` and uses them for every record.

Snapshots are dicts the runtime pickles at once, in the same synchronous step as
``snapshot`` (so a snapshot may share live containers: that pickle is the copy, and keys
and values keep exactly their types), or that a child forked at that step takes and
pickles (:class:`ChildSnapshotBackend`), which sees the memory of that moment. A state
whose descriptor names a serializer other than the default stores each value as that
serializer's bytes, and every snapshot records each state's serializer name; ``restore``
(or the ``get_state`` after it) refuses a descriptor whose serializer has another name.
``restore`` takes ownership of the key groups it keeps: hand it freshly decoded snapshots.

A backend that keeps its state in files of its own (RocksDB) may also take *native*
snapshots (:class:`NativeSnapshotBackend`): a consistent copy of its files in a local
directory, taken at the barrier, whose immutable files later snapshots share; the
checkpoint layer puts them into shared storage (incremental checkpoints). Savepoints are
always canonical (:meth:`KeyedStateBackend.snapshot`), so any backend restores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, TypeVar, overload, runtime_checkable

from streamflow.core.clock import Clock
from streamflow.errors import ConfigError
from streamflow.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamflow.state.keyed import AggregatingState, KeyedState, ListState, MapState, ReducingState, ValueState

__all__ = [
    "ChildSnapshotBackend", "KeyedStateBackend", "KeyedStateStore", "NativeSnapshot", "NativeSnapshotBackend",
    "RestoredNative", "StateBackend", "ValueTableBackend", "check_key_group_range",
]

def check_key_group_range(operator_uid: str, subtask_index: int, max_parallelism: int, key_group_range: range) -> None:
    """Refuse a key-group range a keyed backend cannot own: every backend stores and
    snapshots whole key groups, so its range must be contiguous within max_parallelism."""
    if key_group_range.step != 1 or key_group_range.start < 0 or key_group_range.stop > max_parallelism:
        raise ConfigError(
            f"key_group_range {key_group_range!r} of {operator_uid!r}[{subtask_index}] must be a contiguous "
            f"range within 0..{max_parallelism}; compute it with partitioning.keygroups.key_group_range"
        )


T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


class KeyedStateStore(Protocol):
    """Where keyed state handles come from (Flink's KeyedStateStore): the handle's type
    follows the descriptor's, so ``get_state(ValueStateDescriptor[int](...))`` is a
    ``ValueState[int]`` to a type checker.

    Registering the same name twice with a different kind, TTL or serializer, or a
    restored state with another serializer than it was saved with, raises StateError.
    """

    @overload
    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]: ...
    @overload
    def get_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]: ...
    @overload
    def get_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]: ...
    @overload
    def get_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]: ...
    @overload
    def get_state(self, descriptor: AggregatingStateDescriptor[IN, ACC, OUT]) -> AggregatingState[IN, ACC, OUT]: ...
    @overload
    def get_state(self, descriptor: StateDescriptor) -> KeyedState: ...


class KeyedStateBackend(KeyedStateStore, Protocol):
    """Keyed state of one operator subtask, for the key groups in ``key_group_range``."""

    max_parallelism: int
    key_group_range: range

    def set_current_key(self, key: Any, key_group: int) -> None: ...

    def get_current_key(self) -> Any: ...

    def on_record(self) -> None:
        """Called once per keyed record (and timer) processed: runs incremental TTL
        cleanup for states configured with ``incremental_per_record``; else a no-op."""

    def keys(self, state_name: str) -> Iterator[tuple[Any, int]]:
        """(key, key_group) of every key with a value in ``state_name``."""

    def snapshot(self) -> dict[str, Any]:
        """All key groups (full-snapshot TTL cleanup applied), to be pickled at once.

        Raises StateSerializationError when a state's serializer refuses a value."""

    def restore(self, snapshots: Iterable[dict[str, Any]]) -> None:
        """Load the key groups of ``key_group_range`` from snapshots of any number of old
        subtasks (rescaling hands in all of them); ignore other key groups."""

    def close(self) -> None: ...


@runtime_checkable
class ValueTableBackend(KeyedStateBackend, Protocol):
    """A keyed backend whose value states live in dicts it may hand out (the heap's), so
    the runtime's reduce loop costs a couple of dict operations per record."""

    def value_table(self, state_name: str) -> dict[int, dict[Any, Any]] | None:
        """The live ``table[key_group][key] -> value`` of a registered value state, or
        None when its handle must be used (TTL, a default value, per-record cleanup).
        Writes into it are writes of the state; valid until the next call."""


@runtime_checkable
class ChildSnapshotBackend(KeyedStateBackend, Protocol):
    """A backend whose :meth:`~KeyedStateBackend.snapshot` a forked child may take (the
    heap backend at a large size): the child sees the state as it was at the barrier."""

    operator_uid: str
    subtask_index: int

    def snapshot_in_child(self) -> bool:
        """Whether the next snapshot should be taken by a forked child."""
        ...


class StateBackend(Protocol):
    """Chosen on the environment; makes the keyed backend of every keyed subtask."""

    def create_keyed_backend(
        self,
        *,
        operator_uid: str,
        subtask_index: int,
        max_parallelism: int,
        key_group_range: range,
        clock: Clock,
    ) -> KeyedStateBackend: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class NativeSnapshot:
    """A keyed backend's own snapshot: a consistent copy of its files in ``directory``
    (hard links, taken at the barrier), and what a restore needs to read them.

    ``meta`` is plain data that goes into the checkpoint as it is; it always holds
    ``"format"`` (the backend's native format), ``"max_parallelism"`` and
    ``"key_groups"`` (``[start, stop]``). ``files`` maps each file's name to its size;
    ``immutable`` names the files that never change once written (RocksDB's SST files),
    which later snapshots may share instead of storing them again.
    """

    directory: Path
    files: Mapping[str, int]
    immutable: frozenset[str]
    meta: Mapping[str, Any]

    @property
    def size(self) -> int:
        return sum(self.files.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoredNative:
    """One old subtask's native snapshot, its files put back into a local ``directory``
    that the restoring backend may take over (move, open, delete)."""

    meta: Mapping[str, Any]
    directory: Path


@runtime_checkable
class NativeSnapshotBackend(KeyedStateBackend, Protocol):
    """A keyed backend that also snapshots and restores its own files (see the module
    docstring). Called by the task's snapshot step, on the task's event loop, except
    where a method says it runs in a thread."""

    incremental: bool
    """Whether checkpoints (not savepoints) take native snapshots; else canonical ones."""

    @property
    def working_directory(self) -> Path:
        """A local directory of this subtask's own, for native snapshots and restores."""

    def snapshot_native(self, directory: Path) -> NativeSnapshot:
        """Copy the state as it is now into ``directory`` (which must not exist). Other
        methods must not be called while it runs (it may run in a thread)."""

    def canonical_from_native(self, snapshot: NativeSnapshot) -> dict[str, Any]:
        """The canonical snapshot (as :meth:`~KeyedStateBackend.snapshot` returns) of a
        native one of this backend. Reads only the snapshot's files: runs in a thread
        while the backend goes on."""

    async def restore_native(self, parts: Sequence[RestoredNative]) -> None:
        """Load this subtask's key groups from native snapshots of old subtasks (those
        whose key groups overlap this subtask's), before any ``get_state`` or canonical
        ``restore``."""
