"""The in-memory (hash map) state backend, the default.

All keyed state of a subtask lives in Python dicts: per state name a table
``table[key_group][key] -> stored value`` (see :mod:`streamflow.state.keyed`). Its
snapshot is described in :mod:`streamflow.state.heap_snapshot`: the tables themselves,
for states with the default serializer, which the task pickles at once (or a child forked
at the barrier does, from ``fork_snapshots_from`` keys), so every key and value comes back
with exactly its type.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from streamflow.core.clock import Clock
from streamflow.errors import ConfigError, StateError
from streamflow.state.backend import KeyedStateBackend, check_key_group_range
from streamflow.state.descriptors import (
    StateDescriptor,
)
from streamflow.state.heap_snapshot import (
    SNAPSHOT_FORMAT,
    StoredState,
    read_snapshot,
    register_serializer,
    write_state,
)
from streamflow.state.keyed import (
    NO_KEY,
    AggregatingState,
    KeyContext,
    KeyedState,
    ListState,
    MapState,
    ReducingState,
    Table,
    ValueState,
    no_current_key,
)
from streamflow.state.keyed_ttl import TtlAggregatingState, TtlListState, TtlMapState, TtlReducingState, TtlValueState
from streamflow.state.serializers import stores_in_place
from streamflow.state.ttl import StateTtlConfig, TtlPolicy

__all__ = ["FORK_SNAPSHOTS_FROM", "SNAPSHOT_FORMAT", "HashMapStateBackend", "HeapKeyedStateBackend"]


_HANDLES: dict[str, tuple[type[KeyedState], type[KeyedState]]] = {
    "value": (ValueState, TtlValueState),
    "list": (ListState, TtlListState),
    "map": (MapState, TtlMapState),
    "reducing": (ReducingState, TtlReducingState),
    "aggregating": (AggregatingState, TtlAggregatingState),
}


class HeapKeyedStateBackend(KeyedStateBackend):
    """Keyed state of one operator subtask, held in dicts.

    ``get_state`` is typed by the overloads of
    :class:`~streamflow.state.backend.KeyedStateStore`: a ``ValueStateDescriptor[T]``
    gives a ``ValueState[T]``, and so on.

    Lifecycle: the runtime creates it, calls :meth:`restore` (when resuming), lets user
    functions call :meth:`get_state` in ``open``, then per record calls
    :meth:`set_current_key` (and :meth:`on_record`, if it wants per-record TTL cleanup)
    before user code runs; :meth:`snapshot` at each barrier; :meth:`close` at the end.
    Not thread-safe: everything runs on the task's event loop.
    """

    def __init__(
        self, *, operator_uid: str, subtask_index: int, max_parallelism: int, key_group_range: range, clock: Clock,
        fork_snapshots_from: int | None = None,
    ) -> None:  # fmt: skip
        if max_parallelism < 1:
            raise ConfigError(f"max_parallelism must be >= 1, got {max_parallelism!r}")
        check_key_group_range(operator_uid, subtask_index, max_parallelism, key_group_range)
        self.operator_uid = operator_uid
        self.subtask_index = subtask_index
        self.max_parallelism = max_parallelism
        self.key_group_range = key_group_range
        self._clock = clock
        self._ctx = KeyContext()
        self._states: dict[str, StoredState] = {}
        self._per_record: list[TtlPolicy] = []
        self.fork_snapshots_from = fork_snapshots_from

    # -- per record -----------------------------------------------------------------

    def set_current_key(self, key: Any, key_group: int) -> None:
        """Make ``key`` (in ``key_group``) the key every state handle reads and writes."""
        ctx = self._ctx
        ctx.key = key
        ctx.key_group = key_group

    def get_current_key(self) -> Any:
        """The current key; StateError if none was set."""
        key = self._ctx.key
        if key is NO_KEY:
            raise no_current_key(None)
        return key

    def on_record(self) -> None:
        """One incremental TTL cleanup step for states with ``incremental_per_record``.

        The runtime may call this once per record; it does nothing unless such a state
        is registered.
        """
        for policy in self._per_record:
            policy.incremental_step()

    def value_table(self, state_name: str) -> Table | None:
        """The live table (``table[key_group][key] -> value``) of a registered value state,
        for a hot loop that reads and writes it with plain dict operations instead of the
        handle; None when the handle does more than that (TTL, a default value) or some
        state needs :meth:`on_record` per record. Ask again per batch: it changes as
        states are registered."""
        state = self._states.get(state_name)
        if state is None or state.kind != "value" or state.policy is not None or state.encoded or self._per_record:
            return None
        descriptor = state.descriptor
        if descriptor is None or getattr(descriptor, "default", None) is not None:
            return None
        return state.table

    # -- registration ---------------------------------------------------------------

    def get_state(self, descriptor: Any) -> Any:
        """The handle for ``descriptor``; the same handle for an equal descriptor.

        Raises:
            StateError: ``descriptor`` is not a state descriptor, or its name is already
                registered (or restored) as another kind, or registered with another TTL.
        """
        if not isinstance(descriptor, StateDescriptor) or descriptor.kind not in _HANDLES:
            raise StateError(
                f"get_state needs a ValueStateDescriptor, ListStateDescriptor, MapStateDescriptor, "
                f"ReducingStateDescriptor or AggregatingStateDescriptor, got {descriptor!r}"
            )
        name = descriptor.name
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = StoredState(name, descriptor.kind, descriptor.ttl is not None)
        if state.kind != descriptor.kind:
            if state.descriptor is None:  # restored, not yet registered: the kind changed across a restore
                raise StateError(
                    f"operator {self.operator_uid!r}: the restored snapshot holds state {name!r} as a {state.kind} "
                    f"state, but the job now asks for it with a {type(descriptor).__name__} ({descriptor.kind} "
                    f"state); a state keeps its kind across restores: use a {state.kind} state descriptor for "
                    f"{name!r} again, or give the new state another name",
                    operator=self.operator_uid,
                    state=name,
                )
            raise StateError(
                f"state {name!r} of {self.operator_uid!r} is already a {state.kind} state, cannot use it as a "
                f"{descriptor.kind} state; give the new state another name",
                operator=self.operator_uid,
                state=name,
            )
        register_serializer(state, descriptor.effective_serializer, operator=self.operator_uid)
        if state.descriptor is None:
            self._adopt(state, descriptor.ttl)
        elif state.descriptor.ttl != descriptor.ttl:
            raise StateError(
                f"state {name!r} of {self.operator_uid!r} is registered with ttl={state.descriptor.ttl!r}, "
                f"not ttl={descriptor.ttl!r}; use one TTL configuration per state name",
                state=name,
            )
        elif state.handle is not None and state.descriptor == descriptor:
            return state.handle
        plain, with_ttl = _HANDLES[descriptor.kind]
        if state.policy is None:
            handle = plain(descriptor, self._ctx, state.table)
        else:
            handle = with_ttl(descriptor, self._ctx, state.table, state.policy)  # type: ignore[call-arg]
        state.descriptor = descriptor
        state.handle = handle
        return handle

    def _adopt(self, state: StoredState, ttl: StateTtlConfig | None) -> None:
        """First registration of ``state`` (new or restored): set up TTL, convert stored data.

        Restored data written with TTL is unwrapped if the state is now registered without
        it; data written without TTL gets the current time as its timestamp.
        """
        if state.has_ttl and ttl is None:
            _convert(state.table, state.shape.strip)
        elif not state.has_ttl and ttl is not None:
            now = self._clock.now()
            _convert(state.table, partial(state.shape.stamp, now=now))
        state.has_ttl = ttl is not None
        if ttl is not None:
            state.policy = TtlPolicy(ttl, self._clock, state.table, state.shape.purge)
            if ttl.incremental_per_record:
                self._per_record.append(state.policy)

    def live_table(self, descriptor: StateDescriptor) -> Table | None:
        """The live table of ``descriptor``'s state, ``table[key_group][key] -> value``, for
        an operator that runs its own loop over a whole batch (the window operator's fast
        path); None when the state stores anything but the plain values (a TTL or a
        serializer other than the default), where only the handles know the format.

        Writes go straight into the state: keep its shape (a map state's value is the
        dict of its entries; delete a key whose map became empty) and write nothing for
        key groups this subtask does not own.
        """
        handle = self.get_state(descriptor)
        state = self._states[descriptor.name]
        if state.policy is not None or state.encoded or state.serializer is None:
            return None
        if not stores_in_place(state.serializer):
            return None
        assert handle is state.handle  # registered just now
        return state.table

    def keys(self, state_name: str) -> Iterator[tuple[Any, int]]:
        """``(key, key_group)`` of every key with a value in ``state_name``.

        Keys whose values all expired are skipped unless the state's visibility returns
        expired values. Safe to mutate state while iterating: each key group's keys are
        copied before they are yielded.
        """
        state = self._states.get(state_name)
        if state is None:
            raise StateError(
                f"no state {state_name!r} in {self.operator_uid!r}; known states: {sorted(self._states)!r}",
                state=state_name,
            )
        return self._keys(state)

    def _keys(self, state: StoredState) -> Iterator[tuple[Any, int]]:
        policy = state.policy
        hide_after = policy.ttl if policy is not None and not policy.return_expired else None
        now = self._clock.now()
        live = state.shape.live
        for key_group, group in list(state.table.items()):
            for key in list(group):
                if hide_after is not None:
                    stored = group.get(key)
                    if stored is None or live(stored, now, hide_after) is None:
                        continue
                yield key, key_group

    # -- snapshot and restore -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every key group this subtask holds (format 2, see :mod:`~streamflow.state.heap_snapshot`).

        The result shares the live dicts of states with the default serializer: encode
        it before any state changes (the runtime pickles it at once, in the same
        synchronous step, or calls it in a child forked at that step: see
        :meth:`snapshot_in_child`; that pickle is the copy). States with
        ``cleanup_full_snapshot`` leave expired values out (live state keeps them).

        Raises:
            StateSerializationError: a state's serializer refused one of its values.
        """
        now = self._clock.now()
        states = {
            name: write_state(state, now, operator=self.operator_uid, subtask=self.subtask_index)
            for name, state in self._states.items()
        }
        return {"format": SNAPSHOT_FORMAT, "states": states}

    def key_count(self) -> int:
        """Keys with a stored value, over all states (expired ones included)."""
        return sum(len(group) for state in self._states.values() for group in state.table.values())

    def snapshot_in_child(self) -> bool:
        """Whether a checkpoint's snapshot is better taken by a forked child: the backend
        holds at least ``fork_snapshots_from`` keys (see :class:`HashMapStateBackend`)."""
        threshold = self.fork_snapshots_from
        return threshold is not None and self.key_count() >= threshold

    def restore(self, snapshots: Iterable[dict[str, Any]]) -> None:
        """Load this subtask's key groups from snapshots of any number of old subtasks.

        An empty dict stands for an old subtask without keyed state.
        Key groups outside ``key_group_range`` are skipped, which is all rescaling needs:
        each key group was owned by exactly one old subtask. States are restored whether
        or not ``get_state`` registered them yet; a later ``get_state`` sees the data and
        checks that its serializer is the one the data was saved with. The key groups
        kept become live state as they are: pass freshly decoded snapshots.

        Raises:
            StateError: a snapshot has an unknown format, a state's kind differs from
                the kind registered under the same name, or its serializer from the one
                registered.
        """
        now = self._clock.now()
        for snapshot in snapshots:
            if snapshot == {}:
                continue  # an old subtask that held no keyed state
            read_snapshot(
                snapshot,
                target=self._restore_target,
                key_groups=self.key_group_range,
                max_parallelism=self.max_parallelism,
                now=now,
                operator=self.operator_uid,
            )

    def _restore_target(self, name: str, kind: Any, has_ttl: bool) -> StoredState:
        if kind not in _HANDLES:
            raise StateError(f"snapshot state {name!r} has unknown kind {kind!r}", state=name)
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = StoredState(name, kind, has_ttl)
        elif state.kind != kind:
            raise StateError(
                f"snapshot holds state {name!r} as a {kind} state, but {self.operator_uid!r} registered it as a "
                f"{state.kind} state; keep the kind of a state, or rename the new one",
                state=name,
            )
        return state

    def close(self) -> None:
        """Drop all state; the backend must not be used afterwards."""
        self._states.clear()
        self._per_record.clear()

    def __repr__(self) -> str:
        return (
            f"HeapKeyedStateBackend({self.operator_uid!r}[{self.subtask_index}], "
            f"key_groups={self.key_group_range!r}, states={sorted(self._states)!r})"
        )


def _fork_available() -> bool:
    """Linux with pidfds and memfds (kernel 5.3 or later): fork is cheap there, and safe
    for a child that only pickles and writes to a file."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
        os.close(os.memfd_create("streamflow-probe"))
    except (AttributeError, OSError):
        return False
    return True


FORK_AVAILABLE = _fork_available()
"""Whether snapshots may be taken by a forked child here."""

FORK_SNAPSHOTS_FROM = 50_000
"""The default size (keys, over all states of a subtask) from which a forked child takes
the heap backend's snapshots: pickling in the task costs about 1 us per key, a fork about
12 ms per 400 MB of process plus a page copy per page written while the child runs."""


class HashMapStateBackend:
    """The default :class:`~streamflow.state.backend.StateBackend`: keyed state in memory.

    Args:
        fork_snapshots_from: from this many keys in a subtask's keyed state, its
            snapshots are pickled by a forked child process (Linux only), so a barrier
            costs the task a fork instead of a pickle of every key: the child sees the
            state exactly as it was at the fork. None: always pickle in the task.
    """

    __slots__ = ("fork_snapshots_from",)

    def __init__(self, *, fork_snapshots_from: int | None = FORK_SNAPSHOTS_FROM) -> None:
        if fork_snapshots_from is not None and (
            not isinstance(fork_snapshots_from, int) or isinstance(fork_snapshots_from, bool) or fork_snapshots_from < 0
        ):
            raise ConfigError(
                f"fork_snapshots_from must be a number of keys >= 0 or None (never fork), got {fork_snapshots_from!r}"
            )
        self.fork_snapshots_from = fork_snapshots_from

    def create_keyed_backend(
        self, *, operator_uid: str, subtask_index: int, max_parallelism: int, key_group_range: range, clock: Clock
    ) -> HeapKeyedStateBackend:
        """A fresh, empty backend for one keyed subtask."""
        return HeapKeyedStateBackend(
            operator_uid=operator_uid,
            subtask_index=subtask_index,
            max_parallelism=max_parallelism,
            key_group_range=key_group_range,
            clock=clock,
            fork_snapshots_from=self.fork_snapshots_from if FORK_AVAILABLE else None,
        )

    def __repr__(self) -> str:
        return f"HashMapStateBackend(fork_snapshots_from={self.fork_snapshots_from!r})"


def _convert(table: Table, fn: Callable[[Any], Any]) -> None:
    for group in table.values():
        for key, stored in group.items():
            group[key] = fn(stored)

