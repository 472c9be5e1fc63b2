"""Time to live on RocksDB: the resolved settings of a state and its cleanup passes.

The stored bytes carry each value's last-update time (see
:mod:`streamflow.state.rocksdb.values`). Cleanup works as in the heap backend: on read,
``cleanup_incremental`` entries per access (and per record with
``incremental_per_record``), and left out of full snapshots. RocksDB's compaction filter
(Flink's way to drop expired entries in the background) cannot be reached from Python,
so the backend instead runs an :class:`ExpirySweeper` over every TTL state every so many
records (``ttl_sweep_every``): expired state does not grow the database forever even
for keys that are never read again.

A sweeper walks one state's entries key group by key group with a cursor it keeps as
bytes, re-seeking each step: no RocksDB iterator lives across steps (an open iterator
pins memtables and files, and would see stale data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


from streamflow.core.clock import Clock
from streamflow.state.rocksdb.db import CachedDatabase, scan
from streamflow.state.rocksdb.keys import group_prefix, successor
from streamflow.state.rocksdb.values import TS, body_offset, pack_stamped, unpack_elements
from streamflow.state.ttl import StateTtlConfig, TtlUpdateType, TtlVisibility

__all__ = ["ExpirySweeper", "RocksTtl", "purge_entry", "purge_list"]


class RocksTtl:
    """The TTL settings of one registered state, and its incremental cleanup cursor."""

    __slots__ = (
        "config", "clock", "ttl", "refresh_on_read", "return_expired", "cleanup_on_read", "full_snapshot",
        "incremental", "per_record", "sweeper",
    )  # fmt: skip

    def __init__(self, config: StateTtlConfig, clock: Clock, sweeper: ExpirySweeper) -> None:
        self.config = config
        self.clock = clock
        self.ttl = float(config.ttl)  # type: ignore[arg-type]  # normalised to float seconds
        self.refresh_on_read = config.update_type is TtlUpdateType.ON_READ_AND_WRITE
        self.return_expired = config.visibility is TtlVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP
        self.cleanup_on_read = config.cleanup_on_read
        self.full_snapshot = config.cleanup_full_snapshot
        self.incremental = config.cleanup_incremental
        self.per_record = config.incremental_per_record
        self.sweeper = sweeper

    def on_access(self) -> None:
        """Called by every handle method: one incremental cleanup step, if configured."""
        if self.incremental:
            self.sweeper.step(self.incremental)


# purge(raw, now) -> None to delete the entry, raw to keep it as it is, or new bytes
Purge = Callable[[bytes, float, float], bytes | None]


def purge_entry(raw: bytes, now: float, ttl: float) -> bytes | None:
    """A single-valued entry (value, reducing, aggregating, one map entry): None if expired."""
    offset = body_offset(raw)
    return raw if TS.unpack_from(raw, offset)[0] + ttl > now else None


def purge_list(raw: bytes, now: float, ttl: float) -> bytes | None:
    """A list entry without its expired elements; None if none is left."""
    offset = body_offset(raw)
    elements = unpack_elements(raw, offset, True)
    kept = [(payload, ts) for payload, ts in elements if ts + ttl > now]
    if not kept:
        return None
    if len(kept) == len(elements):
        return raw
    return raw[:offset] + b"".join(pack_stamped(payload, ts) for payload, ts in kept)


class ExpirySweeper:
    """Checks a state's entries a few at a time, removing what expired.

    The cursor walks the key groups of ``key_groups`` in order; at the end it starts over,
    at most once per step, so an empty state cannot spin.
    """

    __slots__ = ("_db", "_state_id", "_key_groups", "_purge", "_ttl", "_clock", "_cursor")

    def __init__(
        self, db: CachedDatabase, state_id: int, key_groups: range, purge: Purge, ttl: float, clock: Clock
    ) -> None:
        self._db = db
        self._state_id = state_id
        self._key_groups = key_groups
        self._purge = purge
        self._ttl = ttl
        self._clock = clock
        self._cursor: Iterator[bytes] | None = None

    def step(self, budget: int) -> int:
        """Check up to ``budget`` entries; returns how many were removed or shortened."""
        now = self._clock.now()
        changed = 0
        restarted = False
        db, purge, ttl = self._db, self._purge, self._ttl
        while budget > 0:
            if self._cursor is None:
                if restarted:
                    break
                self._cursor = self._walk()
                restarted = True
            for key in self._cursor:
                raw = db.get(key)  # the walk read ahead: decide on the value as it is now
                kept = None if raw is None else purge(raw, now, ttl)
                if raw is None:
                    pass
                elif kept is None:
                    db.delete(key)
                    changed += 1
                elif kept is not raw:
                    db.put(key, kept)
                    changed += 1
                budget -= 1
                if budget == 0:
                    return changed
            self._cursor = None
        return changed

    def _walk(self) -> Iterator[bytes]:
        for key_group in self._key_groups:
            prefix = group_prefix(key_group, self._state_id)
            for key, _ in scan(self._db, prefix, successor(prefix)):
                yield key
