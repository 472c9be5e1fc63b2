"""Keyed state in an embedded RocksDB database (rocksdict), for state larger than memory.

``env.set_state_backend(EmbeddedRocksDBStateBackend())`` keeps every keyed state of the
job in one RocksDB database per keyed subtask, with incremental checkpoints; user code
does not change. See :mod:`streamflow.state.rocksdb.backend`.
"""

from __future__ import annotations

from streamflow.state.rocksdb.backend import EmbeddedRocksDBStateBackend, RocksDBKeyedStateBackend

__all__ = ["EmbeddedRocksDBStateBackend", "RocksDBKeyedStateBackend"]
