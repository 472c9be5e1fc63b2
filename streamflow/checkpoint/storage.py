"""Checkpoint storage on a local (or mounted) file system.

Layout of one job's checkpoint directory::

    <directory>/
      chk-7/              complete: has _metadata
        count-0           state file of operator uid "count", subtask 0
        count-1
        _metadata
      chk-8/              in flight, aborted or crashed: no _metadata
      shared/             files of incremental checkpoints, shared by several
                          (see :mod:`streamflow.checkpoint.shared_files`)

A ``chk-<n>`` directory is complete exactly when it holds ``_metadata``; the metadata is
written last and atomically (temp file, fsync, rename, fsync of the directory), so a crash
at any moment leaves either a complete checkpoint or one without ``_metadata``.

Every file carries its own checksum in a one-line ASCII header, so a file can be verified
alone (``head -1`` shows it, ``tail -n +2`` is the payload)::

    SFST1 <64 hex digits: sha256 of the payload>\\n<payload>     state files
    SFMD1 <64 hex digits: sha256 of the payload>\\n<JSON>        _metadata

Reading and verifying never trusts a file: a missing file, a bad header, a wrong size or
a checksum mismatch raises :class:`CheckpointCorruptedError`; :meth:`scan_for_restore`
skips such a checkpoint and reports it, with whether it had completed, so a job can tell
a harmless fallback (past a checkpoint that never completed) from a rollback of output
its exactly-once sinks committed (see :mod:`streamflow.checkpoint.rollback`).

All disk work is off the event loop. A write is one :func:`asyncio.to_thread` call that
creates, writes, fsyncs and closes the file: one thread hop instead of one per aiofiles
operation (each hop must win the GIL from a busy loop), and a cancelled caller cannot
leak a half-open file. Reads stream through aiofiles; rename, listdir and rmtree go
through :func:`asyncio.to_thread`.

(Over 400 lines: one concept, the on-disk checkpoint format, written, verified, scanned
and deleted in one place so the format has one owner.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import aiofiles

from streamflow.checkpoint.metadata import CheckpointMetadata, StateHandle, UnsupportedCheckpointVersionError
from streamflow.checkpoint.shared_files import SharedFile, SharedFileStore, uploaded_for
from streamflow.core.faults import FaultInjector
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointCorruptedError, CheckpointError, ConfigError

__all__ = [
    "METADATA_FILE", "CheckpointStorage", "CompletedCheckpoint", "RestoreScan", "SkippedCheckpoint", "state_file_name",
]

log = logging.getLogger(__name__)

METADATA_FILE = "_metadata"
_METADATA_TMP = "_metadata.tmp"
_STATE_MAGIC = b"SFST1"
_METADATA_MAGIC = b"SFMD1"
_HEADER_LEN = len(_STATE_MAGIC) + 1 + 64 + 1
_CHUNK = 1 << 20
_HASH_INLINE_LIMIT = 1 << 16  # larger payloads are hashed in a thread
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CHK = re.compile(r"chk-(0|[1-9][0-9]*)")


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedCheckpoint:
    """A verified complete checkpoint: every file it lists exists and matches its checksum."""

    checkpoint_id: CheckpointId
    path: Path
    metadata: CheckpointMetadata


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedCheckpoint:
    """A checkpoint newer than the one to restore that failed verification.

    ``completed``: it has ``_metadata``, so it completed and sinks may have committed
    its output; otherwise it was in flight (aborted, or the process died taking it) and
    nothing of it was ever committed. ``problem`` says what is wrong, naming the file.
    """

    checkpoint_id: CheckpointId
    completed: bool
    problem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreScan:
    """What :meth:`CheckpointStorage.scan_for_restore` found: the newest intact checkpoint
    (None if there is none) and the newer ones skipped, newest first."""

    latest: CompletedCheckpoint | None
    skipped: tuple[SkippedCheckpoint, ...]


def state_file_name(name: str) -> str:
    """A file name for state ``name`` (e.g. ``"count-0"``) that is safe on any file system.

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` and a leading ``.`` or ``_``
    (``_`` is reserved for storage files such as ``_metadata``) gets an ``s`` prefix.
    Whenever the name had to change, ``~`` and a hash of the original are appended, so two
    different names never map to the same file (a plain name never contains ``~``).
    """
    safe = _UNSAFE.sub("_", name)[:120]
    if not safe or safe[0] in "._":
        safe = "s" + safe
    if safe != name:
        safe += "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return safe


class CheckpointStorage:
    """Writes, verifies, finds and deletes the checkpoints of one job in ``directory``.

    Who calls what, in order, for checkpoint n: every stateful task ``write_state`` (once
    per operator subtask) and acks the returned handle; the coordinator, once all acks are
    in, ``write_metadata`` (now n is complete) and then ``enforce_retention``; on abort it
    calls ``discard``. On (re)start it asks ``scan_for_restore`` what to restore and
    ``highest_checkpoint_id`` where to continue numbering.

    With ``max_concurrent > 1`` the coordinator must abort (subsume) in-flight checkpoints
    older than a newly completed one before ``enforce_retention``, which deletes
    incomplete directories older than the newest complete checkpoint.

    Shared files (incremental checkpoints) live in :attr:`shared`: the coordinator
    registers an acknowledged handle's files there, ``discard`` and retention release a
    checkpoint's, and :meth:`load_shared_references` rebuilds the counts when an attempt
    starts.
    """

    def __init__(self, directory: str | Path, *, retained: int = 2, faults: FaultInjector | None = None) -> None:
        if isinstance(retained, bool) or not isinstance(retained, int) or retained < 1:
            raise ConfigError(
                f"CheckpointStorage retained must be an int >= 1 (the latest checkpoint is "
                f"needed for recovery), got {retained!r}"
            )
        self._directory = Path(directory)
        self._retained = retained
        self._faults = faults if faults is not None else FaultInjector()  # the job run's, to crash tests
        self.shared = SharedFileStore(self._directory)

    @property
    def directory(self) -> Path:
        return self._directory

    def checkpoint_path(self, checkpoint_id: int) -> Path:
        """The ``chk-<n>`` directory of checkpoint ``checkpoint_id`` (may not exist)."""
        return self._directory / f"chk-{checkpoint_id}"

    # -- writing --------------------------------------------------------------------

    async def write_state(
        self, checkpoint_id: int, name: str, data: bytes, shared: tuple[SharedFile, ...] = ()
    ) -> StateHandle:
        """Write one subtask's encoded snapshot durably (fsynced) and return its handle,
        which lists the ``shared`` files (already written) the state also needs.

        ``name`` identifies the writer, conventionally ``f"{uid}-{subtask}"``; it is made
        file-name safe with :func:`state_file_name`. Each name is written once per
        checkpoint: a second write raises :class:`CheckpointError` rather than replace
        a file another subtask may already have acknowledged.
        """
        chk = self.checkpoint_path(checkpoint_id)
        file = state_file_name(name)
        path = chk / file
        digest = await _sha256_hex(data)
        try:
            # one thread hop per file: the file is opened, written, fsynced and closed in
            # the worker, so a cancelled caller can neither leak it nor leave it half-open
            await asyncio.to_thread(_write_durably, path, _header(_STATE_MAGIC, digest), data, "xb")
        except FileExistsError:
            raise CheckpointError(
                f"checkpoint {checkpoint_id} already has state file {file!r} (for name "
                f"{name!r}); each operator subtask writes its state once per checkpoint",
                checkpoint_id=checkpoint_id,
                file=str(path),
            ) from None
        return StateHandle(file=file, size=len(data), sha256=digest, shared=shared)

    async def write_metadata(self, checkpoint_id: int, metadata: CheckpointMetadata) -> None:
        """Complete checkpoint n: write ``_metadata`` atomically.

        Steps, in order: write ``_metadata.tmp``; fsync it; crash point
        ``metadata_write`` (see :mod:`streamflow.core.faults`); rename to ``_metadata``; fsync the checkpoint
        directory (this also makes the state files' directory entries durable) and its
        parent. A crash before the rename leaves no ``_metadata``: n never completed.
        """
        if metadata.checkpoint_id != checkpoint_id:
            raise CheckpointError(
                f"metadata for checkpoint {metadata.checkpoint_id!r} cannot be written as "
                f"checkpoint {checkpoint_id!r}; pass the metadata of the same checkpoint",
                checkpoint_id=checkpoint_id,
            )
        chk = self.checkpoint_path(checkpoint_id)
        payload = metadata.to_json()
        tmp = chk / _METADATA_TMP
        header = _header(_METADATA_MAGIC, await _sha256_hex(payload))
        await asyncio.to_thread(_write_durably, tmp, header, payload, "wb")
        self._faults.hit("metadata_write", checkpoint_id)
        await asyncio.to_thread(_publish, tmp, chk / METADATA_FILE, self._directory)

    # -- reading and verifying ------------------------------------------------------

    async def read_state(self, checkpoint_id: int, handle: StateHandle) -> bytes:
        """The payload of a state file, after checking it against its header and ``handle``.

        Raises:
            CheckpointCorruptedError: the file is missing, malformed, of the wrong size or
                fails its checksum (fields ``checkpoint_id`` and ``file``).
        """
        path = self._state_path(checkpoint_id, handle)
        raw = await self._read_file(checkpoint_id, path, "state file")
        header_digest, payload = _split(checkpoint_id, path, _STATE_MAGIC, raw)
        actual = await _sha256_hex(payload)
        _check(checkpoint_id, path, header_digest, actual, handle, len(payload))
        return payload

    async def read_metadata(self, checkpoint_id: int) -> CheckpointMetadata:
        """The verified ``_metadata`` of checkpoint n (state files are not checked here).

        Raises:
            CheckpointCorruptedError: ``_metadata`` is missing or damaged.
            UnsupportedCheckpointVersionError: it was written in an unknown format version.
        """
        path = self.checkpoint_path(checkpoint_id) / METADATA_FILE
        raw = await self._read_file(checkpoint_id, path, "metadata file")
        header_digest, payload = _split(checkpoint_id, path, _METADATA_MAGIC, raw)
        _check(checkpoint_id, path, header_digest, await _sha256_hex(payload), None, len(payload))
        try:
            metadata = CheckpointMetadata.from_json(payload)
        except CheckpointError as exc:
            if isinstance(exc, UnsupportedCheckpointVersionError):  # not damage: do not skip
                raise
            raise _corrupted(checkpoint_id, path, str(exc)) from exc
        if metadata.checkpoint_id != checkpoint_id:
            raise _corrupted(checkpoint_id, path, f"it describes checkpoint {metadata.checkpoint_id!r}")
        return metadata

    async def verify(self, checkpoint_id: int) -> CompletedCheckpoint:
        """Check that checkpoint n is complete and intact: ``_metadata``, every state file
        and every shared file it lists exist and match their checksums (files are
        streamed, not loaded whole).

        Raises:
            CheckpointCorruptedError: what is wrong, naming the file.
        """
        chk = self.checkpoint_path(checkpoint_id)
        if not await asyncio.to_thread((chk / METADATA_FILE).is_file):
            raise CheckpointCorruptedError(
                f"checkpoint {checkpoint_id} is incomplete: {str(chk)!r} has no {METADATA_FILE} "
                "(it was aborted, or the process died while taking it)",
                checkpoint_id=checkpoint_id,
                file=str(chk / METADATA_FILE),
            )
        metadata = await self.read_metadata(checkpoint_id)
        for _uid, _subtask, handle in metadata.handles():
            path = self._state_path(checkpoint_id, handle)
            header_digest, actual, size = await self._hash_file(checkpoint_id, path)
            _check(checkpoint_id, path, header_digest, actual, handle, size)
        await self.shared.verify(metadata.shared_files(), checkpoint_id=checkpoint_id)
        return CompletedCheckpoint(checkpoint_id=CheckpointId(checkpoint_id), path=chk, metadata=metadata)

    async def scan_for_restore(self) -> RestoreScan:
        """The newest checkpoint that passes :meth:`verify`, and every newer one that was
        skipped, with what is wrong with it and whether it had completed. Logs nothing:
        whether skipping a completed checkpoint is acceptable is the caller's decision
        (it rolls back output that exactly-once sinks committed with it). An unknown
        metadata format version is raised, not skipped.
        """
        skipped: list[SkippedCheckpoint] = []
        for checkpoint_id, completed in reversed(await self._scan()):
            try:
                return RestoreScan(latest=await self.verify(checkpoint_id), skipped=tuple(skipped))
            except CheckpointCorruptedError as exc:
                skipped.append(SkippedCheckpoint(
                    checkpoint_id=CheckpointId(checkpoint_id), completed=completed, problem=str(exc)
                ))
        return RestoreScan(latest=None, skipped=tuple(skipped))

    async def latest_complete(self) -> CompletedCheckpoint | None:
        """The newest checkpoint that passes :meth:`verify`, or None.

        Newer damaged or incomplete checkpoints are skipped with a WARNING that names them,
        says what is wrong and that the previous one is tried. An unknown metadata format
        version is not skipped but raised: falling back past it would silently restore
        older state. (A job restoring its own checkpoints uses :meth:`scan_for_restore`
        and refuses to skip a completed one when that would duplicate exactly-once output.)
        """
        scan = await self.scan_for_restore()
        for skipped in scan.skipped:
            log.warning("%s; falling back to the previous checkpoint", skipped.problem)
        if scan.latest is None and scan.skipped:
            log.warning(
                "no usable checkpoint in %s (%d skipped); the job starts without state",
                str(self._directory),
                len(scan.skipped),
            )
        return scan.latest

    async def highest_checkpoint_id(self) -> int:
        """The largest n of any ``chk-<n>`` directory, complete or not, or of a shared
        file uploaded for checkpoint n (0 if none).

        A restarted job numbers its checkpoints after this so it never reuses an id, not
        even one of a half-written checkpoint (whose shared files may be written before
        its directory).
        """
        scan = await self._scan()
        uploaded = [n for name in await self.shared.names() if (n := uploaded_for(name)) is not None]
        return max([scan[-1][0] if scan else 0, *uploaded])

    async def load_shared_references(self) -> None:
        """Count the shared files every complete checkpoint references (read from their
        ``_metadata``), then delete the orphans: files uploaded for checkpoints no newer
        than the newest complete one that nothing references (attempts that died or
        were aborted left them). Called when a job attempt starts, before it restores."""
        store = self.shared
        store.references = type(store.references)()
        complete = [n for n, has_metadata in await self._scan() if has_metadata]
        for checkpoint_id in complete:
            try:
                metadata = await self.read_metadata(checkpoint_id)
            except CheckpointError as exc:  # a damaged checkpoint references nothing it can prove
                log.warning("shared file references of checkpoint %d are not counted: %s", checkpoint_id, exc)
                continue
            store.references.add(checkpoint_id, [shared.name for shared in metadata.shared_files()])
        if complete:
            await store.sweep(complete[-1])

    # -- deleting -------------------------------------------------------------------

    async def discard(self, checkpoint_id: int) -> None:
        """Delete ``chk-<n>`` entirely (abort clean-up), and the shared files only it
        referenced; a missing directory is fine."""
        await self.shared.release(checkpoint_id)
        await asyncio.to_thread(_rmtree, self.checkpoint_path(checkpoint_id))

    async def enforce_retention(self) -> tuple[CheckpointId, ...]:
        """Keep the newest ``retained`` complete checkpoints, and the newest complete one
        that references shared files (a savepoint since holds none, and subtasks go on
        reusing its files); delete the other complete ones and every incomplete
        directory older than the newest complete checkpoint (leftovers of aborted or
        crashed attempts), then the shared files nothing references any more.
        Incomplete directories newer than it are in flight and kept. Returns the
        deleted ids.

        "Complete" here means "has ``_metadata``"; the files are not re-verified.
        """
        scan = await self._scan()
        complete = [n for n, has_metadata in scan if has_metadata]
        if not complete:
            return ()
        keep = set(complete[-self._retained :])
        keep.update([n for n in complete if self.shared.references.holds(n)][-1:])
        newest = complete[-1]
        doomed = [n for n, has_metadata in scan if n not in keep and (has_metadata or n < newest)]
        for checkpoint_id in doomed:
            await self.discard(checkpoint_id)
        await self.shared.sweep(newest)
        if doomed:
            log.debug("checkpoint retention deleted %s from %s", doomed, str(self._directory))
        return tuple(CheckpointId(n) for n in doomed)

    async def discard_all(self) -> None:
        """Delete every ``chk-<n>`` directory and the shared files
        (``RetentionOnCancel.DELETE``), then the directory itself if nothing else is
        left in it."""
        for checkpoint_id, _complete in await self._scan():
            await self.discard(checkpoint_id)
        await self.shared.remove_all()
        await asyncio.to_thread(_rmdir_if_empty, self._directory)

    # -- helpers --------------------------------------------------------------------

    async def _scan(self) -> list[tuple[int, bool]]:
        return await asyncio.to_thread(_scan_sync, self._directory)

    def _state_path(self, checkpoint_id: int, handle: StateHandle) -> Path:
        chk = self.checkpoint_path(checkpoint_id)
        file = handle.file
        if not file or file in (".", "..") or "/" in file or "\\" in file or file.startswith("_"):
            raise _corrupted(checkpoint_id, chk / METADATA_FILE, f"it lists an invalid state file name {file!r}")
        return chk / file

    async def _read_file(self, checkpoint_id: int, path: Path, what: str) -> bytes:
        try:
            async with aiofiles.open(path, "rb") as src:
                return await src.read()
        except FileNotFoundError:
            raise _corrupted(checkpoint_id, path, f"the {what} is missing") from None

    async def _hash_file(self, checkpoint_id: int, path: Path) -> tuple[str, str, int]:
        """(digest in the header, digest of the payload, payload size), streaming."""
        try:
            async with aiofiles.open(path, "rb") as src:
                header = await src.read(_HEADER_LEN)
                header_digest, _ = _split(checkpoint_id, path, _STATE_MAGIC, header)
                sha = hashlib.sha256()
                size = 0
                while chunk := await src.read(_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            raise _corrupted(checkpoint_id, path, "the state file is missing") from None
        return header_digest, sha.hexdigest(), size


def _header(magic: bytes, digest: str) -> bytes:
    return magic + b" " + digest.encode("ascii") + b"\n"


def _split(checkpoint_id: int, path: Path, magic: bytes, raw: bytes) -> tuple[str, bytes]:
    """Parse the checksum header: (hex digest it declares, payload)."""
    header = raw[:_HEADER_LEN]
    if len(header) < _HEADER_LEN:
        raise _corrupted(checkpoint_id, path, f"it is truncated ({len(raw)} bytes, no complete header)")
    if header[: len(magic)] != magic or header[len(magic) : len(magic) + 1] != b" " or header[-1:] != b"\n":
        raise _corrupted(checkpoint_id, path, f"its header is not {magic.decode()!r} + checksum")
    digest = header[len(magic) + 1 : -1]
    if re.fullmatch(rb"[0-9a-f]{64}", digest) is None:
        raise _corrupted(checkpoint_id, path, "its header holds no valid sha256 checksum")
    return digest.decode("ascii"), raw[_HEADER_LEN:]


def _check(
    checkpoint_id: int, path: Path, header_digest: str, actual: str, handle: StateHandle | None, size: int
) -> None:
    if handle is not None and size != handle.size:
        raise _corrupted(checkpoint_id, path, f"it holds {size} bytes, the metadata says {handle.size}")
    if actual != header_digest:
        raise _corrupted(checkpoint_id, path, "its contents do not match its sha256 checksum")
    if handle is not None and actual != handle.sha256:
        raise _corrupted(checkpoint_id, path, "its sha256 differs from the one recorded in the metadata")


def _corrupted(checkpoint_id: int, path: Path, problem: str) -> CheckpointCorruptedError:
    return CheckpointCorruptedError(
        f"checkpoint {checkpoint_id} is damaged: {str(path)!r}: {problem}",
        checkpoint_id=checkpoint_id,
        file=str(path),
    )


async def _sha256_hex(data: bytes) -> str:
    if len(data) <= _HASH_INLINE_LIMIT:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())


def _scan_sync(directory: Path) -> list[tuple[int, bool]]:
    """(n, has _metadata) for every ``chk-<n>`` directory, ascending by n."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        match = _CHK.fullmatch(entry.name)
        if match is not None and entry.is_dir(follow_symlinks=False):
            found.append((int(match.group(1)), os.path.isfile(os.path.join(entry.path, METADATA_FILE))))
    return sorted(found)


def _write_durably(path: Path, header: bytes, payload: bytes, mode: str) -> None:
    """Create the directory, write header and payload, fsync, close: in one thread call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as out:
        out.write(header)
        out.write(payload)
        out.flush()
        os.fsync(out.fileno())


def _publish(tmp: Path, final: Path, job_directory: Path) -> None:
    """Rename ``tmp`` over ``final`` and make the rename durable (both directories)."""
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    _fsync_dir(job_directory)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:  # missing, or holds something that is not ours
        pass
