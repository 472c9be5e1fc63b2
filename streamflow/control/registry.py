"""The registry of running jobs on this machine, so the command line can find them.

Each job process that serves a control socket (``streamflow run`` does) registers one
small JSON file, ``<home>/jobs/<job id>.json``, naming its job, process id and socket;
it removes the file when it ends. ``<home>`` is, in order: ``$STREAMFLOW_HOME``;
``$XDG_RUNTIME_DIR/streamflow`` (a per-user directory the system empties at logout);
``~/.streamflow``. The directory is private to the user (mode 0700): whoever can reach a
job's socket can stop it.

A worker of a job on several processes registers like any job, and its entry also says
which worker it is (:class:`WorkerRef`): the command line finds every worker of a job
by the job's name or any worker's id, and addresses them together
(:mod:`streamflow.control.workers`).

A process killed with SIGKILL cannot remove its entry. Such stale entries are recognised
by their process id being gone, removed, and never shown; a command that finds the
socket dead also removes the entry (the process id may have been reused).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamflow.errors import ConfigError

__all__ = ["HOME_ENV", "JobEntry", "JobRegistry", "WorkerRef", "streamflow_home"]

HOME_ENV = "STREAMFLOW_HOME"
_SOCKET_PATH_LIMIT = 100  # sun_path holds 104-108 bytes depending on the OS
_ID = re.compile(r"[A-Za-z0-9_.-]+")


def streamflow_home() -> Path:
    """Where streamflow keeps per-user runtime files (see the module docstring)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "streamflow"
    return Path.home() / ".streamflow"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRef:
    """Which worker of a job on several processes an entry is: worker ``index`` of
    ``workers``, of the deployment ``group`` (the job's generation: every worker of one
    deployment has the same)."""

    group: str
    workers: int
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "workers": self.workers, "index": self.index}

    @classmethod
    def from_dict(cls, data: Any) -> WorkerRef:
        """Raises ValueError on anything that is not a well-formed worker reference."""
        if not isinstance(data, dict):
            raise ValueError(f"a worker reference is a JSON object, got {data!r}")
        group, workers, index = data.get("group"), data.get("workers"), data.get("index")
        if not isinstance(group, str) or not _ID.fullmatch(group):
            raise ValueError(f"bad worker group in {data!r}")
        for value in (workers, index):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"bad worker count or index in {data!r}")
        assert isinstance(workers, int) and isinstance(index, int)
        if not index < workers:
            raise ValueError(f"worker index beyond the worker count in {data!r}")
        return cls(group=group, workers=workers, index=index)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEntry:
    """One registered job: what ``streamflow list`` shows and how to reach the job.

    Attributes:
        job_id: ``<job name>-<8 hex digits>``, unique per run.
        name: the job name.
        pid: the process serving the job.
        socket: path of its control socket (Unix domain).
        started_at: wall-clock seconds when it registered.
        web_url: its dashboard's address, if it serves one.
        metrics_url: its Prometheus endpoint's address, if it serves one.
        worker: which worker of a job on several processes it is (None: one process).
    """

    job_id: str
    name: str
    pid: int
    socket: str
    started_at: float
    web_url: str | None = None
    metrics_url: str | None = None
    worker: WorkerRef | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "name": self.name,
            "pid": self.pid,
            "socket": self.socket,
            "started_at": self.started_at,
            "web_url": self.web_url,
            "metrics_url": self.metrics_url,
        }
        if self.worker is not None:
            data["worker"] = self.worker.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> JobEntry:
        """Raises ValueError on anything that is not a well-formed entry."""
        if not isinstance(data, dict):
            raise ValueError(f"a job entry is a JSON object, got {type(data).__name__}")
        job_id, name, pid, socket, started = (
            data.get("job_id"), data.get("name"), data.get("pid"), data.get("socket"), data.get("started_at"),
        )
        if not isinstance(job_id, str) or not _ID.fullmatch(job_id) or not isinstance(name, str):
            raise ValueError(f"bad job id or name in {data!r}")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not isinstance(socket, str):
            raise ValueError(f"bad pid or socket in {data!r}")
        if isinstance(started, bool) or not isinstance(started, (int, float)):
            raise ValueError(f"bad started_at in {data!r}")
        urls = {key: data.get(key) for key in ("web_url", "metrics_url")}
        if any(url is not None and not isinstance(url, str) for url in urls.values()):
            raise ValueError(f"bad web_url or metrics_url in {data!r}")
        worker = data.get("worker")
        return cls(
            job_id=job_id, name=name, pid=pid, socket=socket, started_at=float(started), **urls,
            worker=None if worker is None else WorkerRef.from_dict(worker),
        )


class JobRegistry:
    """The ``jobs/`` directory under ``home`` (default :func:`streamflow_home`).

    Synchronous and small: a handful of files, read when a command runs.
    """

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home) if home is not None else streamflow_home()
        self.directory = self.home / "jobs"

    # -- the job's side -----------------------------------------------------------------

    def new_entry(self, name: str, worker: WorkerRef | None = None) -> JobEntry:
        """A fresh entry for job ``name`` in this process (not yet registered); a worker's
        id names its index (``<name>-w<i>-<hex>``).

        The socket goes into the registry directory when its path fits the OS limit,
        else into a private temporary directory (the entry records where).
        """
        self._ensure_directory()
        token = secrets.token_hex(4)
        socket = self.directory / f"{token}.sock"
        if len(os.fsencode(socket)) > _SOCKET_PATH_LIMIT:
            socket = Path(tempfile.mkdtemp(prefix="streamflow-")) / "control.sock"
        job_id = f"{name}-{token}" if worker is None else f"{name}-w{worker.index}-{token}"
        return JobEntry(
            job_id=job_id, name=name, pid=os.getpid(), socket=str(socket), started_at=time.time(), worker=worker
        )

    def register(self, entry: JobEntry) -> None:
        """Publish ``entry`` atomically (write a temp file, rename)."""
        self._ensure_directory()
        final = self._path(entry.job_id)
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.write_text(json.dumps(entry.to_dict()))
        os.replace(tmp, final)

    def unregister(self, entry: JobEntry) -> None:
        """Remove ``entry`` and its socket file; missing files are fine."""
        self._path(entry.job_id).unlink(missing_ok=True)
        socket = Path(entry.socket)
        socket.unlink(missing_ok=True)
        if socket.parent != self.directory and socket.parent.name.startswith("streamflow-"):
            try:
                socket.parent.rmdir()  # the private temporary directory of a long path
            except OSError:
                pass

    # -- the command line's side --------------------------------------------------------

    def entries(self) -> list[JobEntry]:
        """Entries of live processes, oldest first; stale and unreadable ones are removed."""
        found: list[JobEntry] = []
        try:
            files = sorted(self.directory.glob("*.json"))
        except OSError:
            return []
        for file in files:
            try:
                entry = JobEntry.from_dict(json.loads(file.read_text()))
            except FileNotFoundError:
                continue  # unregistered meanwhile
            except (OSError, ValueError):
                file.unlink(missing_ok=True)  # half-written by a crash, or not ours
                continue
            if not _process_alive(entry.pid):
                self.unregister(entry)
                continue
            found.append(entry)
        return sorted(found, key=lambda e: (e.started_at, e.job_id))

    def resolve(self, ref: str) -> JobEntry:
        """The live job ``ref`` names: its job id, a unique id prefix, or its job name if
        only one running job has it.

        Raises:
            ConfigError: no such job, or ``ref`` is ambiguous (the message lists the ids).
        """
        entries = self.entries()
        for entry in entries:
            if entry.job_id == ref:
                return entry
        by_name = [e for e in entries if e.name == ref]
        candidates = by_name or [e for e in entries if e.job_id.startswith(ref)]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            running = ", ".join(e.job_id for e in entries) or "none"
            raise ConfigError(
                f"no running job {ref!r} (running: {running}; registry {str(self.directory)!r}); see `streamflow list`",
                job=ref,
            )
        ids = ", ".join(e.job_id for e in candidates)
        raise ConfigError(f"{ref!r} matches several running jobs ({ids}); name one by its job id", job=ref)

    def resolve_job(self, ref: str) -> list[JobEntry]:
        """Every live entry of the job ``ref`` names: one entry for a job on one process,
        every registered worker of the deployment for a job on several (``ref``: the job
        name, or any of its workers' ids or a unique prefix of one). Ordered by worker.

        Raises:
            ConfigError: no such job, or ``ref`` names several jobs or deployments.
        """
        entries = self.entries()
        exact = [e for e in entries if e.job_id == ref]
        candidates = exact or [e for e in entries if e.name == ref] or [e for e in entries if e.job_id.startswith(ref)]
        if not candidates:
            running = ", ".join(e.job_id for e in entries) or "none"
            raise ConfigError(
                f"no running job {ref!r} (running: {running}; registry {str(self.directory)!r}); see `streamflow list`",
                job=ref,
            )
        groups = {e.worker.group if e.worker is not None else e.job_id for e in candidates}
        if len(groups) > 1:
            ids = ", ".join(e.job_id for e in candidates)
            raise ConfigError(
                f"{ref!r} matches several running jobs or deployments ({ids}); name one by a job id", job=ref
            )
        first = candidates[0]
        if first.worker is None:
            return [first]
        group = first.worker.group
        return sorted(
            (e for e in entries if e.worker is not None and e.worker.group == group),
            key=lambda e: (e.worker.index if e.worker is not None else 0, e.started_at),
        )

    # -- helpers ------------------------------------------------------------------------

    def _path(self, job_id: str) -> Path:
        if not _ID.fullmatch(job_id):
            raise ConfigError(f"invalid job id {job_id!r}")
        return self.directory / f"{job_id}.json"

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True
