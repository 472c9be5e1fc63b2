"""The embedded RocksDB state backend: keyed state larger than memory.

:class:`~streamflow.state.rocksdb.state_backend.EmbeddedRocksDBStateBackend` is chosen
per job (``env.set_state_backend``) and makes a :class:`RocksDBKeyedStateBackend` per
keyed subtask, with the same contract as
the heap backend (:class:`~streamflow.state.backend.KeyedStateBackend`): the same
handles (they subclass the heap ones), the same errors, the same canonical snapshot.
What differs:

- state lives in a RocksDB database in a working directory per subtask (removed at
  ``close``), memory bounded by the job's ``memory_budget``;
- a write serializes at once (a serializer that refuses a value raises at ``update``,
  not at the next checkpoint);
- MapState iterates in the order of its canonical key bytes, not insertion order;
- besides the canonical :meth:`~RocksDBKeyedStateBackend.snapshot`, a native, incremental
  one (:mod:`streamflow.state.rocksdb.native`): a RocksDB checkpoint whose immutable SST
  files later checkpoints share;
- its operator's timers live in the database too (:meth:`~RocksDBKeyedStateBackend.timer_store`,
  :mod:`streamflow.state.rocksdb.timers`), so native snapshots carry them.

(A little over 400 lines: the state registry, its registration rules and the restore
hooks that change it belong together.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rocksdict import WriteBatch

from streamflow.errors import ConfigError, StateError
from streamflow.core.clock import Clock
from streamflow.state.backend import KeyedStateBackend, NativeSnapshot, RestoredNative, check_key_group_range
from streamflow.state.descriptors import StateDescriptor
from streamflow.state.heap_snapshot import SNAPSHOT_FORMAT
from streamflow.state.keyed import NO_KEY, no_current_key
from streamflow.state.rocksdb import db as rdb
from streamflow.state.rocksdb.canonical import (
    StateInfo,
    decode_body,
    encode_body,
    load_canonical,
    read_entries,
    state_keys,
    write_canonical,
)
from streamflow.state.rocksdb.handles import (
    RocksAggregatingState,
    RocksKeyContext,
    RocksListState,
    RocksReducingState,
    RocksValueState,
    StateAccess,
)
from streamflow.state.rocksdb.map_handle import RocksMapState
from streamflow.state.rocksdb.native import canonical_from_native, restore_native, take_native_snapshot
from streamflow.state.rocksdb.timers import FIRST_TIMER_ID, RocksTimerStore
from streamflow.state.rocksdb.ttl import ExpirySweeper, RocksTtl, purge_entry, purge_list
from streamflow.state.rocksdb.values import TS, body_offset
from streamflow.state.serializers import PickleSerializer, StateSerializer, serializer_mismatch
from streamflow.state.timers import TimerDomain

__all__ = ["RocksDBKeyedStateBackend"]

_PICKLE = PickleSerializer()

HANDLES: dict[str, type[Any]] = {
    "value": RocksValueState,
    "list": RocksListState,
    "map": RocksMapState,
    "reducing": RocksReducingState,
    "aggregating": RocksAggregatingState,
}


class RocksDBKeyedStateBackend(KeyedStateBackend):
    """Keyed state of one operator subtask in an embedded RocksDB database; a
    :class:`~streamflow.state.backend.NativeSnapshotBackend`.

    ``get_state`` is typed by the overloads of
    :class:`~streamflow.state.backend.KeyedStateStore`. Lifecycle as the heap backend's:
    created by the runtime, :meth:`restore` (or :meth:`restore_native`) when resuming,
    :meth:`get_state` in ``open``, per record :meth:`set_current_key` (and
    :meth:`on_record`), :meth:`snapshot` (or :meth:`snapshot_native`) at each barrier,
    :meth:`close` at the end. Not thread-safe: everything runs on the task's event
    loop, except what reads only a native snapshot's files
    (:meth:`canonical_from_native`, the upload into checkpoint storage).
    """

    def __init__(
        self,
        *,
        operator_uid: str,
        subtask_index: int,
        max_parallelism: int,
        key_group_range: range,
        clock: Clock,
        directory: Path,
        budget: rdb.MemoryBudget,
        ttl_sweep_every: int,
        ttl_sweep_entries: int,
        incremental: bool = True,
    ) -> None:
        if not 1 <= max_parallelism <= 32768:
            raise ConfigError(f"max_parallelism must be in 1..32768 for RocksDB state, got {max_parallelism!r}")
        check_key_group_range(operator_uid, subtask_index, max_parallelism, key_group_range)
        self.operator_uid = operator_uid
        self.subtask_index = subtask_index
        self.max_parallelism = max_parallelism
        self.key_group_range = key_group_range
        self._clock = clock
        self._budget = budget
        self.directory = directory
        self._db = rdb.open_database(directory / "db", budget)
        self._ctx = RocksKeyContext()
        self._states: dict[str, StateInfo] = {}
        self._ttls: dict[str, RocksTtl] = {}
        self._per_record: list[RocksTtl] = []
        self._background: list[ExpirySweeper] = []  # one per TTL state, apart from its incremental cursor
        self._sweep_every = ttl_sweep_every
        self._sweep_entries = ttl_sweep_entries
        self._records = 0
        self._closed = False
        self.incremental = incremental
        self.reused_files = False  # whether a native restore took over one old subtask's files as they are
        self._timers: dict[TimerDomain, RocksTimerStore] = {}

    # -- per record -----------------------------------------------------------------

    def set_current_key(self, key: Any, key_group: int) -> None:
        """Make ``key`` (in ``key_group``) the key every state handle reads and writes."""
        ctx = self._ctx
        ctx.key = key
        ctx.key_group = key_group
        ctx.parts = None

    def get_current_key(self) -> Any:
        """The current key; StateError if none was set."""
        key = self._ctx.key
        if key is NO_KEY:
            raise no_current_key(None)
        return key

    def on_record(self) -> None:
        """Per-record TTL work: one incremental step of states with
        ``incremental_per_record``, and every ``ttl_sweep_every`` records a background
        sweep of ``ttl_sweep_entries`` entries over all TTL states."""
        for ttl in self._per_record:
            ttl.sweeper.step(ttl.incremental)
        if self._ttls:
            self._records += 1
            if self._records >= self._sweep_every:
                self._records = 0
                self.sweep_expired(self._sweep_entries)

    def sweep_expired(self, max_entries: int) -> int:
        """Check up to ``max_entries`` entries of the TTL states (shared among them, each
        state walking on from where its last sweep stopped) and remove what expired;
        returns how many entries were removed or shortened."""
        if not self._background:
            return 0
        share = max(1, max_entries // len(self._background))
        return sum(sweeper.step(share) for sweeper in self._background)

    # -- registration ---------------------------------------------------------------

    def get_state(self, descriptor: Any) -> Any:
        """The handle for ``descriptor``; the same handle for an equal descriptor.

        Raises:
            StateError: as the heap backend's ``get_state``.
        """
        self._check_open()
        if not isinstance(descriptor, StateDescriptor) or descriptor.kind not in HANDLES:
            raise StateError(
                f"get_state needs a ValueStateDescriptor, ListStateDescriptor, MapStateDescriptor, "
                f"ReducingStateDescriptor or AggregatingStateDescriptor, got {descriptor!r}"
            )
        name = descriptor.name
        serializer = descriptor.effective_serializer
        info = self._states.get(name)
        if info is None:
            info = self._new_state(name, descriptor.kind, descriptor.ttl is not None, serializer.name)
        if info.kind != descriptor.kind:
            if info.descriptor is None:
                raise StateError(
                    f"operator {self.operator_uid!r}: the restored snapshot holds state {name!r} as a {info.kind} "
                    f"state, but the job now asks for it with a {type(descriptor).__name__} ({descriptor.kind} "
                    f"state); a state keeps its kind across restores: use a {info.kind} state descriptor for "
                    f"{name!r} again, or give the new state another name",
                    operator=self.operator_uid,
                    state=name,
                )
            raise StateError(
                f"state {name!r} of {self.operator_uid!r} is already a {info.kind} state, cannot use it as a "
                f"{descriptor.kind} state; give the new state another name",
                operator=self.operator_uid,
                state=name,
            )
        self._check_serializer(info, serializer)
        if info.descriptor is None:
            self._adopt(info, descriptor, serializer)
        elif info.descriptor.ttl != descriptor.ttl:
            raise StateError(
                f"state {name!r} of {self.operator_uid!r} is registered with ttl={info.descriptor.ttl!r}, "
                f"not ttl={descriptor.ttl!r}; use one TTL configuration per state name",
                state=name,
            )
        elif info.handle is not None and info.descriptor == descriptor:
            return info.handle
        handle = HANDLES[descriptor.kind](descriptor, self._ctx, info.access)
        info.descriptor = descriptor
        info.handle = handle
        return handle

    def _check_serializer(self, info: StateInfo, serializer: StateSerializer) -> None:
        if info.serializer is not None:
            if info.serializer.name != serializer.name:
                raise StateError(
                    f"state {info.name!r} of {self.operator_uid!r} is registered with serializer "
                    f"{info.serializer.name!r}, not {serializer.name!r}; use one serializer per state name",
                    operator=self.operator_uid,
                    state=info.name,
                )
        elif info.recorded is not None and info.recorded != serializer.name:
            raise serializer_mismatch(
                f"keyed state {info.name!r}", info.name, info.recorded, serializer.name, operator=self.operator_uid
            )

    def _new_state(self, name: str, kind: str, has_ttl: bool, written_with: str) -> StateInfo:
        used = {info.state_id for info in self._states.values()}
        state_id = next((n for n in range(FIRST_TIMER_ID) if n not in used), None)
        if state_id is None:
            raise StateError(
                f"operator {self.operator_uid!r} registers more than {FIRST_TIMER_ID} keyed states; "
                "a RocksDB backend holds at most that many per operator",
                operator=self.operator_uid,
            )
        info = self._states[name] = StateInfo(name, kind, state_id, has_ttl, written_with)
        return info

    def _adopt(self, info: StateInfo, descriptor: StateDescriptor, serializer: StateSerializer) -> None:
        """First registration of a state (new or restored): bring stored bytes to the
        registered serializer and TTL setting, set up TTL cleanup and the handles' access."""
        want_ttl = descriptor.ttl is not None
        if info.written_with != serializer.name or info.has_ttl != want_ttl:
            self._rewrite(info, serializer, want_ttl)
        info.has_ttl = want_ttl
        info.written_with = serializer.name
        info.serializer = serializer
        ttl = None
        if descriptor.ttl is not None:
            purge = purge_list if info.kind == "list" else purge_entry
            seconds = float(descriptor.ttl.ttl)  # type: ignore[arg-type]
            sweeper = ExpirySweeper(self._db, info.state_id, self.key_group_range, purge, seconds, self._clock)
            ttl = RocksTtl(descriptor.ttl, self._clock, sweeper)
            self._ttls[info.name] = ttl
            self._background.append(
                ExpirySweeper(self._db, info.state_id, self.key_group_range, purge, seconds, self._clock)
            )
            if ttl.per_record:
                self._per_record.append(ttl)
        info.access = StateAccess(
            info.name, self.operator_uid, self.subtask_index, info.state_id, self._db, serializer, ttl, self._ctx
        )

    def _rewrite(self, info: StateInfo, serializer: StateSerializer, want_ttl: bool) -> None:
        """Rewrite every entry of a restored state: payloads into ``serializer``'s bytes
        (restored values were pickled), TTL stamps added (the time now) or dropped."""
        convert = None
        if info.written_with != serializer.name:
            if info.written_with != _PICKLE.name:  # a mismatch was refused before; cannot happen
                raise StateError(f"state {info.name!r} holds {info.written_with!r} bytes", state=info.name)
            convert = lambda payload: serializer.dumps(_PICKLE.loads(payload))  # noqa: E731
        now = self._clock.now()
        for key_group in self.key_group_range:
            batch = WriteBatch(raw_mode=True)
            for entry, raw in read_entries(self._db, key_group, info.state_id):
                offset = body_offset(raw)
                values = decode_body(info.kind, info.has_ttl, raw, offset)
                if convert is not None:
                    values = [(convert(payload), ts) for payload, ts in values]
                if not info.has_ttl:
                    values = [(payload, now) for payload, _ in values]
                batch.put(entry, raw[:offset] + encode_body(info.kind, want_ttl, values))
            if len(batch):
                self._db.write(batch)

    def keys(self, state_name: str) -> Iterator[tuple[Any, int]]:
        """``(key, key_group)`` of every key with a value in ``state_name``.

        Keys whose values all expired are skipped unless the state's visibility returns
        expired values. Safe to mutate state while iterating: each key group is read
        before its keys are yielded.
        """
        info = self._states.get(state_name)
        if info is None:
            raise StateError(
                f"no state {state_name!r} in {self.operator_uid!r}; known states: {sorted(self._states)!r}",
                state=state_name,
            )
        ttl = self._ttls.get(state_name)
        visible = None
        if ttl is not None and not ttl.return_expired:
            visible = partial(_any_alive, info.kind == "list", ttl.ttl, self._clock.now())
        return state_keys(self._db, info, self.key_group_range, visible)

    # -- timers -------------------------------------------------------------------------

    def timer_store(self, domain: TimerDomain) -> RocksTimerStore:
        """The operator's ``domain`` timers, held in this database (one store per
        domain); a :class:`~streamflow.state.timers.TimerStoreBackend`."""
        store = self._timers.get(domain)
        if store is None:
            store = self._timers[domain] = RocksTimerStore(self, domain)
        return store

    # -- canonical snapshot and restore ---------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every key group this subtask holds, in the canonical format 2 (the heap
        backend's; see :mod:`streamflow.state.rocksdb.canonical`). A full scan of the
        database: savepoints and ``incremental=False`` checkpoints take it. A closed
        backend holds no state."""
        if self._closed:
            return {"format": SNAPSHOT_FORMAT, "states": {}}
        return write_canonical(
            self._db, self._states.values(), self.key_group_range, self._clock.now(), self._full_snapshot_ttl
        )

    def _full_snapshot_ttl(self, info: StateInfo) -> float | None:
        ttl = self._ttls.get(info.name)
        return ttl.ttl if ttl is not None and ttl.full_snapshot else None

    def restore(self, snapshots: Iterable[dict[str, Any]]) -> None:
        """Load this subtask's key groups from canonical snapshots (format 1 or 2) of any
        number of old subtasks, as the heap backend does.

        Raises:
            StateError: as the heap backend's ``restore``.
        """
        self._check_open()
        load_canonical(
            self._db, snapshots, states=self._states,
            new_state=lambda name, kind, has_ttl: self._new_state(name, kind, has_ttl, _PICKLE.name),
            check_kind=self._check_restored_kind, key_groups=self.key_group_range,
            max_parallelism=self.max_parallelism, now=self._clock.now(), operator=self.operator_uid,
        )  # fmt: skip

    def _check_restored_kind(self, name: str, kind: Any) -> None:
        if kind not in HANDLES:
            raise StateError(f"snapshot state {name!r} has unknown kind {kind!r}", state=name)
        info = self._states.get(name)
        if info is not None and info.kind != kind:
            raise StateError(
                f"snapshot holds state {name!r} as a {kind} state, but {self.operator_uid!r} registered it as a "
                f"{info.kind} state; keep the kind of a state, or rename the new one",
                state=name,
            )

    # -- native snapshots (see streamflow.state.rocksdb.native) ---------------------

    @property
    def working_directory(self) -> Path:
        return self.directory

    def snapshot_native(self, directory: Path) -> NativeSnapshot:
        """Flush and hard-link the database into ``directory`` (which must not exist):
        the part of an incremental checkpoint taken at the barrier."""
        self._check_open()
        return take_native_snapshot(self, directory, now=self._clock.now(), cut=self._full_snapshot_ttl)

    def canonical_from_native(self, snapshot: NativeSnapshot) -> dict[str, Any]:
        """The canonical snapshot of ``snapshot`` (reads only its files: thread-safe)."""
        return canonical_from_native(snapshot, self._budget)

    async def restore_native(self, parts: Sequence[RestoredNative]) -> None:
        """Load this subtask's key groups from old subtasks' native files.

        Raises:
            StateError: a part is of another format or max parallelism, or its states
                conflict with states registered already.
        """
        self._check_open()
        self.reused_files = await restore_native(self, parts)
        for store in self._timers.values():
            store.reload()

    @property
    def database(self) -> rdb.CachedDatabase:
        return self._db

    @property
    def budget(self) -> rdb.MemoryBudget:
        return self._budget

    def state_infos(self) -> list[StateInfo]:
        return sorted(self._states.values(), key=lambda info: info.state_id)

    def has_states(self) -> bool:
        return bool(self._states)

    def adopt_database(self, directory: Path, states: Iterable[StateInfo]) -> None:
        """Make the database files in ``directory`` this backend's database (a restore
        reusing an old subtask's files), dropping the key groups outside this subtask's
        range. Only before any state exists here."""
        if self._states:
            raise StateError(f"{self!r} already holds states; a native restore by reuse needs an empty backend")
        self._db.close()
        rdb.remove_directory(self.directory / "db")
        directory.rename(self.directory / "db")
        self._db = rdb.open_database(self.directory / "db", self._budget)
        own = self.key_group_range
        if own.start > 0:
            self._db.delete_range(b"", own.start.to_bytes(2, "big"))
        if own.stop < self.max_parallelism:
            self._db.delete_range(own.stop.to_bytes(2, "big"), b"\xff\xff\xff")
        for info in states:
            self._states[info.name] = info

    def state_for_restore(self, saved: StateInfo) -> StateInfo:
        """The state that receives an old subtask's entries of ``saved`` (the old
        subtask's id may differ): added if new, else checked to hold the same kind of data.

        Raises:
            StateError: the kind, TTL or serializer differs from what is here already.
        """
        self._check_restored_kind(saved.name, saved.kind)
        info = self._states.get(saved.name)
        if info is None:
            info = self._new_state(saved.name, saved.kind, saved.has_ttl, saved.written_with)
            info.recorded = saved.recorded
            return info
        if info.serializer is not None and info.serializer.name != saved.written_with:
            raise serializer_mismatch(
                f"keyed state {info.name!r}", info.name, saved.written_with, info.serializer.name,
                operator=self.operator_uid,
            )  # fmt: skip
        if info.has_ttl != saved.has_ttl or info.written_with != saved.written_with:
            raise StateError(
                f"operator {self.operator_uid!r}: a native snapshot holds state {info.name!r} with ttl={saved.has_ttl}"
                f" and serializer {saved.written_with!r}, but here it has ttl={info.has_ttl} and serializer "
                f"{info.written_with!r}; restore native snapshots before get_state registers the state differently",
                operator=self.operator_uid,
                state=info.name,
            )
        return info

    # -- lifecycle ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(f"the RocksDB state of {self.operator_uid!r}[{self.subtask_index}] is closed")

    def close(self) -> None:
        """Close the database and remove the working directory; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._db.close()
        rdb.remove_directory(self.directory)
        self._states.clear()
        self._ttls.clear()
        self._per_record.clear()
        self._background.clear()

    def __repr__(self) -> str:
        return (
            f"RocksDBKeyedStateBackend({self.operator_uid!r}[{self.subtask_index}], "
            f"key_groups={self.key_group_range!r}, states={sorted(self._states)!r}, directory={str(self.directory)!r})"
        )


def _any_alive(is_list: bool, ttl: float, now: float, raw: bytes, offset: int) -> bool:
    if not is_list:
        return bool(TS.unpack_from(raw, offset)[0] + ttl > now)
    return any(ts + ttl > now for _, ts in decode_body("list", True, raw, offset))
