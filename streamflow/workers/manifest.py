"""What the workers of one job agree on, kept in their shared checkpoint root.

Each worker checkpoints on its own into ``<root>/worker-<i>/``. The root also holds
``workers.json``, written by the first worker to start and compared by every other, so
that a misconfigured worker is refused at start-up with a message that says what to
change, before it reads or writes anything:

- a checkpoint root that belongs to another job;
- a number of workers, exchange partition count or max parallelism other than the job's;
- a job graph that differs from the other workers' (see :mod:`.fingerprint`);
- two processes with the same worker index: each worker holds an exclusive lock on
  ``<root>/worker-<i>.lock`` (``flock``) while it runs. The lock goes with the process,
  however it ends, so a worker killed and started again finds it free.

The first worker also records whether the job's graph is cut at exchanges (``exchanged``:
several workers, or one that restored a savepoint set of several and must read what
their exchange topics hold); a worker started again on the same root follows it, even
if it was not told again where it was restored from. It also draws the job's ``generation``: exchange readers that start
without restored offsets skip records of other generations (an earlier deployment of
the same job left them in the topic). A new root means a new generation: changing the
number of workers goes through a savepoint set and a new root.

Two workers that start at the same moment both try to create the file; the creation is
atomic (written to a temporary file, fsynced, then hard-linked to its name, which fails
if the name exists), so exactly one wins and the other compares itself with the winner.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from streamflow.errors import ConfigError

__all__ = ["MANIFEST_FILE", "WorkerLock", "WorkerManifest", "register_worker", "worker_directory"]

MANIFEST_FILE = "workers.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerManifest:
    """The job-wide settings every worker of a job must share."""

    job_name: str
    workers: int
    exchange_partitions: int
    max_parallelism: int
    fingerprint: str
    outline: tuple[str, ...] = ()
    exchanged: bool = False
    generation: str = field(default_factory=lambda: secrets.token_hex(8))
    created_at: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        data = asdict(self)
        data["outline"] = list(self.outline)
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> WorkerManifest:
        try:
            data: Any = json.loads(raw)
            version = data.get("format_version") if isinstance(data, dict) else None
        except ValueError as exc:
            raise ConfigError(f"{str(path)!r} is not a workers manifest (invalid JSON: {exc})") from exc
        if version != FORMAT_VERSION:
            raise ConfigError(
                f"{str(path)!r} has format_version {version!r}; this streamflow reads {FORMAT_VERSION}: run the "
                "version that wrote it, or give the job a new checkpoint root",
                path=str(path),
            )
        try:
            return cls(
                job_name=str(data["job_name"]), workers=int(data["workers"]),
                exchange_partitions=int(data["exchange_partitions"]), max_parallelism=int(data["max_parallelism"]),
                fingerprint=str(data["fingerprint"]), outline=tuple(str(line) for line in data.get("outline", ())),
                exchanged=bool(data["exchanged"]), generation=str(data["generation"]), created_at=float(data["created_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{str(path)!r} misses or mistypes a field of a workers manifest: {exc!r}") from exc


def worker_directory(root: Path, index: int) -> Path:
    """Where worker ``index`` keeps its checkpoints."""
    return root / f"worker-{index}"


def register_worker(root: Path, proposal: WorkerManifest, *, index: int) -> WorkerManifest:
    """The manifest in force for the job in ``root``: ``proposal`` if this worker is the
    first, else the existing one after checking that ``proposal`` agrees with it.

    Blocking file I/O: call it in a thread from a running loop.

    Raises:
        ConfigError: ``proposal`` disagrees with the job's manifest (the message says
            what to change), or the file is not a manifest this version reads.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / MANIFEST_FILE
    if not path.exists():
        tmp = root / f".{MANIFEST_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        with open(tmp, "wb") as out:
            out.write(proposal.to_json())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
            _fsync_dir(root)
            return proposal
        except FileExistsError:
            pass  # another worker was first: compare with it below
        finally:
            tmp.unlink()
    existing = WorkerManifest.from_json(path.read_bytes(), path)
    _compare(existing, proposal, path, index)
    return existing


def _compare(existing: WorkerManifest, proposal: WorkerManifest, path: Path, index: int) -> None:
    me = f"worker {index} of job {proposal.job_name!r}"
    written = f"{str(path)!r} (written by the job's first worker)"
    if existing.job_name != proposal.job_name:
        raise ConfigError(
            f"{me}: the checkpoint root {str(path.parent)!r} belongs to job {existing.job_name!r}: give this job a "
            f"checkpoint directory of its own (--checkpoint-dir), or, if it is that job, run it under its name "
            f"(--job-name {existing.job_name})",
            path=str(path),
        )
    change_workers = (
        "; to change the number of workers, stop the job with a savepoint (streamflow stop JOB) and start the "
        "new workers from it with a new checkpoint directory"
    )
    for what, mine, theirs, advice in (
        ("workers", proposal.workers, existing.workers, f"start every worker with --workers {existing.workers}"
         + change_workers),
        ("exchange partitions", proposal.exchange_partitions, existing.exchange_partitions,
         f"run every worker with {existing.exchange_partitions} exchange partitions (fixed for the job's life)"),
        ("max_parallelism", proposal.max_parallelism, existing.max_parallelism,
         f"run every worker with --max-parallelism {existing.max_parallelism}"),
    ):
        if mine != theirs:
            raise ConfigError(f"{me} runs with {what} {mine}, the job with {theirs} ({written}): {advice}", path=str(path))
    if existing.fingerprint != proposal.fingerprint:
        raise ConfigError(
            f"{me} runs another job graph than the job's other workers ({written}): "
            f"{_first_difference(existing.outline, proposal.outline)}. Every worker must run the same program "
            "with the same settings (parallelism, uids, max parallelism): deploy one version to all of them",
            path=str(path),
        )


def _first_difference(theirs: tuple[str, ...], mine: tuple[str, ...]) -> str:
    for position, (a, b) in enumerate(zip(theirs, mine)):
        if a != b:
            return f"at line {position + 1} of the graph outline the job has {a!r}, this worker {b!r}"
    if len(theirs) != len(mine):
        longer, extra = ("the job", theirs[len(mine)]) if len(theirs) > len(mine) else ("this worker", mine[len(theirs)])
        return f"{longer} has more: {extra!r}"
    return "the outlines agree but the fingerprints differ (a manifest edited by hand?)"


class WorkerLock:
    """Holds worker ``index``'s place in ``root`` for as long as the process runs it.

    ``acquire`` raises ConfigError naming the holder (pid, host, since when) if another
    live process holds it; ``release`` gives it up (process exit does too). Also a
    context manager.
    """

    def __init__(self, root: Path, index: int) -> None:
        self.path = root / f"worker-{index}.lock"
        self.index = index
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Blocking file I/O; call it in a thread from a running loop."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"worker {self.index} is already running ({holder}; lock {str(self.path)!r}): two processes were "
                f"given --worker-index {self.index}. Give each worker process its own index, or stop the other one "
                "first",
                path=str(self.path),
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> WorkerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
