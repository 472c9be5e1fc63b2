"""Keyed state in an embedded RocksDB database (rocksdict), for state larger than memory.

``env.set_state_backend(EmbeddedRocksDBStateBackend())`` keeps every keyed state of the
job in one RocksDB database per keyed subtask, with incremental checkpoints; user code
does not change. See :mod:`streamflow.state.rocksdb.backend` for what differs from the
heap backend, :mod:`~streamflow.state.rocksdb.keys` for the key layout and
:mod:`~streamflow.state.rocksdb.native` for incremental checkpoints.
"""

from __future__ import annotations

from streamflow.state.rocksdb.backend import RocksDBKeyedStateBackend
from streamflow.state.rocksdb.state_backend import EmbeddedRocksDBStateBackend

__all__ = ["EmbeddedRocksDBStateBackend", "RocksDBKeyedStateBackend"]
