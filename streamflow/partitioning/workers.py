"""Where each worker stands in a job of several worker processes, and which exchange
partitions and key groups it owns.

A job of ``workers`` processes runs the same graph in every worker; an operator with
local parallelism ``p`` has ``workers * p`` subtasks in all, and local subtask ``j`` of
worker ``i`` is global subtask ``i * p + j``. Sources and sinks see the global index and
parallelism, so everything that splits work by subtask (Kafka partition ownership, file
splits, transactional ids) splits it across workers unchanged.

Records that change worker travel through exchange topics of ``partitions`` (E)
partitions, fixed for the job's life. Every split below is the same contiguous split
Flink uses for key groups (:func:`~streamflow.partitioning.keygroups.key_group_range`),
applied level by level:

- partition ``e`` holds key groups ``key_group_range(max_parallelism, E, e)``;
- reader subtask ``g`` of ``G`` (global) reads partitions ``key_group_range(E, G, g)``;
- so worker ``w`` of ``M`` reads partitions ``key_group_range(E, M, w)`` whatever its
  local parallelism, and a keyed subtask owns the key groups of the partitions it reads
  (a contiguous range: what keyed state and the RocksDB backend's range scans need).

Rescaling moves whole partitions, hence whole key groups. A worker needs at least one
partition (``M <= E``); a partition needs at least one key group (``E <=
max_parallelism``). With ``G > E`` some subtasks read no partition and idle.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamflow.errors import ConfigError
from streamflow.partitioning.keygroups import key_group_range, subtask_for_key_group, subtask_table

__all__ = [
    "ONE_PROCESS",
    "WorkerLayout",
    "check_exchange_partitions",
    "partition_key_groups",
    "partition_of_key_group",
    "partition_table",
    "reader_partitions",
    "subtask_key_groups",
    "worker_key_groups",
    "worker_partitions",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerLayout:
    """Worker ``index`` of ``workers``; ``workers == 1`` is a plain one-process job.

    ``exchange_partitions``: the partition count E of the job's exchanges when its keyed
    operators are fed by exchange topics (the graph was cut for several workers); their
    key groups then follow the partitions their exchange readers own. ``None``: keyed
    operators own Flink's contiguous split of the key groups over their subtasks.
    """

    workers: int
    index: int
    exchange_partitions: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"the number of workers must be an int >= 1 (--workers N), got {self.workers!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index < self.workers:
            raise ConfigError(
                f"worker index {self.index!r} is not one of the {self.workers} workers: give each worker "
                f"process its own --worker-index from 0 to {self.workers - 1}"
            )
        partitions = self.exchange_partitions
        if partitions is not None and (isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1):
            raise ConfigError(f"the exchange partition count must be an int >= 1, got {partitions!r}")

    @property
    def is_distributed(self) -> bool:
        return self.workers > 1

    def global_subtask(self, local_subtask: int, local_parallelism: int) -> int:
        """The job-wide index of this worker's ``local_subtask``."""
        if not 0 <= local_subtask < local_parallelism:
            raise ValueError(f"local subtask {local_subtask} is not in 0..{local_parallelism - 1}")
        return self.index * local_parallelism + local_subtask

    def global_parallelism(self, local_parallelism: int) -> int:
        """How many subtasks an operator of ``local_parallelism`` per worker has in all."""
        return self.workers * local_parallelism

    def worker_of(self, global_subtask: int, local_parallelism: int) -> int:
        """The worker that runs ``global_subtask`` (the inverse of :meth:`global_subtask`)."""
        return global_subtask // local_parallelism

    def key_groups(self, max_parallelism: int, local_subtask: int, local_parallelism: int) -> range:
        """The key groups this worker's keyed ``local_subtask`` owns (see the class docstring)."""
        subtask = self.global_subtask(local_subtask, local_parallelism)
        parallelism = self.global_parallelism(local_parallelism)
        if self.exchange_partitions is None:
            return key_group_range(max_parallelism, parallelism, subtask)
        return subtask_key_groups(max_parallelism, self.exchange_partitions, parallelism, subtask)


ONE_PROCESS = WorkerLayout(workers=1, index=0)
"""The layout of a job that is not split into workers: local and global indices agree."""


def check_exchange_partitions(partitions: int, max_parallelism: int, workers: int) -> None:
    """Refuse exchange partition counts the key-group scheme cannot serve, saying what to change."""
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigError(f"the exchange partition count must be an int >= 1, got {partitions!r}")
    if partitions > max_parallelism:
        raise ConfigError(
            f"{partitions} exchange partitions exceed max_parallelism {max_parallelism}: a partition holds whole "
            f"key groups, so some would hold none; use at most {max_parallelism} exchange partitions (or raise "
            "max_parallelism, which only a new job without keyed state may do)"
        )
    if workers > partitions:
        raise ConfigError(
            f"{workers} workers but only {partitions} exchange partitions: each worker reads whole partitions, so "
            f"at most {partitions} workers can share the work; run at most {partitions} workers (the partition "
            "count is fixed for the job's life: it is the ceiling of rescaling)"
        )


def partition_key_groups(max_parallelism: int, partitions: int, partition: int) -> range:
    """The key groups exchange ``partition`` (of ``partitions``) holds."""
    return key_group_range(max_parallelism, partitions, partition)


def partition_of_key_group(key_group: int, max_parallelism: int, partitions: int) -> int:
    """The exchange partition that holds ``key_group``."""
    return subtask_for_key_group(key_group, max_parallelism, partitions)


def partition_table(max_parallelism: int, partitions: int) -> list[int]:
    """``table[key_group]`` is its exchange partition: one list index per record."""
    return subtask_table(max_parallelism, partitions)


def reader_partitions(partitions: int, parallelism: int, subtask: int) -> range:
    """The exchange partitions global reader ``subtask`` (of ``parallelism``) reads."""
    return key_group_range(partitions, parallelism, subtask)


def worker_partitions(partitions: int, workers: int, worker: int) -> range:
    """The exchange partitions ``worker`` (of ``workers``) reads, over all its subtasks."""
    return key_group_range(partitions, workers, worker)


def subtask_key_groups(max_parallelism: int, partitions: int, parallelism: int, subtask: int) -> range:
    """The key groups of global keyed ``subtask`` (of ``parallelism``) fed by exchanges:
    those of the partitions it reads. Empty (at the right place) when it reads none."""
    owned = reader_partitions(partitions, parallelism, subtask)
    return range(_boundary(max_parallelism, partitions, owned.start), _boundary(max_parallelism, partitions, owned.stop))


def worker_key_groups(max_parallelism: int, partitions: int, workers: int, worker: int) -> range:
    """The key groups ``worker`` (of ``workers``) owns: the union of its subtasks' ranges."""
    return subtask_key_groups(max_parallelism, partitions, workers, worker)


def _boundary(max_parallelism: int, partitions: int, partition: int) -> int:
    """The first key group of ``partition``; ``max_parallelism`` for ``partition == partitions``."""
    return key_group_range(max_parallelism, partitions, partition).start
