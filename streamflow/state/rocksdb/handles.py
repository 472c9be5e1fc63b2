"""Keyed state handles of the RocksDB backend.

Each class subclasses the heap handle of its kind, so ``isinstance(h, ValueState)``
holds whatever the backend, and overrides every public method (a test checks that no
heap method is left reachable; the heap table they would touch raises if one were).
One class serves a state with and without TTL: next to a RocksDB read or write, the
branch on ``ttl`` costs nothing measurable, and TTL stays a codec of the stored bytes.

Every call reads the current key at call time from the :class:`RocksKeyContext` the
backend shares with its handles; the canonical encoding of the key is computed once
per key (lazily, on the first state access after ``set_current_key``).

ValueState, the state of a running reduce, has a hot path: for str, int and bytes keys
it keeps each key's whole RocksDB key per state (:meth:`StateAccess.entry_key_of`), and
reads a cache hit and calls pickle without a function call of its own between. Per
record, the serializer is then the largest part of the work beside the heap backend's.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, NoReturn, TypeVar

from streamflow.errors import StateError
from streamflow.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamflow.state.keyed import (
    NO_KEY,
    AggregatingState,
    KeyContext,
    ListState,
    MapState,
    ReducingState,
    ValueState,
    no_current_key,
)
from streamflow.state.rocksdb.db import CachedDatabase
from streamflow.state.rocksdb.keys import decode_key, encode_key, key_part, successor
from streamflow.state.rocksdb.ttl import RocksTtl
from streamflow.state.rocksdb.values import (
    ABSENT,
    PLAIN,
    TS,
    body_offset,
    header,
    key_form,
    original_keys,
    pack_elements,
    pack_stamped,
    unpack_elements,
)
from streamflow.state.serializers import PickleSerializer, StateSerializer, serializer_failure

__all__ = [
    "RocksAggregatingState",
    "RocksKeyContext",
    "RocksListState",
    "RocksReducingState",
    "RocksValueState",
    "StateAccess",
    "entry_of",
    "read_single",
    "touch",
    "write_single",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")

_MISSING: Any = object()
_pickle_dumps = pickle.dumps
_pickle_loads = pickle.loads


_MEMO_LIMIT = 1 << 16
MEMO_KINDS = frozenset((str, int, bytes))
"""Key types whose equal keys have equal encodings and the :data:`PLAIN` header: exact
types only (``True == 1`` and ``1.0 == 1`` but their headers keep their types)."""


class RocksKeyContext(KeyContext):
    """The current key and key group, plus their encoding once a handle asked for it:
    ``parts`` is ``(key group bytes, state-key part, header)`` or None. ``memo`` keeps
    the parts of recent str, int and bytes keys (for those, equal keys have equal parts;
    a key comes back record after record)."""

    __slots__ = ("parts", "memo")

    def __init__(self) -> None:
        super().__init__()
        self.parts: tuple[bytes, bytes, bytes] | None = None
        self.memo: dict[Any, tuple[bytes, bytes, bytes]] = {}


def _parts(ctx: RocksKeyContext, name: str) -> tuple[bytes, bytes, bytes]:
    key = ctx.key
    if type(key) in MEMO_KINDS:
        parts = ctx.memo.get(key)
        if parts is None:
            encoded = encode_key(key)[0]
            parts = (ctx.key_group.to_bytes(2, "big"), key_part(encoded), PLAIN)
            memo = ctx.memo
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = parts
    elif key is NO_KEY:
        raise no_current_key(name)
    else:
        encoded, exact = encode_key(key)
        parts = (ctx.key_group.to_bytes(2, "big"), key_part(encoded), PLAIN if exact else header(key_form(key)))
    ctx.parts = parts
    return parts


class _NotHeap(dict[Any, Any]):
    """The table given to the heap base classes: any use of it is a bug."""

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise StateError("internal error: a heap state method ran on a RocksDB state handle")

    get = __getitem__ = __setitem__ = __contains__ = __iter__ = pop = setdefault = items = keys = values = _fail


NOT_HEAP = _NotHeap()


class StateAccess:
    """What the handles of one state share: the database, the state's id, its
    serializer and TTL (the database is never swapped under it: a restore that reuses
    an old subtask's files runs only while no state exists).

    ``dumps`` / ``loads`` are the serializer's own (pickle's C functions for the
    default one) for the hot paths, which wrap their failures with :meth:`dump_failure`
    / :meth:`load_failure`; :meth:`dump` and :meth:`load` do both in one call. With
    ``pickled`` (the default serializer) the ValueState hot path calls
    ``pickle.dumps(value, 5)`` itself: a call through ``functools.partial`` costs a
    third more. ``cache`` is the database's cache of entries (see
    :class:`~streamflow.state.rocksdb.db.CachedDatabase`), ``entry_keys`` the RocksDB
    keys of recent str, int and bytes keys in this state.
    """

    __slots__ = (
        "name", "operator", "subtask", "sid", "db", "cache", "entry_keys", "serializer", "pickled", "dumps", "loads",
        "ttl", "ctx",
    )  # fmt: skip

    def __init__(
        self, name: str, operator: str, subtask: int, state_id: int, db: CachedDatabase, serializer: StateSerializer,
        ttl: RocksTtl | None, ctx: KeyContext,
    ) -> None:  # fmt: skip
        self.name = name
        self.operator = operator
        self.subtask = subtask
        self.sid = state_id.to_bytes(2, "big")
        self.db = db
        self.cache = db.cache
        self.entry_keys: dict[Any, bytes] = {}
        self.serializer = serializer
        fast = type(serializer) is PickleSerializer
        self.pickled = fast
        self.dumps: Callable[[Any], bytes] = partial(pickle.dumps, protocol=5) if fast else serializer.dumps
        self.loads: Callable[[bytes], Any] = pickle.loads if fast else serializer.loads
        self.ttl = ttl
        self.ctx = ctx

    def entry_key_of(self, key: Any, key_group: int) -> bytes:
        """The RocksDB key of ``key``'s entry (a str, int or bytes key: one whose header
        is :data:`PLAIN`), kept in :attr:`entry_keys` for the next records of that key.

        The hot paths look a key up there rather than concatenate its parts: no new
        bytes object whose hash must be computed, and the cache finds the very object
        it holds (an identity match, no byte comparison)."""
        entries = self.entry_keys
        if len(entries) >= _MEMO_LIMIT:
            entries.clear()
        entry = entries[key] = key_group.to_bytes(2, "big") + self.sid + key_part(encode_key(key)[0])
        return entry

    def dump(self, value: Any, where: str = "") -> bytes:
        """``serializer.dumps(value)``, a refusal raised as :meth:`dump_failure`."""
        try:
            return self.dumps(value)
        except Exception as exc:  # noqa: BLE001 - a serializer may raise anything
            raise self.dump_failure(exc, value, where) from exc

    def load(self, data: bytes) -> Any:
        """``serializer.loads(data)``, a failure raised as :meth:`load_failure`."""
        try:
            return self.loads(data)
        except Exception as exc:  # noqa: BLE001 - a serializer may raise anything
            raise self.load_failure(exc) from exc

    def dump_failure(self, exc: Exception, value: Any, where: str = "") -> StateError:
        """A StateSerializationError naming operator, subtask, state and key (raised by
        the write that stored the value: RocksDB state serializes at once)."""
        return serializer_failure(
            exc, serializer=self.serializer, value=value, where=f"keyed state {self.name!r} (key {self.ctx.key!r}{where})",
            state=self.name, operator=self.operator, subtask=self.subtask,
        )  # fmt: skip

    def load_failure(self, exc: Exception) -> StateError:
        return StateError(
            f"operator {self.operator!r}: the value of key {self.ctx.key!r} in keyed state {self.name!r} does "
            f"not load with serializer {self.serializer.name!r} ({type(exc).__name__}: {exc}); the stored "
            "bytes are damaged or the serializer cannot read what it wrote",
            operator=self.operator,
            state=self.name,
        )


def entry_of(handle: Any) -> tuple[bytes, bytes]:
    """``(RocksDB key, header)`` of the current key's entry of ``handle``'s state."""
    ctx = handle._ctx
    parts = ctx.parts
    if parts is None:
        parts = _parts(ctx, handle.name)
    return parts[0] + handle._st.sid + parts[1], parts[2]


def read_single(st: StateAccess, key: bytes) -> bytes | None:
    """The visible payload of a single-valued entry, applying TTL read rules."""
    raw = st.db.get(key)
    if raw is None:
        return None
    offset = 1 if raw[0] == 0 else body_offset(raw)
    ttl = st.ttl
    if ttl is None:
        return raw[offset:]
    stamp = TS.unpack_from(raw, offset)[0]
    payload: bytes = raw[offset + 8 :]
    now = ttl.clock.now()
    if stamp + ttl.ttl > now:
        if ttl.refresh_on_read:
            st.db.put(key, raw[:offset] + TS.pack(now) + payload)
        return payload
    if ttl.cleanup_on_read:
        st.db.delete(key)
    return payload if ttl.return_expired else None


def write_single(st: StateAccess, key: bytes, head: bytes, payload: bytes) -> None:
    ttl = st.ttl
    st.db.put(key, head + payload if ttl is None else head + TS.pack(ttl.clock.now()) + payload)


def live_single(st: StateAccess, key: bytes) -> bytes | None:
    """The payload of a single-valued entry that has not expired (no read rules: for
    reducing and aggregating ``add``, which never fold an expired value)."""
    raw = st.db.get(key)
    if raw is None:
        return None
    offset = 1 if raw[0] == 0 else body_offset(raw)
    ttl = st.ttl
    if ttl is None:
        return raw[offset:]
    if TS.unpack_from(raw, offset)[0] + ttl.ttl > ttl.clock.now():
        return raw[offset + 8 :]
    return None


def touch(handle: Any) -> StateAccess:
    """Every handle method starts here: one incremental TTL cleanup step, if configured."""
    st: StateAccess = handle._st
    if st.ttl is not None:
        st.ttl.on_access()
    return st


def _begin(handle: Any) -> tuple[StateAccess, bytes, bytes]:
    """:func:`_touch`, then ``(access, RocksDB key, header)`` of the current key's entry."""
    st = touch(handle)
    key, head = entry_of(handle)
    return st, key, head


class _OneEntry:
    """``clear`` of the states that keep one entry per key (all but map state)."""

    __slots__ = ()

    def clear(self) -> None:
        st, key, _ = _begin(self)
        st.db.delete(key)


class RocksValueState(_OneEntry, ValueState[T]):
    """ValueState on RocksDB: one entry per key."""

    __slots__ = ("_st",)

    def __init__(self, descriptor: ValueStateDescriptor[T], ctx: RocksKeyContext, access: StateAccess) -> None:
        super().__init__(descriptor, ctx, NOT_HEAP)
        self._st = access

    def value(self) -> T | None:
        st = self._st
        if st.ttl is not None:
            st.ttl.on_access()
            payload = read_single(st, entry_of(self)[0])
            if payload is None:
                return self._default
        else:  # the hot path, inline: a cache hit calls no function but the serializer's
            ctx = self._ctx
            key = ctx.key
            if type(key) in MEMO_KINDS:
                entry = st.entry_keys.get(key) or st.entry_key_of(key, ctx.key_group)
            else:
                entry = entry_of(self)[0]
            raw = st.cache.get(entry, _MISSING)
            if raw is _MISSING:
                raw = st.db.get(entry)
            if raw is None:
                return self._default
            payload = raw[1:] if raw[0] == 0 else raw[body_offset(raw) :]
        try:
            return _pickle_loads(payload) if st.pickled else st.loads(payload)  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - a serializer may raise anything
            raise st.load_failure(exc) from exc

    def update(self, value: T) -> None:
        st = self._st
        try:
            payload = _pickle_dumps(value, 5) if st.pickled else st.dumps(value)
        except Exception as exc:  # noqa: BLE001 - a serializer may raise anything
            raise st.dump_failure(exc, value) from exc
        if st.ttl is not None:
            st.ttl.on_access()
            entry, head = entry_of(self)
            write_single(st, entry, head, payload)
            return
        ctx = self._ctx
        key = ctx.key
        if type(key) in MEMO_KINDS:
            st.db.put(st.entry_keys.get(key) or st.entry_key_of(key, ctx.key_group), PLAIN + payload)
        else:
            entry, head = entry_of(self)
            st.db.put(entry, head + payload)


class RocksReducingState(_OneEntry, ReducingState[T]):
    """ReducingState on RocksDB: the reduced value is read, combined and written back."""

    __slots__ = ("_st",)

    def __init__(self, descriptor: ReducingStateDescriptor[T], ctx: RocksKeyContext, access: StateAccess) -> None:
        super().__init__(descriptor, ctx, NOT_HEAP)
        self._st = access

    def get(self) -> T | None:
        st, key, _ = _begin(self)
        payload = read_single(st, key)
        return None if payload is None else st.load(payload)

    def add(self, value: T) -> None:
        st, key, head = _begin(self)
        payload = live_single(st, key)
        if payload is not None:
            value = self._reduce(st.load(payload), value)
        write_single(st, key, head, st.dump(value))


class RocksAggregatingState(_OneEntry, AggregatingState[IN, ACC, OUT]):
    """AggregatingState on RocksDB: the accumulator is read, folded and written back."""

    __slots__ = ("_st",)

    def __init__(
        self, descriptor: AggregatingStateDescriptor[IN, ACC, OUT], ctx: RocksKeyContext, access: StateAccess
    ) -> None:
        super().__init__(descriptor, ctx, NOT_HEAP)
        self._st = access

    def get(self) -> OUT | None:
        st, key, _ = _begin(self)
        payload = read_single(st, key)
        return None if payload is None else self._fn.get_result(st.load(payload))

    def add(self, value: IN) -> None:
        st, key, head = _begin(self)
        payload = live_single(st, key)
        accumulator = self._fn.create_accumulator() if payload is None else st.load(payload)
        write_single(st, key, head, st.dump(self._fn.add(value, accumulator)))


class RocksListState(_OneEntry, ListState[T]):
    """ListState on RocksDB: the list is one entry; ``add`` appends bytes without
    decoding the elements already there (rocksdict offers no merge operator, so it is a
    read and a write)."""

    __slots__ = ("_st",)

    def __init__(self, descriptor: ListStateDescriptor[T], ctx: RocksKeyContext, access: StateAccess) -> None:
        super().__init__(descriptor, ctx, NOT_HEAP)
        self._st = access

    def get(self) -> list[T]:
        st, key, _ = _begin(self)
        ttl = st.ttl
        raw = st.db.get(key)
        if raw is None:
            return []
        offset = body_offset(raw)
        loads = st.load
        if ttl is None:
            return [loads(payload) for payload, _ in unpack_elements(raw, offset, False)]
        now = ttl.clock.now()
        span = ttl.ttl
        result: list[T] = []
        kept: list[tuple[bytes, float]] = []
        dropped = False
        for payload, stamp in unpack_elements(raw, offset, True):
            if stamp + span > now:
                result.append(loads(payload))
                kept.append((payload, now if ttl.refresh_on_read else stamp))
            else:
                if ttl.return_expired:
                    result.append(loads(payload))
                if ttl.cleanup_on_read:
                    dropped = True
                else:
                    kept.append((payload, stamp))
        if dropped or ttl.refresh_on_read:
            if kept:
                st.db.put(key, raw[:offset] + b"".join(pack_stamped(p, s) for p, s in kept))
            else:
                st.db.delete(key)
        return result

    def _append(self, values: Iterable[T]) -> None:
        st, key, head = _begin(self)
        payloads = [st.dump(value, f", element {i}") for i, value in enumerate(values)]
        if not payloads:
            return
        body = pack_elements(payloads, None if st.ttl is None else st.ttl.clock.now())
        raw = st.db.get(key)
        st.db.put(key, head + body if raw is None else head + raw[body_offset(raw) :] + body)

    def add(self, value: T) -> None:
        self._append((value,))

    def add_all(self, values: Iterable[T]) -> None:
        self._append(values)

    def update(self, values: Iterable[T]) -> None:
        st, key, head = _begin(self)
        payloads = [st.dump(value, f", element {i}") for i, value in enumerate(values)]
        if payloads:
            st.db.put(key, head + pack_elements(payloads, None if st.ttl is None else st.ttl.clock.now()))
        else:
            st.db.delete(key)
