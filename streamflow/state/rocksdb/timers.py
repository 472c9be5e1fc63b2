"""Timers of a keyed operator held in its RocksDB database, not in Python memory.

Each time domain (processing, event) is a reserved state id, so a timer is an entry of
the same database as the keyed state::

    key group (2 bytes) | timer id (2 bytes) | timestamp (8 bytes) | K

``K`` is the canonical encoding of the timer's key (a window operator's is ``(key,
window)``; see :mod:`~streamflow.state.rocksdb.keys`) and the timestamp is the float's
IEEE 754 bits made order-preserving (the sign bit flipped for positive values, every
bit for negative ones), so within a key group the timers of a domain are one byte range
in time order, and a key-group range holds its timers like its state: native
(incremental) checkpoints carry them, a rescale copies ranges. The value is empty, or,
when the timestamp is not a float or the key does not decode to exactly its own type,
the pickle of ``(timestamp, key)``: timers come back with their types.

What stays in memory, as in Flink's RocksDB timer service: per key group the first
:data:`HEAD_SIZE` timers (``_heads``; a prefix of that key group's sorted entries), and
a heap of each key group's earliest timer (``_queue``), so finding the next timer is a
heap look-up and a key group's database range is read only when its cached head runs
out. Both are bounded by the number of key groups, whatever the number of timers.
``_recent`` remembers a bounded number of timers known to be registered, with their
entry bytes, so a window operator registering its window's timer for every record
writes it once, and deleting a timer registered a moment ago (a session window's
merge) does not encode it again.

Timers of one timestamp fire in the order of key group, then key bytes (the heap
backend's keep registration order): deterministic, and stable across restores.
"""

from __future__ import annotations

import bisect
import heapq
import pickle
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, Protocol

from rocksdict import ReadOptions

from streamflow.state.rocksdb import db as rdb
from streamflow.state.rocksdb.keys import decode_key, encode_key, group_prefix, successor
from streamflow.state.timers import TimerDomain, owned_timer_entries, pop_due

__all__ = ["HEAD_SIZE", "RECENT_LIMIT", "TIMER_IDS", "RocksTimerStore", "decode_timer", "read_timers"]

TIMER_IDS: Final[dict[TimerDomain, int]] = {"event": 0xFFFF, "processing": 0xFFFE}
"""The state ids the timer domains use (the top ones: keyed states take ids from 0 up)."""
FIRST_TIMER_ID: Final = min(TIMER_IDS.values())
HEAD_SIZE: Final = 32  # timers per key group kept in memory
RECENT_LIMIT: Final = 16384  # timers remembered as registered before the memory is dropped
_DOUBLE = struct.Struct(">d")
_BITS = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def encode_time(timestamp: float) -> bytes:
    """8 bytes that sort as the timestamps do, negative ones and infinities too."""
    (bits,) = _BITS.unpack(_DOUBLE.pack(float(timestamp) + 0.0))  # + 0.0: -0.0 is 0.0
    return _BITS.pack(bits ^ _ALL if bits & _SIGN else bits | _SIGN)


def decode_time(data: bytes) -> float:
    (bits,) = _BITS.unpack_from(data)
    (value,) = _DOUBLE.unpack(_BITS.pack(bits ^ _SIGN if bits & _SIGN else bits ^ _ALL))
    return float(value)


def encode_timer(timestamp: float, key: Any) -> tuple[bytes, bytes]:
    """``(entry suffix, value)``: the bytes after the key group and timer id, and the
    value that keeps the exact types (empty when the bytes alone give them back)."""
    encoded, exact = encode_key(key)
    value = b"" if exact and type(timestamp) is float else pickle.dumps((timestamp, key), protocol=5)
    return encode_time(timestamp) + encoded, value


def decode_timer(suffix: bytes, value: bytes) -> tuple[Any, Any]:
    """``(timestamp, key)`` of an entry suffix and its value."""
    if value:
        timestamp, key = pickle.loads(value)
        return timestamp, key
    return decode_time(suffix), decode_key(suffix[8:])


class DatabaseSource(Protocol):
    """The backend whose database holds the timers (it may swap its database on a
    native restore, so the store asks for it each time)."""

    key_group_range: range

    @property
    def database(self) -> rdb.CachedDatabase: ...


class RocksTimerStore:
    """One time domain's timers of a keyed subtask, in its RocksDB database (a
    :class:`~streamflow.state.timers.TimerStore`; see the module docstring).

    The in-memory heads are read from the database on first use, so a store created
    before a native restore sees the restored timers.
    """

    __slots__ = ("_source", "_id", "_heads", "_partial", "_queue", "_recent", "_loaded")

    def __init__(self, source: DatabaseSource, domain: TimerDomain) -> None:
        self._source = source
        self._id = TIMER_IDS[domain]
        self._heads: dict[int, list[tuple[bytes, bytes]]] = {}  # key group -> its first (suffix, value)s
        self._partial: set[int] = set()  # key groups whose database range holds more than their head
        self._queue: list[tuple[bytes, int]] = []  # (suffix, key group) of heads; stale ones are skipped
        self._recent: dict[tuple[Any, Any], bytes] = {}  # (timestamp, key) -> entry suffix
        self._loaded = False

    # -- the head cache ---------------------------------------------------------------

    def _load(self) -> None:
        self._heads.clear()
        self._partial.clear()
        self._queue.clear()
        self._recent.clear()
        for key_group in self._source.key_group_range:
            self._read_head(key_group)
        self._loaded = True

    def _read_head(self, key_group: int, after: bytes = b"") -> None:
        """Read ``key_group``'s first timers from the database into its head, those
        after ``after`` (a suffix no live timer precedes: the scan starts there rather
        than walking over the deletion markers of the timers fired before it)."""
        prefix = group_prefix(key_group, self._id)
        options = ReadOptions()
        options.set_iterate_upper_bound(successor(prefix))
        head: list[tuple[bytes, bytes]] = []
        for entry, value in self._source.database.items(from_key=prefix + after, read_opt=options):
            if len(head) == HEAD_SIZE:
                self._partial.add(key_group)
                break
            head.append((entry[4:], value))
        else:
            self._partial.discard(key_group)
        if head:
            self._heads[key_group] = head
            heapq.heappush(self._queue, (head[0][0], key_group))
        else:
            self._heads.pop(key_group, None)

    def _push(self, suffix: bytes, key_group: int) -> None:
        queue = self._queue
        if len(queue) > 2 * len(self._heads) + 64:  # mostly stale: rebuild from the heads
            queue[:] = [(head[0][0], group) for group, head in self._heads.items()]
            heapq.heapify(queue)
        heapq.heappush(queue, (suffix, key_group))

    # -- the TimerStore interface -----------------------------------------------------

    def __len__(self) -> int:
        """How many timers there are: a scan of the database (for tests and tools)."""
        return sum(1 for _ in self._entries())

    def register(self, timestamp: float, key: Any, key_group: int) -> None:
        if not self._loaded:
            self._load()
        recent = self._recent
        marker = (timestamp, key)
        if marker in recent:
            return
        if len(recent) >= RECENT_LIMIT:
            recent.clear()
        suffix, value = encode_timer(timestamp, key)
        recent[marker] = suffix
        self._source.database.put(group_prefix(key_group, self._id) + suffix, value)
        head = self._heads.get(key_group)
        if head is None:  # no timer of this key group in the database before
            self._heads[key_group] = [(suffix, value)]
            self._push(suffix, key_group)
            return
        index = bisect.bisect_left(head, (suffix,))
        if index < len(head) and head[index][0] == suffix:
            head[index] = (suffix, value)
            return
        if index == len(head) and key_group in self._partial:
            return  # beyond the head: the database has it
        head.insert(index, (suffix, value))
        if len(head) > HEAD_SIZE:
            head.pop()
            self._partial.add(key_group)
        if index == 0:
            self._push(suffix, key_group)

    def delete(self, timestamp: float, key: Any, key_group: int) -> None:
        if not self._loaded:
            self._load()
        suffix = self._recent.pop((timestamp, key), None)
        if suffix is None:
            suffix = encode_timer(timestamp, key)[0]
        self._source.database.delete(group_prefix(key_group, self._id) + suffix)
        head = self._heads.get(key_group)
        if head is None:
            return
        index = bisect.bisect_left(head, (suffix,))
        if index < len(head) and head[index][0] == suffix:
            del head[index]
            if index == 0:
                self._refill(key_group, head, suffix)

    def _refill(self, key_group: int, head: list[tuple[bytes, bytes]], removed: bytes) -> None:
        """After ``key_group``'s earliest timer (``removed``) left its head: queue the
        next one. A head that ran out was a prefix of the key group's timers ending at
        ``removed``: the database's next ones follow it."""
        if not head:
            if key_group in self._partial:
                self._read_head(key_group, removed)  # pushes the new head
            else:
                del self._heads[key_group]
            return
        self._push(head[0][0], key_group)

    def _peek(self) -> tuple[bytes, int] | None:
        """The earliest live head, stale queue entries dropped on the way."""
        if not self._loaded:
            self._load()
        queue, heads = self._queue, self._heads
        while queue:
            suffix, key_group = queue[0]
            head = heads.get(key_group)
            if head is not None and head[0][0] == suffix:
                return suffix, key_group
            heapq.heappop(queue)
        return None

    def next_time(self) -> float | None:
        """The earliest timer's time (as a float: the task's loop only compares it)."""
        top = self._peek()
        return None if top is None else decode_time(top[0])

    def pop_due(self, now: float) -> list[tuple[float, int, Any]]:
        """Timers with timestamp <= now, in time order; they are removed."""
        return pop_due(self, now)

    def pop_next(self, now: float) -> tuple[float, int, Any] | None:
        """The earliest timer with timestamp <= now (removed), or None; in a loop it
        also hands out timers registered meanwhile at or before ``now``."""
        top = self._peek()
        if top is None:
            return None
        suffix, key_group = top
        if decode_time(suffix) > now:
            return None
        heapq.heappop(self._queue)
        head = self._heads[key_group]
        _, value = head.pop(0)
        self._source.database.delete(group_prefix(key_group, self._id) + suffix)
        timestamp, key = decode_timer(suffix, value)
        self._recent.pop((timestamp, key), None)
        self._refill(key_group, head, suffix)
        return timestamp, key_group, key

    def _entries(self) -> Iterator[tuple[float, int, Any]]:
        db = self._source.database
        for key_group in self._source.key_group_range:
            yield from read_timers(db, key_group, self._id)

    def snapshot(self) -> list[tuple[float, int, Any]]:
        """Every timer, ``(timestamp, key_group, key)`` each, in time order: the
        backend-independent form a savepoint stores (a scan of the database)."""
        entries = list(self._entries())
        entries.sort(key=lambda entry: entry[0])
        return entries

    def restore(self, entries: Iterable[Sequence[Any]], key_groups: range, max_parallelism: int) -> None:
        """Register the snapshot's timers whose key group is in ``key_groups``."""
        for timestamp, key_group, key in owned_timer_entries(entries, key_groups, max_parallelism):
            self.register(timestamp, key, key_group)

    def reload(self) -> None:
        """Forget the in-memory heads: the database changed underneath (a native
        restore); they are read again on next use."""
        self._loaded = False


def read_timers(db: rdb.Database, key_group: int, timer_id: int) -> Iterator[tuple[float, int, Any]]:
    """``(timestamp, key_group, key)`` of every timer of one domain in one key group of
    ``db`` (a live database or one opened read-only), in time order."""
    prefix = group_prefix(key_group, timer_id)
    for entry, value in rdb.scan(db, prefix, successor(prefix)):
        timestamp, key = decode_timer(entry[4:], value)
        yield timestamp, key_group, key
