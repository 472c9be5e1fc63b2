"""The cache in front of a subtask's RocksDB database (CachedDatabase): reads see the
writes before and after they reach RocksDB, scans and snapshots see every write, batch
writes and range deletes leave nothing stale, and it stays within its bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rocksdict import WriteBatch

from streamflow.state.rocksdb import db as rdb


@pytest.fixture
def database(tmp_path: Path) -> Iterator[rdb.CachedDatabase]:
    db = rdb.open_database(tmp_path / "db", rdb.MemoryBudget(rdb.MIN_BUDGET))
    yield db
    db.close()


def on_disk(db: rdb.CachedDatabase, key: bytes) -> bytes | None:
    value: bytes | None = db.raw.get(key)
    return value


def test_writes_stay_in_the_cache_until_written_back_and_reads_see_them(database: rdb.CachedDatabase) -> None:
    database.put(b"a", b"1")
    database.put(b"b", b"2")
    database.delete(b"b")
    assert (database.get(b"a"), database.get(b"b"), database.get(b"c")) == (b"1", None, None)
    assert on_disk(database, b"a") is None  # not yet in RocksDB
    database.write_back()
    assert (on_disk(database, b"a"), on_disk(database, b"b")) == (b"1", None)
    database.raw.put(b"c", b"3")  # behind the cache's back: a cached absence stays (only this class writes)
    assert database.get(b"c") is None


def test_a_scan_and_a_snapshot_see_every_write(database: rdb.CachedDatabase, tmp_path: Path) -> None:
    database.put(b"k1", b"v1")
    database.put(b"k2", b"v2")
    assert list(rdb.scan(database, b"k", b"l")) == [(b"k1", b"v1"), (b"k2", b"v2")]
    database.put(b"k3", b"v3")
    rdb.create_checkpoint(database, tmp_path / "checkpoint")
    copy = rdb.open_read_only(tmp_path / "checkpoint", rdb.MemoryBudget(rdb.MIN_BUDGET))
    try:
        assert list(rdb.scan(copy, b"k", b"l")) == [(b"k1", b"v1"), (b"k2", b"v2"), (b"k3", b"v3")]
    finally:
        copy.close()


def test_batch_writes_and_range_deletes_leave_no_stale_entry(database: rdb.CachedDatabase) -> None:
    database.put(b"a", b"old")
    assert database.get(b"a") == b"old"
    batch = WriteBatch(raw_mode=True)
    batch.put(b"a", b"new")
    database.write(batch)
    assert database.get(b"a") == b"new"
    database.put(b"b", b"x")
    database.delete_range(b"a", b"c")
    assert (database.get(b"a"), database.get(b"b")) == (None, None)


def test_the_cache_stays_within_its_bytes(tmp_path: Path) -> None:
    db = rdb.CachedDatabase(rdb.open_database(tmp_path / "db", rdb.MemoryBudget(rdb.MIN_BUDGET)).raw, 10_000)
    try:
        for n in range(1_000):
            db.put(n.to_bytes(4, "big"), b"v" * 100)
            assert db._bytes <= 10_000  # noqa: SLF001 - the bound is the point
        assert all(db.get(n.to_bytes(4, "big")) == b"v" * 100 for n in range(1_000))  # evicted ones were written
        assert on_disk(db, (0).to_bytes(4, "big")) == b"v" * 100
    finally:
        db.close()


def test_many_writes_without_a_checkpoint_are_written_back_with_their_last_values(
    database: rdb.CachedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dirty entries are a list with repeats (cheap to append to): past its limit it
    is written back, each entry once with its newest value, so it never grows unbounded."""
    monkeypatch.setattr(rdb, "_DIRTY_LIMIT", 8)
    for round_ in range(3):
        for key in (b"a", b"b", b"c"):
            database.put(key, b"%d" % round_)
    assert on_disk(database, b"a") == b"2"  # 9 writes > 8: written back at the ninth
    database.delete(b"b")
    for n in range(8):
        database.put(b"c", b"late-%d" % n)
    assert (on_disk(database, b"b"), on_disk(database, b"c")) == (None, b"late-7")
    assert len(database._dirty) <= 8  # noqa: SLF001 - the bound is the point
