"""Writing a savepoint: a completed checkpoint's files, made self-contained elsewhere.

A savepoint runs the checkpoint path end to end (barriers, alignment, state writes into
the job's ``chk-<n>``, acks); the coordinator then calls :func:`write_savepoint` before
it completes checkpoint n. The savepoint directory gets its own copy of every state
file (a hard link when the file system allows, else a byte copy) and its own
``_metadata`` with ``is_savepoint`` set. So:

- it is self-contained and portable: ``_metadata`` names files relative to the
  directory, and no file points back into the checkpoint directory (a savepoint's
  barrier makes every keyed operator write its canonical snapshot, never files shared
  with checkpoints; a handle that lists shared files is refused);
- checkpoint retention never touches it: retention deletes only ``chk-<n>`` directories
  of the job's checkpoint directory, and unlinking a checkpoint file leaves a hard-linked
  savepoint copy intact;
- the savepoint is complete before checkpoint n is, so before any sink commits the
  transactions it prepared for n. A crash in between leaves a usable savepoint whose
  prepared transactions a restore commits, as with a checkpoint.

The directory is ``<target>/savepoint-<job>-<n>-<6 hex digits>``; it is created anew
(never merged into an existing one) and removed again if writing it fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from dataclasses import replace
from pathlib import Path

from streamflow.checkpoint.metadata import CheckpointMetadata
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.errors import CheckpointError
from streamflow.savepoint.location import SnapshotDirectory

__all__ = ["SAVEPOINT_PREFIX", "write_savepoint"]

SAVEPOINT_PREFIX = "savepoint-"


async def write_savepoint(
    storage: CheckpointStorage, checkpoint_id: int, metadata: CheckpointMetadata, target: Path
) -> Path:
    """Publish checkpoint ``checkpoint_id`` (whose state files are all written and acked,
    ``metadata`` not yet written) as a new savepoint under ``target``; returns its path.

    Steps: create the savepoint directory; link or copy each state file; write
    ``_metadata`` atomically (temp file, fsync, rename, fsync of the directory and of
    ``target``). Only a directory with ``_metadata`` is a savepoint.

    Raises:
        CheckpointError: the directory or a file could not be written (the partial
            directory is removed); the job goes on, only this savepoint failed.
    """
    with_shared = sorted({f"{uid}[{subtask}]" for uid, subtask, handle in metadata.handles() if handle.shared})
    if with_shared:  # the keyed operators take canonical snapshots at a savepoint's barrier
        raise CheckpointError(
            f"savepoint of checkpoint {checkpoint_id}: the state of {', '.join(with_shared)} lives partly in the job's "
            "shared files, and a savepoint must be self-contained; this is a bug in the operator's snapshot",
            checkpoint_id=checkpoint_id,
        )
    directory: Path | None = None
    try:
        directory = await asyncio.to_thread(_new_directory, Path(target), metadata.job_name, checkpoint_id)
        source = storage.checkpoint_path(checkpoint_id)
        for _uid, _subtask, handle in metadata.handles():
            await asyncio.to_thread(_link_or_copy, source / handle.file, directory / handle.file)
        await SnapshotDirectory(directory).write_metadata(checkpoint_id, replace(metadata, is_savepoint=True))
    except BaseException as exc:
        if directory is not None:
            await asyncio.to_thread(shutil.rmtree, directory, True)
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"savepoint of checkpoint {checkpoint_id} could not be written under {str(target)!r}: {exc}; "
                "check that the directory is writable and has space, then trigger the savepoint again",
                checkpoint_id=checkpoint_id,
                path=str(target),
            ) from exc
        raise
    return directory


def _new_directory(target: Path, job_name: str, checkpoint_id: int) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    while True:
        path = target / f"{SAVEPOINT_PREFIX}{job_name}-{checkpoint_id}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue  # a 1 in 16 million collision: draw another suffix
        return path


def _link_or_copy(source: Path, destination: Path) -> None:
    """A hard link shares the immutable, already fsynced file; across file systems (or
    where links are not allowed) the bytes are copied and fsynced."""
    try:
        os.link(source, destination)
        return
    except OSError:
        pass
    shutil.copyfile(source, destination)
    with open(destination, "rb+") as copied:
        os.fsync(copied.fileno())
