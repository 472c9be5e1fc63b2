"""Finding and verifying a snapshot that a user names by path.

A user restores or inspects "a savepoint" by giving a path, and three kinds of path make
sense, so all three are accepted:

- a savepoint directory (``savepoint-<job>-<n>-<hex>/``, any name once moved);
- one checkpoint directory, ``chk-<n>/`` (a retained checkpoint used like a savepoint);
- a job's checkpoint directory (the parent of ``chk-<n>/``): its latest complete
  checkpoint that verifies is used, as a restarted job would; the newer ones skipped on
  the way are reported in :attr:`LocatedSnapshot.skipped` (a job restoring past a
  damaged completed one applies :mod:`streamflow.checkpoint.rollback`).

The first two have the same layout, ``_metadata`` plus state files side by side, so
:class:`SnapshotDirectory` reads both: it is a :class:`CheckpointStorage` pinned to one
directory, whatever that directory is called. Every file is verified against its
checksum before anything is restored from it.

Any of them may be given as a ``file://`` URI too (:func:`local_path`), the habit of
``flink run -s file:///...``; other schemes are refused by name, since every snapshot
lives on a local (or locally mounted) file system.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiofiles

from streamflow.checkpoint.metadata import CheckpointMetadata, UnsupportedCheckpointVersionError
from streamflow.checkpoint.storage import (
    METADATA_FILE,
    CheckpointStorage,
    CompletedCheckpoint,
    RestoreScan,
    SkippedCheckpoint,
)
from streamflow.errors import CheckpointCorruptedError, CheckpointError, ConfigError

__all__ = ["LocatedSnapshot", "SnapshotDirectory", "local_path", "locate_snapshot"]

_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LOCAL_HOSTS = ("", "localhost")


def local_path(location: str | Path, what: str = "path") -> Path:
    """The local path a user means by ``location``: a path, or a ``file:`` URI.

    ``file:///tmp/my%20savepoint``, ``file:/tmp/x`` and ``file://localhost/tmp/x`` are
    local paths with percent-escapes decoded (a ``Path`` made from a URI, which folds
    ``///`` into ``/``, is read the same way); ``~`` is expanded. A URI of another scheme
    (``s3://``, ``hdfs://``) or of another host is refused rather than read as a
    relative directory named ``s3:``.

    Raises:
        ConfigError: naming ``what``, the value and what is accepted.
    """
    text = str(location)
    scheme = _URI_SCHEME.match(text)
    if scheme is None:
        return Path(text).expanduser()
    if scheme.group(1).lower() != "file":
        if not text[scheme.end():].startswith("//"):
            return Path(text).expanduser()  # "name:with-colon" is a relative path, not a URI
        raise ConfigError(
            f"{what} {text!r} is a {scheme.group(1)!r} URI; streamflow keeps savepoints and checkpoints on "
            "local paths: pass a path or a file:// URI (mount remote storage first)",
            path=text,
        )
    parts = urlsplit(text)
    if parts.netloc.lower() not in _LOCAL_HOSTS:
        raise ConfigError(
            f"{what} {text!r} names host {parts.netloc!r}; a file URI must be local: file:///absolute/path "
            "(or file://localhost/absolute/path)",
            path=text,
        )
    if not parts.path.startswith("/"):
        raise ConfigError(f"{what} {text!r} is not an absolute file URI; write file:///absolute/path", path=text)
    return Path(unquote(parts.path))


class SnapshotDirectory(CheckpointStorage):
    """The storage of exactly one snapshot, in ``path`` (a savepoint or a ``chk-<n>``).

    Every read and write that :class:`CheckpointStorage` addresses by checkpoint id goes
    to ``path`` itself, so a savepoint keeps working after it was renamed or moved: its
    ``_metadata`` names state files relative to the directory that holds them. Retention,
    scanning and discarding are for job checkpoint directories and are never called on it.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        # The parent is the "job directory" of CheckpointStorage: writing _metadata
        # fsyncs it, which makes the savepoint directory's own entry durable.
        super().__init__(self._path.parent, retained=1)

    @property
    def path(self) -> Path:
        return self._path

    def checkpoint_path(self, checkpoint_id: int) -> Path:
        return self._path

    async def checkpoint_id(self) -> int:
        """The checkpoint id recorded in ``_metadata`` (its checksum is checked by
        :meth:`verify`, which needs the id first).

        Raises:
            CheckpointCorruptedError: ``_metadata`` is missing or does not parse.
            UnsupportedCheckpointVersionError: it is of an unknown format version.
        """
        path = self._path / METADATA_FILE
        try:
            async with aiofiles.open(path, "rb") as src:
                raw = await src.read()
        except FileNotFoundError:
            raise CheckpointCorruptedError(
                f"{str(self._path)!r} holds no {METADATA_FILE}: it is not a complete savepoint or checkpoint",
                checkpoint_id=None,
                file=str(path),
            ) from None
        _header, _newline, payload = raw.partition(b"\n")
        try:
            return CheckpointMetadata.from_json(payload).checkpoint_id
        except UnsupportedCheckpointVersionError:
            raise  # not damage: the reader names the version it cannot read
        except CheckpointError as exc:
            raise CheckpointCorruptedError(
                f"{str(path)!r} is damaged: {exc}", checkpoint_id=None, file=str(path)
            ) from exc

    async def verify_snapshot(self) -> CompletedCheckpoint:
        """``_metadata`` and every state file it lists, checked against their checksums."""
        return await self.verify(await self.checkpoint_id())


@dataclass(frozen=True, slots=True)
class LocatedSnapshot:
    """A verified snapshot and the storage that reads its state files; ``skipped``: the
    newer checkpoints of a job directory that failed verification, newest first."""

    completed: CompletedCheckpoint
    storage: CheckpointStorage
    skipped: tuple[SkippedCheckpoint, ...] = ()

    @property
    def scan(self) -> RestoreScan:
        return RestoreScan(latest=self.completed, skipped=self.skipped)

    @property
    def metadata(self) -> CheckpointMetadata:
        return self.completed.metadata

    @property
    def path(self) -> Path:
        return self.completed.path

    @property
    def is_savepoint(self) -> bool:
        return self.metadata.is_savepoint


async def locate_snapshot(path: str | Path) -> LocatedSnapshot:
    """Verify the savepoint or checkpoint at ``path`` (see the module docstring).

    Raises:
        ConfigError: ``path`` does not exist, holds no snapshot at all, or is a URI
            that is not a local ``file:`` one.
        CheckpointCorruptedError: the snapshot is incomplete or a file fails its checksum.
        UnsupportedCheckpointVersionError: it was written in an unknown format version.
    """
    where = local_path(path, "savepoint or checkpoint")
    if not await asyncio.to_thread(where.is_dir):
        raise ConfigError(
            f"no savepoint or checkpoint at {str(where)!r}: it is not a directory; pass a savepoint "
            "directory, a checkpoint directory chk-<n>, or a job's checkpoint directory",
            path=str(where),
        )
    if await asyncio.to_thread((where / METADATA_FILE).is_file):
        directory = SnapshotDirectory(where)
        return LocatedSnapshot(await directory.verify_snapshot(), directory)
    storage = CheckpointStorage(where)
    if await storage.highest_checkpoint_id() == 0:
        raise ConfigError(
            f"{str(where)!r} holds no {METADATA_FILE} and no chk-<n> directories: it is neither a "
            "savepoint, nor a checkpoint, nor a job's checkpoint directory",
            path=str(where),
        )
    scan = await storage.scan_for_restore()
    if scan.latest is None:
        problems = " ".join(f"{skipped.problem}." for skipped in scan.skipped)
        raise CheckpointCorruptedError(
            f"{str(where)!r} holds no complete, intact checkpoint ({problems}); "
            "pass an older chk-<n> directory or a savepoint",
            checkpoint_id=None,
            file=str(where),
        )
    return LocatedSnapshot(scan.latest, storage, scan.skipped)
