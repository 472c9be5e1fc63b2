"""Opening RocksDB databases: the memory budget, working directories, checkpoints.

One :class:`MemoryBudget` per :class:`~streamflow.state.rocksdb.EmbeddedRocksDBStateBackend`
(so per job) holds one LRU block cache and one write buffer manager charged to that
cache, shared by the database of every keyed subtask: what RocksDB keeps in memory
(memtables, data, index and filter blocks) stays within ``memory_budget`` bytes in
total, plus a fixed overhead (table readers, iterators, the Python side), as Flink's
managed memory does for its RocksDB instances.

Databases run without a write-ahead log: a subtask's state is durable through
checkpoints, never through the local directory (a restart restores a checkpoint into a
fresh directory), so the log would only cost writes.

Each subtask's database sits behind a :class:`CachedDatabase`, a bounded cache of its
recent entries (see there): through rocksdict a RocksDB point read costs about 2.5 µs
and a write about 6 µs, several times the rest of a keyed record's work, and most
records touch a key that was touched a moment before.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from rocksdict import (
    AccessType,
    WriteBatch,
    BlockBasedOptions,
    Cache,
    Checkpoint,
    Options,
    Rdict,
    ReadOptions,
    WriteBufferManager,
    WriteOptions,
)

from streamflow.errors import ConfigError

__all__ = [
    "CachedDatabase", "Database", "MemoryBudget", "create_checkpoint", "make_working_directory", "open_database",
    "open_read_only", "remove_stale_directories", "scan",
]

_MIB = 1 << 20
_CHUNK = 256
MIN_BUDGET = 4 * _MIB


@dataclass(slots=True)
class MemoryBudget:
    """The block cache and write buffer manager every database of a job shares.

    ``write_buffer_ratio`` of the budget may hold memtables (they are charged to the
    cache, so the total stays within ``total`` bytes); the rest caches blocks.
    """

    total: int
    write_buffer_ratio: float = 0.5
    cache: Cache = field(init=False)
    write_buffers: WriteBufferManager = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < MIN_BUDGET:
            raise ConfigError(
                f"memory_budget must be an int of at least {MIN_BUDGET} bytes (4 MiB), got {self.total!r}; "
                "it bounds the block cache and write buffers of all RocksDB state of the job"
            )
        if not 0.1 <= self.write_buffer_ratio <= 0.9:
            raise ConfigError(f"write_buffer_ratio must be within 0.1..0.9, got {self.write_buffer_ratio!r}")
        self.cache = Cache(self.total)
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            int(self.total * self.write_buffer_ratio), True, self.cache
        )

    def write_buffer_size(self) -> int:
        """One memtable's size: small enough that a few fit in the write buffer share."""
        return max(_MIB, min(64 * _MIB, int(self.total * self.write_buffer_ratio) // 4))

    def cache_bytes(self) -> int:
        """What each subtask's :class:`CachedDatabase` may hold: 1/16 of the budget."""
        return max(256 << 10, self.total // 16)


_MISSING = object()
_DIRTY_LIMIT = 1 << 18  # writes between two write-backs (8 bytes each in the list)
_ENTRY_OVERHEAD = 100  # bytes of a cached entry beside its key and value (two bytes objects, a dict slot)


class CachedDatabase:
    """One subtask's read-write database with a bounded cache of recent entries in front.

    Point operations, the per-record work of every state handle, go through the cache:
    :meth:`get` reads RocksDB once per entry (absent ones too), later reads hit the
    cache; :meth:`put` and :meth:`delete` change the cache only and mark the entry dirty.
    :meth:`write_back` writes every dirty entry to RocksDB in one batch (also after
    ``_DIRTY_LIMIT`` writes since the last one). Everything else
    writes back first: a scan (:meth:`items`), a memtable :meth:`flush` (a native
    snapshot), and :meth:`write` and :meth:`delete_range`, which also drop the cache
    (they may change any entry). Past ``capacity`` bytes (keys, values and an estimate of
    Python's overhead) the cache is written back and emptied. Not thread-safe: used by one
    task at a time (a restore's copy runs in a thread while the task waits for it).

    Values are the encoded bytes of the database, never live objects: a value read is a
    fresh copy, as without the cache.

    :attr:`cache` (entry key -> value bytes, None for an absent entry) is public for the
    hottest reads, which look a hit up there without a call to :meth:`get`; it is never
    written to from outside, and never replaced (emptied in place), so a reference to
    it stays valid.
    """

    __slots__ = ("raw", "cache", "_dirty", "_capacity", "_bytes")

    def __init__(self, raw: Rdict, capacity: int) -> None:
        self.raw = raw
        self.cache: dict[bytes, bytes | None] = {}
        self._dirty: list[bytes] = []  # in order of writing, with repeats: an append is cheaper than a set's add
        self._capacity = capacity
        self._bytes = 0

    def get(self, key: bytes) -> bytes | None:
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            value = cast("bytes | None", self.raw.get(key))
            size = len(key) + (0 if value is None else len(value)) + _ENTRY_OVERHEAD
            if self._bytes + size > self._capacity:
                self._evict()
            self._bytes += size
            self.cache[key] = value
        return value  # type: ignore[return-value]

    def put(self, key: bytes, value: bytes | None) -> None:
        cache = self.cache
        old = cache.get(key, _MISSING)
        if old is _MISSING:
            self._bytes += len(key) + _ENTRY_OVERHEAD
        elif old is not None:
            self._bytes -= len(old)  # type: ignore[arg-type]
        if value is not None:
            self._bytes += len(value)
        cache[key] = value
        dirty = self._dirty
        dirty.append(key)
        if self._bytes > self._capacity:
            self._evict()
        elif len(dirty) > _DIRTY_LIMIT:  # a long run of writes without a checkpoint: bound the list
            self.write_back()

    def delete(self, key: bytes) -> None:
        self.put(key, None)

    def write_back(self) -> None:
        """Write every dirty entry to RocksDB, in one batch."""
        if not self._dirty:
            return
        batch = WriteBatch(raw_mode=True)
        cache = self.cache
        for key in set(self._dirty):
            value = cache[key]
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.raw.write(batch)
        self._dirty.clear()

    def _evict(self) -> None:
        self.write_back()
        self.cache.clear()
        self._bytes = 0

    def items(self, *, from_key: bytes, read_opt: ReadOptions) -> Iterator[tuple[bytes, bytes]]:
        self.write_back()
        return cast(Iterator[tuple[bytes, bytes]], self.raw.items(from_key=from_key, read_opt=read_opt))

    def write(self, batch: WriteBatch) -> None:
        self._evict()
        self.raw.write(batch)

    def delete_range(self, begin: bytes, end: bytes) -> None:
        self._evict()
        self.raw.delete_range(begin, end)

    def flush(self, wait: bool = True) -> None:
        """Write back, then flush RocksDB's memtables into SST files."""
        self.write_back()
        self.raw.flush(wait)

    def close(self) -> None:
        """Close without writing back: the state of a closed subtask is dropped."""
        self.cache.clear()
        self._dirty.clear()
        self._bytes = 0
        self.raw.close()


Database = Rdict | CachedDatabase
"""What scans read: a subtask's cached database, or a database opened read-only."""


def _options(budget: MemoryBudget) -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    table = BlockBasedOptions()
    table.set_block_cache(budget.cache)
    table.set_cache_index_and_filter_blocks(True)  # charged to the budget, not beside it
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_manager(budget.write_buffers)
    options.set_write_buffer_size(budget.write_buffer_size())
    options.set_max_write_buffer_number(2)
    options.set_max_open_files(256)
    options.set_keep_log_file_num(2)
    options.set_max_manifest_file_size(4 * _MIB)  # a native snapshot carries the MANIFEST inline: keep it small
    return options


def open_database(path: Path, budget: MemoryBudget) -> CachedDatabase:
    """Open (or create) the read-write database of one subtask at ``path``."""
    db = Rdict(str(path), _options(budget))
    write = WriteOptions()
    setattr(write, "disable_wal", True)  # a property in rocksdict 0.3.29, though its stub says a method
    db.set_write_options(write)
    return CachedDatabase(db, budget.cache_bytes())


def open_read_only(path: Path, budget: MemoryBudget) -> Rdict:
    """Open a database read-only (an old subtask's files, read by key-group range)."""
    return Rdict(str(path), _options(budget), access_type=AccessType.read_only(False))


def scan(db: Database, lower: bytes, upper: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every ``(key, value)`` in ``[lower, upper)``, read in chunks with a fresh iterator
    each: safe to write to the database between items."""
    while True:
        options = ReadOptions()
        options.set_iterate_upper_bound(upper)
        chunk: list[tuple[bytes, bytes]] = []
        for key, value in db.items(from_key=lower, read_opt=options):
            chunk.append((cast(bytes, key), value))
            if len(chunk) == _CHUNK:
                break
        yield from chunk
        if len(chunk) < _CHUNK:
            return
        lower = chunk[-1][0] + b"\x00"


def create_checkpoint(db: CachedDatabase, path: Path) -> None:
    """Write back the cache, flush the memtables and hard-link the database's live files
    into ``path`` (which must not exist): RocksDB's checkpoint. SST files are immutable,
    so the links are a consistent snapshot at no copying cost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db.flush(True)
    Checkpoint(db.raw).create_checkpoint(str(path))


_OWNER = re.compile(r".+-p([0-9]+)-[^-]+")


def make_working_directory(root: Path, name: str) -> Path:
    """A fresh directory for one subtask's database under ``root``, named with this
    process's id (so :func:`remove_stale_directories` can tell whose it is).

    Raises:
        ConfigError: ``root`` cannot be created or written.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{name}-p{os.getpid()}-", dir=root))
    except OSError as exc:
        raise ConfigError(
            f"the RocksDB working directory {str(root)!r} is not writable ({exc.strerror or exc}); pass "
            "EmbeddedRocksDBStateBackend(directory=...) a directory this process can create and write "
            "(on a local disk with room for the job's state)",
            path=str(root),
        ) from exc


def remove_stale_directories(root: Path) -> list[Path]:
    """Remove the working directories under ``root`` of processes that no longer run
    (killed jobs never close their databases); returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _OWNER.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False) or _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to judge
        return True
    return True


def check_root(root: Path) -> None:
    """Refuse, at build time, a working directory root that exists and is not writable."""
    probe = root
    while not probe.exists():
        if probe.parent == probe:
            return
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the RocksDB working directory {str(root)!r} is not writable ({str(probe)!r} is not a writable "
            "directory); pass EmbeddedRocksDBStateBackend(directory=...) a directory this process can write",
            path=str(root),
        )


def remove_directory(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / "streamflow-rocksdb"
