"""Savepoint sets: one savepoint per worker, taken by one stop, restored by any number
of workers.

A set is a directory::

    savepoint-set-<job>-<hex>/
        worker-0/savepoint-<job>-<n>-<hex>/     worker 0's savepoint (self-contained)
        worker-1/savepoint-<job>-<m>-<hex>/
        ...
        _savepoint_set.json                     written last: the set is complete

The workers checkpoint independently, so their savepoints have their own checkpoint
ids; together they are one consistent state of the job because records between workers
live in the exchange topics: what a writer committed and its readers had not read at
their savepoint is still in the topic, after the readers' saved offsets. The manifest is
written only once every worker's stop with savepoint returned, which includes its sinks'
commits: a set never names a transaction that is still open.

Starting M workers from a set written by N (:func:`plan_worker_restore`, pure): each
new worker reads, per operator uid, the old subtasks' snapshots it needs, indexed by old
*global* subtask ``i * p + j`` (so the existing restore code, given global indices and
parallelism, redistributes as it does within one process):

- keyed state moves by key group: a new worker reads the old subtasks whose key groups
  meet its own (old ranges from the old layout: exchange partitions with several
  workers, Flink's split with one);
- operator list state, source splits (Kafka and exchange offsets, which each reader
  then filters by the partitions it owns now) and sink transactions: every old subtask;
- broadcast: every old worker read the broadcast exchange at its own pace, so a new
  worker takes the broadcast exchange offsets and the broadcast state of one old worker,
  ``w % N``, both from the same one (they agree with each other only within a worker).
"""

from __future__ import annotations

import enum
import json
import os
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamflow.api.functions import is_checkpointed_function
from streamflow.errors import ConfigError, StateError
from streamflow.graph.spec import JobGraph, OperatorKind
from streamflow.partitioning.keygroups import key_group_range
from streamflow.partitioning.workers import check_exchange_partitions, subtask_key_groups

__all__ = [
    "SET_MANIFEST_FILE",
    "OldSubtask",
    "OperatorRestore",
    "RestoreNeed",
    "SavepointSetManifest",
    "SetLayout",
    "WorkerRestorePlan",
    "plan_worker_restore",
    "read_set_manifest",
    "restore_needs",
    "set_directory_name",
    "write_set_manifest",
]

SET_MANIFEST_FILE = "_savepoint_set.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SavepointSetManifest:
    """The complete set: the job's settings when it was taken and each worker's savepoint.

    ``savepoints[i]`` is worker i's savepoint directory, relative to the set directory.
    ``parallelism`` is each stateful operator uid's local parallelism (per worker).
    ``exchanged``: the workers' keyed operators were fed by exchange topics (several
    workers, or one that kept the exchanges of a set it was restored from).
    """

    job_name: str
    workers: int
    exchange_partitions: int
    max_parallelism: int
    fingerprint: str
    generation: str
    savepoints: tuple[str, ...]
    parallelism: Mapping[str, int]
    exchanged: bool
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len(self.savepoints) != self.workers:
            raise ConfigError(
                f"a savepoint set of {self.workers} workers needs {self.workers} savepoints, got {len(self.savepoints)}"
            )
        for path in self.savepoints:
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise ConfigError(f"savepoint set entries are paths inside the set, got {path!r}")

    @property
    def layout(self) -> SetLayout:
        return SetLayout(
            workers=self.workers, exchange_partitions=self.exchange_partitions,
            max_parallelism=self.max_parallelism, parallelism=self.parallelism, exchanged=self.exchanged,
        )

    def to_json(self) -> bytes:
        return json.dumps({
            "format_version": self.format_version, "job_name": self.job_name, "workers": self.workers,
            "exchange_partitions": self.exchange_partitions, "max_parallelism": self.max_parallelism,
            "fingerprint": self.fingerprint, "generation": self.generation, "savepoints": list(self.savepoints),
            "parallelism": dict(sorted(self.parallelism.items())), "exchanged": self.exchanged,
        }, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> SavepointSetManifest:
        try:
            data: Any = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"{str(path)!r} is not a savepoint set manifest: {exc}", path=str(path)) from exc
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise StateError(
                f"savepoint set {str(path.parent)!r} has format_version {version!r}; this streamflow reads "
                f"{FORMAT_VERSION}: restore it with the version that wrote it",
                path=str(path),
            )
        try:
            return cls(
                job_name=str(data["job_name"]), workers=int(data["workers"]),
                exchange_partitions=int(data["exchange_partitions"]), max_parallelism=int(data["max_parallelism"]),
                fingerprint=str(data["fingerprint"]), generation=str(data["generation"]),
                savepoints=tuple(str(p) for p in data["savepoints"]),
                parallelism={str(uid): int(p) for uid, p in data["parallelism"].items()},
                exchanged=bool(data["exchanged"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"{str(path)!r} misses or mistypes a field of a savepoint set: {exc!r}") from exc


def set_directory_name(job_name: str) -> str:
    """A new set's directory name, as savepoints are named (``savepoint-set-<job>-<hex>``)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in job_name)
    return f"savepoint-set-{safe}-{secrets.token_hex(3)}"


def write_set_manifest(directory: Path, manifest: SavepointSetManifest) -> Path:
    """Complete the set in ``directory`` (atomically: temp file, fsync, rename). Every
    savepoint it names must be there. Blocking file I/O."""
    for entry in manifest.savepoints:
        if not (directory / entry).is_dir():
            raise StateError(f"savepoint set {str(directory)!r}: worker savepoint {entry!r} is missing",
                             path=str(directory))
    final = directory / SET_MANIFEST_FILE
    tmp = directory / f".{SET_MANIFEST_FILE}.{secrets.token_hex(4)}"
    with open(tmp, "wb") as out:
        out.write(manifest.to_json())
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def read_set_manifest(directory: Path) -> SavepointSetManifest | None:
    """The set's manifest, or None if ``directory`` is not a complete savepoint set."""
    path = directory / SET_MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return SavepointSetManifest.from_json(raw, path)


# -- restore planning -------------------------------------------------------------------


class RestoreNeed(enum.Enum):
    """Which old snapshots of an operator a new worker must read."""

    KEYED = "keyed"
    """Keyed state and timers only: the old subtasks whose key groups meet the worker's."""
    ALL = "all"
    """Operator or split state that is redistributed over all new subtasks: every old one."""
    BROADCAST_READER = "broadcast reader"
    """A broadcast exchange's reader: the offsets of one old worker, ``w % N``."""
    BROADCAST_STATE = "broadcast state"
    """A broadcast operator: every old subtask (keyed, operator state), but broadcast
    state only from old worker ``w % N``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLayout:
    """How a job was (or will be) spread: workers, exchanges, local parallelism per uid.

    ``exchanged``: keyed operators are fed by exchange topics (several workers, or one
    worker that keeps the exchanges of a set it was restored from); their key groups then
    follow the exchange partitions, else Flink's split over the subtasks.
    """

    workers: int
    exchange_partitions: int
    max_parallelism: int
    parallelism: Mapping[str, int]
    exchanged: bool

    def key_groups(self, uid: str, global_subtask: int) -> range:
        parallelism = self.workers * self.parallelism[uid]
        if self.exchanged:
            return subtask_key_groups(self.max_parallelism, self.exchange_partitions, parallelism, global_subtask)
        return key_group_range(self.max_parallelism, parallelism, global_subtask)

    def worker_key_groups(self, uid: str, worker: int) -> range:
        local = self.parallelism[uid]
        first = self.key_groups(uid, worker * local)
        last = self.key_groups(uid, worker * local + local - 1)
        return range(first.start, last.stop)


@dataclass(frozen=True, slots=True)
class OldSubtask:
    """Subtask ``local`` of old worker ``worker``: global subtask ``global_index``."""

    worker: int
    local: int
    global_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorRestore:
    """What a new worker restores of one operator uid.

    ``reads`` are the old snapshots to read; the restore lays them out at their
    ``global_index`` in a list of ``old_parallelism`` entries (``{}`` for the others).
    ``broadcast_from_worker``: broadcast state (and a broadcast reader's offsets) come
    from this old worker only.
    """

    uid: str
    old_parallelism: int
    reads: tuple[OldSubtask, ...]
    broadcast_from_worker: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRestorePlan:
    worker: int
    operators: Mapping[str, OperatorRestore]

    @property
    def files(self) -> int:
        """How many old snapshots the worker reads in all."""
        return sum(len(op.reads) for op in self.operators.values())


def restore_needs(graph: JobGraph, broadcast_readers: Collection[str]) -> dict[str, RestoreNeed]:
    """What each stateful operator of ``graph`` (a worker's graph, exchanges included)
    keeps; ``broadcast_readers`` are the uids of its broadcast exchange readers. An
    operator keeps only keyed state when it is keyed and neither a source, a sink, a
    broadcast operator nor a CheckpointedFunction; anything else is read in full."""
    needs: dict[str, RestoreNeed] = {}
    for node in graph.nodes:
        if not node.holds_state:
            continue
        uid = node.effective_uid
        if uid in broadcast_readers:
            needs[uid] = RestoreNeed.BROADCAST_READER
        elif node.kind is OperatorKind.BROADCAST_PROCESS:
            needs[uid] = RestoreNeed.BROADCAST_STATE
        elif (
            node.key_selector is not None
            and node.kind not in (OperatorKind.SOURCE, OperatorKind.SINK)
            and not is_checkpointed_function(node.function)
        ):
            needs[uid] = RestoreNeed.KEYED
        else:
            needs[uid] = RestoreNeed.ALL
    return needs


def plan_worker_restore(
    old: SetLayout, new: SetLayout, worker: int, needs: Mapping[str, RestoreNeed]
) -> WorkerRestorePlan:
    """What new ``worker`` (of ``new.workers``) reads of the set taken in layout ``old``.

    ``needs`` names every stateful operator uid of the new job and what it keeps
    (:class:`RestoreNeed`); uids the old layout has no state for start fresh and are left
    out of the plan.

    Raises:
        ConfigError: the new layout cannot take the set's state (another max
            parallelism or exchange partition count, more workers than partitions).
    """
    if not 0 <= worker < new.workers:
        raise ConfigError(f"worker {worker} is not one of the {new.workers} new workers")
    if new.max_parallelism != old.max_parallelism:
        raise ConfigError(
            f"the savepoint set holds keyed state in {old.max_parallelism} key groups; run the new workers with "
            f"--max-parallelism {old.max_parallelism}"
        )
    if new.exchanged:
        check_exchange_partitions(new.exchange_partitions, new.max_parallelism, new.workers)
        if old.exchanged and new.exchange_partitions != old.exchange_partitions:
            raise ConfigError(
                f"the savepoint set's exchange topics have {old.exchange_partitions} partitions, fixed for the "
                f"job's life; run the new workers with {old.exchange_partitions} exchange partitions"
            )
    elif old.exchanged:
        raise ConfigError(
            f"the savepoint set was taken by {old.workers} workers, whose exchange topics may still hold records "
            "the workers had not read; start the job as workers from it (--workers M, M >= 1) so that they are read"
        )
    broadcast_source = worker % old.workers
    plan: dict[str, OperatorRestore] = {}
    for uid, need in sorted(needs.items()):
        if uid not in old.parallelism:
            continue
        old_local = old.parallelism[uid]
        everyone = [
            OldSubtask(w, j, w * old_local + j) for w in range(old.workers) for j in range(old_local)
        ]
        broadcast_from = None
        if need is RestoreNeed.KEYED:
            if uid not in new.parallelism:
                raise ConfigError(f"operator {uid!r} needs its new parallelism to plan its restore")
            mine = new.worker_key_groups(uid, worker)
            reads = [s for s in everyone if _meets(old.key_groups(uid, s.global_index), mine)]
        elif need is RestoreNeed.BROADCAST_READER:
            reads = [s for s in everyone if s.worker == broadcast_source]
            broadcast_from = broadcast_source
        else:
            reads = everyone
            broadcast_from = broadcast_source if need is RestoreNeed.BROADCAST_STATE else None
        plan[uid] = OperatorRestore(
            uid=uid, old_parallelism=len(everyone), reads=tuple(reads), broadcast_from_worker=broadcast_from
        )
    return WorkerRestorePlan(worker=worker, operators=plan)


def _meets(a: range, b: range) -> bool:
    return max(a.start, b.start) < min(a.stop, b.stop)
