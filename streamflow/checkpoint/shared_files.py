"""Files shared by several checkpoints: the incremental part of checkpoint storage.

An incremental checkpoint of a RocksDB backend consists of immutable SST files (and a
few small others); most SST files were already written for an earlier checkpoint. They
live once in the job's ``<checkpoint dir>/shared/`` folder. Each subtask's state file
names the shared files it needs, and its handle in ``_metadata`` lists them with size
and sha256 (:class:`SharedFile`), so ``_metadata`` alone says which files a checkpoint
needs and how to check them::

    <checkpoint dir>/
      chk-12/count-0            state file: local name -> shared name and size
      chk-12/_metadata          handle of count-0: its shared files, sizes, sha256s
      shared/12-count-0-000042.sst
      shared/15-count-0-000057.sst

Rules, in order of the protocol:

1. **Upload** (a subtask, asynchronously after the barrier): an immutable file is
   *reused* (not written again) only if an earlier checkpoint whose completion this
   subtask was notified of (or the checkpoint it restored) holds a file of the same
   local name and size: SST files never change, so name and size identify them within
   a database. Every other file is written anew as ``<checkpoint id>-<owner>-<local
   name>``, fsynced, its sha256 computed on the way. Names are unique per checkpoint
   and owner, so two checkpoints in flight never share a file neither of them completed.
2. **Reference counting** (:class:`SharedFileRegistry`, kept by the store, fed by the
   coordinator): a shared file lives while a retained complete checkpoint, or one in
   flight that acknowledged it, references it. Aborting a checkpoint or dropping it by
   retention releases it; the files no one references any more are deleted. Retention
   keeps the newest checkpoint that references shared files until a newer one does
   (a savepoint in between holds none), so subtasks can go on reusing its files.
   Savepoints hold no shared references: they are always canonical and self-contained.
3. **Completion check**: before checkpoint n completes, every file it reuses must
   still be registered (:meth:`SharedFileRegistry.missing`); otherwise n is declined,
   never completed with a hole, and its subtasks forget what they could reuse.
4. **Orphans**: a file named for checkpoint m <= the newest complete checkpoint that no
   checkpoint references was uploaded for an attempt that never completed (aborted, or
   the process died): :func:`orphans` lists them for deletion. Files of checkpoints
   newer than the newest complete one may be in flight and are left alone.
5. **Verification**: a checkpoint is verified (before a restore, or by ``inspect``) with
   every shared file its handles list, against size and sha256; a missing or damaged
   file raises :class:`~streamflow.errors.CheckpointCorruptedError` naming it, and a
   restore falls back to the previous checkpoint as for any damaged file.

Shared files hold the raw bytes of the database file (no header: a restore hard-links
them into a RocksDB directory), so their checksums live in ``_metadata``.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamflow.errors import CheckpointCorruptedError, CheckpointError

__all__ = [
    "SHARED_DIRECTORY",
    "SharedFile",
    "SharedFileRegistry",
    "SharedFileStore",
    "ReuseTracker",
    "orphans",
    "shared_file_name",
    "uploaded_for",
]

SHARED_DIRECTORY = "shared"
_CHUNK = 1 << 20
_NAME = re.compile(r"(0|[1-9][0-9]*)-[A-Za-z0-9._~-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedFile:
    """One file in ``shared/``: its name there, size and sha256 (hex)."""

    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedFile:
        name, size, sha256 = data.get("name"), data.get("size"), data.get("sha256")
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise CheckpointError(f"a shared file reference has an invalid name: {dict(data)!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or not isinstance(sha256, str):
            raise CheckpointError(f"a shared file reference has an invalid size or sha256: {dict(data)!r}")
        return cls(name=name, size=size, sha256=sha256)


def shared_file_name(checkpoint_id: int, owner: str, local_name: str) -> str:
    """The name in ``shared/`` of ``local_name`` uploaded for ``checkpoint_id`` by
    ``owner`` (e.g. ``"count-0"``): unique per checkpoint and owner, file-system safe."""
    return f"{checkpoint_id}-{_UNSAFE.sub('_', owner)}-{_UNSAFE.sub('_', local_name.lstrip('/'))}"


def uploaded_for(name: str) -> int | None:
    """The checkpoint id a shared file was uploaded for, or None for a foreign name."""
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match is not None else None


class ReuseTracker:
    """One subtask's memory of which local files already are in ``shared/``.

    Files of a checkpoint become reusable only once that checkpoint completed
    (:meth:`confirm`), never those of one in flight; a checkpoint that restored seeds
    them with :meth:`seed`. Not thread-safe: called from the subtask's task.
    """

    __slots__ = ("_confirmed", "_pending")

    def __init__(self) -> None:
        self._confirmed: dict[str, SharedFile] = {}
        self._pending: dict[int, dict[str, SharedFile]] = {}

    def reusable(self, local_sizes: Mapping[str, int]) -> dict[str, SharedFile]:
        """The confirmed shared file of each local file (by name and size) that has one."""
        confirmed = self._confirmed
        return {
            local: shared
            for local, size in local_sizes.items()
            if (shared := confirmed.get(local)) is not None and shared.size == size
        }

    def record(self, checkpoint_id: int, files: Mapping[str, SharedFile]) -> None:
        """The files checkpoint ``checkpoint_id`` references (local name -> shared file)."""
        self._pending[checkpoint_id] = dict(files)

    def confirm(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` completed: its files are the ones to reuse now
        (older pending lists are dropped: a newer complete checkpoint subsumes them)."""
        files = self._pending.pop(checkpoint_id, None)
        if files is None:
            return
        self._confirmed = files
        for older in [n for n in self._pending if n < checkpoint_id]:
            del self._pending[older]

    def abort(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` was aborted: its list is forgotten. (When it was
        declined because a file it reused was gone, call :meth:`reset` instead.)"""
        self._pending.pop(checkpoint_id, None)

    def reset(self) -> None:
        """Forget everything: the next checkpoint uploads every file."""
        self._confirmed = {}
        self._pending.clear()

    def seed(self, files: Mapping[str, SharedFile]) -> None:
        """The files of the checkpoint this subtask restored, reused as it had them."""
        self._confirmed = dict(files)


class SharedFileRegistry:
    """Reference counts of shared files (pure: no I/O).

    A checkpoint's references are added when a subtask acknowledges it (:meth:`add`),
    and released when it is aborted or retention drops it (:meth:`release`), which
    returns the files nothing references any more: those are safe to delete. Rebuilt
    when a job attempt starts, from the ``_metadata`` of the complete checkpoints.
    """

    __slots__ = ("_by_checkpoint", "_counts")

    def __init__(self) -> None:
        self._by_checkpoint: dict[int, frozenset[str]] = {}
        self._counts: Counter[str] = Counter()

    def add(self, checkpoint_id: int, names: Iterable[str]) -> None:
        """Checkpoint ``checkpoint_id`` references ``names`` (adds to what it had)."""
        new = frozenset(names) - self._by_checkpoint.get(checkpoint_id, frozenset())
        self._by_checkpoint[checkpoint_id] = self._by_checkpoint.get(checkpoint_id, frozenset()) | new
        self._counts.update(new)

    def release(self, checkpoint_id: int) -> list[str]:
        """Drop checkpoint ``checkpoint_id``'s references; the files left unreferenced, sorted."""
        names = self._by_checkpoint.pop(checkpoint_id, frozenset())
        freed = []
        for name in names:
            self._counts[name] -= 1
            if self._counts[name] <= 0:
                del self._counts[name]
                freed.append(name)
        return sorted(freed)

    def missing(self, checkpoint_id: int, names: Iterable[str]) -> list[str]:
        """Files ``checkpoint_id`` reuses (uploaded for an earlier checkpoint) that no
        other checkpoint still references: they may be deleted already."""
        return sorted(
            name
            for name in names
            if (uploaded_for(name) or 0) < checkpoint_id
            and self._counts[name] - (name in self._by_checkpoint.get(checkpoint_id, ())) <= 0
        )

    def referenced(self) -> frozenset[str]:
        return frozenset(self._counts)

    def holds(self, checkpoint_id: int) -> bool:
        """Whether ``checkpoint_id`` references any shared file."""
        return bool(self._by_checkpoint.get(checkpoint_id))

    def checkpoints(self) -> list[int]:
        return sorted(self._by_checkpoint)


def orphans(present: Iterable[str], referenced: frozenset[str], newest_complete: int) -> list[str]:
    """Files in ``shared/`` that no checkpoint references and that were uploaded for a
    checkpoint no newer than ``newest_complete`` (so not for one in flight), sorted."""
    return sorted(
        name
        for name in present
        if name not in referenced and (uploaded := uploaded_for(name)) is not None and uploaded <= newest_complete
    )


class SharedFileStore:
    """One job's ``shared/`` folder: writes, verifies, materializes and deletes its
    files, and keeps their reference counts (:attr:`references`).

    All file work runs in threads (:func:`asyncio.to_thread`), one hop per file.
    """

    def __init__(self, checkpoint_directory: str | Path) -> None:
        self.directory = Path(checkpoint_directory) / SHARED_DIRECTORY
        self.references = SharedFileRegistry()

    def path(self, shared: SharedFile) -> Path:
        return self.directory / shared.name

    async def upload(self, checkpoint_id: int, name: str, local: Path, *, link: bool) -> SharedFile:
        """Write the local file ``local`` into ``shared/`` as ``name``: a hard link when
        ``link`` (an immutable file) and the file system allows, else a copy; fsynced,
        its sha256 computed. Raises CheckpointError when it cannot be written."""
        try:
            size, digest = await asyncio.to_thread(_place, local, self.directory / name, link)
        except OSError as exc:
            raise CheckpointError(
                f"checkpoint {checkpoint_id}: the shared file {name!r} could not be written to "
                f"{str(self.directory)!r} ({exc}); check that the checkpoint directory is writable and has space",
                checkpoint_id=checkpoint_id,
                file=str(self.directory / name),
            ) from exc
        return SharedFile(name=name, size=size, sha256=digest)

    async def verify(self, files: Iterable[SharedFile], *, checkpoint_id: int | None = None) -> None:
        """Check that every file exists with its recorded size and sha256.

        Raises:
            CheckpointCorruptedError: naming the first missing or damaged file.
        """
        for shared in files:
            await asyncio.to_thread(_check, self.path(shared), shared, checkpoint_id)

    async def materialize(self, files: Mapping[str, tuple[str, int]], target: Path, *, immutable: frozenset[str]
                          ) -> None:  # fmt: skip
        """Put each shared file (local name -> (name in ``shared/``, size)) into
        ``target`` under its local name: immutable files as hard links where possible,
        the others as copies (a database may write to them). Sizes are checked; the
        checksums were, when the checkpoint was verified before its restore.

        Raises:
            CheckpointCorruptedError: a file is missing or of another size.
        """
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        for local, (name, size) in files.items():
            await asyncio.to_thread(_materialize, self.directory / name, target / local, size, local in immutable)

    async def delete(self, names: Iterable[str]) -> None:
        """Delete shared files by name; a missing one is fine."""
        for name in names:
            await asyncio.to_thread(_unlink, self.directory / name)

    async def names(self) -> list[str]:
        """The names of every file in ``shared/`` (none if it does not exist), sorted."""
        return await asyncio.to_thread(_list, self.directory)

    async def release(self, checkpoint_id: int) -> list[str]:
        """Drop ``checkpoint_id``'s references and delete the files nobody references
        any more (rule 2); returns their names."""
        freed = self.references.release(checkpoint_id)
        await self.delete(freed)
        return freed

    async def sweep(self, newest_complete: int) -> list[str]:
        """Delete the orphans (rule 4); returns their names."""
        doomed = orphans(await self.names(), self.references.referenced(), newest_complete)
        await self.delete(doomed)
        return doomed

    async def remove_all(self) -> None:
        """Delete the whole ``shared/`` folder (the job's checkpoints are all gone)."""
        await asyncio.to_thread(shutil.rmtree, self.directory, True)
        self.references = SharedFileRegistry()


def _place(local: Path, destination: Path, link: bool) -> tuple[int, str]:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(local, destination)
        except FileExistsError:
            raise
        except OSError:
            link = False
    if link:
        size, digest = _hash(destination)
    else:
        sha = hashlib.sha256()
        size = 0
        tmp = destination.with_name(destination.name + ".tmp")
        with open(local, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                sha.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if os.path.exists(destination):
            os.unlink(tmp)
            raise FileExistsError(errno.EEXIST, "shared file exists", str(destination))
        os.replace(tmp, destination)
        digest = sha.hexdigest()
    _fsync_directory(destination.parent)
    return size, digest


def _hash(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as src:
        while chunk := src.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _damaged(path: Path, problem: str, checkpoint_id: int | None) -> CheckpointCorruptedError:
    where = "" if checkpoint_id is None else f"checkpoint {checkpoint_id} is damaged: "
    return CheckpointCorruptedError(
        f"{where}the shared file {str(path)!r} {problem}", checkpoint_id=checkpoint_id, file=str(path)
    )


def _check(path: Path, shared: SharedFile, checkpoint_id: int | None) -> None:
    try:
        size, digest = _hash(path)
    except FileNotFoundError:
        raise _damaged(path, "is missing", checkpoint_id) from None
    if size != shared.size:
        raise _damaged(path, f"holds {size} bytes, the checkpoint says {shared.size}", checkpoint_id)
    if digest != shared.sha256:
        raise _damaged(path, "does not match its sha256 checksum", checkpoint_id)


def _materialize(source: Path, destination: Path, size: int, link: bool) -> None:
    try:
        found = os.stat(source).st_size
    except FileNotFoundError:
        raise _damaged(source, "is missing", None) from None
    if found != size:
        raise _damaged(source, f"holds {found} bytes, the checkpoint says {size}", None)
    if link:
        try:
            os.link(source, destination)
            return
        except OSError:
            pass
    shutil.copyfile(source, destination)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _list(directory: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(directory) if entry.is_file() and not entry.name.endswith(".tmp"))
    except FileNotFoundError:
        return []


def _fsync_directory(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
