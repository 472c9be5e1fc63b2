"""The RocksDB :class:`~streamflow.state.backend.StateBackend`: the job-wide settings
(working directory root, memory budget, TTL sweep, incremental checkpoints) and the
factory of each keyed subtask's :class:`~streamflow.state.rocksdb.backend.RocksDBKeyedStateBackend`.
"""

from __future__ import annotations

from pathlib import Path

from streamflow.errors import ConfigError
from streamflow.core.clock import Clock
from streamflow.state.rocksdb import db as rdb
from streamflow.state.rocksdb.backend import RocksDBKeyedStateBackend

__all__ = ["EmbeddedRocksDBStateBackend"]


class EmbeddedRocksDBStateBackend:
    """A :class:`~streamflow.state.backend.StateBackend` keeping keyed state in RocksDB.

    Args:
        directory: root of the subtasks' working directories (default: a
            ``streamflow-rocksdb`` folder in the system's temp directory); each subtask's
            directory is removed when it closes, and those of processes that died
            (killed jobs) when the next job here starts. Use a local disk.
        incremental: checkpoints write only the RocksDB files not already in checkpoint
            storage (native snapshots); False writes the full canonical snapshot every
            time. Savepoints are always canonical.
        memory_budget: bytes of memory all RocksDB state of the job may use for block
            cache and write buffers together (default 256 MiB); each subtask also caches
            its recently used entries, up to 1/16 of it.
        ttl_sweep_every: every so many records a subtask sweeps its TTL states ...
        ttl_sweep_entries: ... checking this many entries, removing expired ones.

    Raises:
        ConfigError: a setting is out of range, or ``directory`` is not writable.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        incremental: bool = True,
        memory_budget: int = 256 << 20,
        ttl_sweep_every: int = 10_000,
        ttl_sweep_entries: int = 1_000,
    ) -> None:
        if not isinstance(incremental, bool):
            raise ConfigError(f"incremental must be True or False, got {incremental!r}")
        for name, value in (("ttl_sweep_every", ttl_sweep_every), ("ttl_sweep_entries", ttl_sweep_entries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"EmbeddedRocksDBStateBackend {name} must be an int >= 1, got {value!r}")
        self.root = rdb.default_root() if directory is None else Path(directory)
        rdb.check_root(self.root)
        self.incremental = incremental
        self.budget = rdb.MemoryBudget(memory_budget)
        self.ttl_sweep_every = ttl_sweep_every
        self.ttl_sweep_entries = ttl_sweep_entries
        self._swept = False

    def create_keyed_backend(
        self, *, operator_uid: str, subtask_index: int, max_parallelism: int, key_group_range: range, clock: Clock
    ) -> RocksDBKeyedStateBackend:
        """A fresh, empty backend for one keyed subtask, in a new working directory.

        Raises:
            ConfigError: the working directory cannot be created or written.
        """
        if not self._swept:  # once per job: directories of killed processes go
            self._swept = True
            rdb.remove_stale_directories(self.root)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in operator_uid)[:60]
        directory = rdb.make_working_directory(self.root, f"{name}-{subtask_index}")
        try:
            return RocksDBKeyedStateBackend(
                operator_uid=operator_uid, subtask_index=subtask_index, max_parallelism=max_parallelism,
                key_group_range=key_group_range, clock=clock, directory=directory, budget=self.budget,
                ttl_sweep_every=self.ttl_sweep_every, ttl_sweep_entries=self.ttl_sweep_entries,
                incremental=self.incremental,
            )  # fmt: skip
        except BaseException:
            rdb.remove_directory(directory)
            raise

    def __repr__(self) -> str:
        return (
            f"EmbeddedRocksDBStateBackend({str(self.root)!r}, incremental={self.incremental}, "
            f"memory_budget={self.budget.total})"
        )
