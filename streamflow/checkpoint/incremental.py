"""Keyed state through checkpoints: canonical or native snapshots, shared files, restore.

One :class:`KeyedCheckpoints` per keyed operator subtask decides what barrier n takes:

- a backend without native snapshots (the heap): its canonical snapshot, at once, or,
  when the backend asks for it (a large heap state), taken and pickled by a forked child
  while the task goes on (:mod:`streamflow.checkpoint.forked_snapshot`);
- a :class:`~streamflow.state.backend.NativeSnapshotBackend` (RocksDB), checkpoint,
  ``incremental``: in order,

  1. at the barrier, the native snapshot (flush, hard links into a staging directory);
  2. at the barrier, the plan: each immutable file this subtask's
     :class:`~streamflow.checkpoint.shared_files.ReuseTracker` knows from a completed
     checkpoint is referenced as it is; every other file gets a new name in ``shared/``
     (``<n>-<uid>-<subtask>-<file>``). The keyed part of the state file is the
     snapshot's ``meta`` plus ``files`` (local name -> shared name and size) and
     ``immutable`` (the local names of immutable files);
  3. in the background (:class:`SharedUpload`), the new files are written (immutable
     ones hard-linked where the file system allows), the tracker records them, and the
     task writes the state file with a handle listing every shared file and its sha256;

- a native backend, savepoint or ``incremental=False``: the native snapshot at the
  barrier, then in the background the canonical snapshot read from its files
  (:class:`CanonicalFromNative`): a savepoint restores into any backend.

Restore: canonical parts go to the backend's ``restore``. Native parts learn where their
files are when the checkpoint is read (:func:`locate_native`), and :meth:`KeyedCheckpoints.restore`
puts the files of the old subtasks whose key groups overlap this subtask's into a local
directory, then hands them to the backend's ``restore_native``; a backend without
native restore (the heap) gets the canonical snapshot read from them, and its operator
the timers the files hold (:meth:`KeyedCheckpoints.restore` returns them).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamflow.checkpoint.forked_snapshot import fork_snapshot
from streamflow.checkpoint.metadata import StateHandle
from streamflow.checkpoint.shared_files import ReuseTracker, SharedFile, SharedFileStore, shared_file_name
from streamflow.checkpoint.snapshot import FinishedKeyedState, PendingKeyedState, SnapshotType, TimerSnapshot
from streamflow.errors import CheckpointError, StateError
from streamflow.state.backend import (
    ChildSnapshotBackend,
    KeyedStateBackend,
    NativeSnapshot,
    NativeSnapshotBackend,
    RestoredNative,
)
from streamflow.state.rocksdb.native import LEGACY_FORMATS, NATIVE_FORMAT, canonical_from_parts, timers_from_parts

__all__ = [
    "CanonicalFromNative", "KeyedCheckpoints", "SharedUpload", "is_native_part", "locate_native", "materialize_native",
    "native_summary",
]

log = logging.getLogger("streamflow.checkpoint")

_STAGING = "staging"
_RESTORE = "restore"


def is_native_part(keyed: Any) -> bool:
    """Whether a stored keyed part is a native snapshot (its files in shared storage)."""
    return isinstance(keyed, Mapping) and "files" in keyed and "immutable" in keyed


def locate_native(keyed: dict[str, Any], handle: StateHandle, checkpoint_directory: Path) -> dict[str, Any]:
    """A native keyed part read from a checkpoint, with where its files are: the job's
    ``checkpoint_directory`` (its ``shared/`` folder) and each file's sha256 from the
    handle (so a restore into the same job can reuse them as they are).

    Raises:
        CheckpointError: the handle does not list a file the state file names.
    """
    listed = {shared.name: shared for shared in handle.shared}
    files = {}
    for local, ref in keyed["files"].items():
        shared = listed.get(ref["name"])
        if shared is None or shared.size != ref["size"]:
            raise CheckpointError(
                f"the state file {handle.file!r} names the shared file {ref['name']!r} ({ref['size']} bytes), "
                "which its handle in _metadata does not list with that size; the checkpoint is damaged"
            )
        files[local] = shared.to_dict()
    return {**keyed, "files": files, "checkpoint_directory": str(checkpoint_directory)}


def native_summary(keyed: Mapping[str, Any]) -> dict[str, Any]:
    """Files, their total size, and how many of them were written for another
    checkpoint (shared), for ``streamflow inspect``."""
    refs = list(keyed["files"].values())
    return {
        "format": keyed.get("format"),
        "files": len(refs),
        "bytes": sum(int(ref["size"]) for ref in refs),
        "states": [state.get("name") for state in keyed.get("states", [])],
    }


class SharedUpload:
    """The background part of an incremental checkpoint: write the new files of a
    native snapshot into ``shared/`` and record them for reuse (step 3)."""

    def __init__(
        self, native: NativeSnapshot, *, checkpoint_id: int, reused: dict[str, SharedFile], new: dict[str, str],
        tracker: ReuseTracker,
    ) -> None:  # fmt: skip
        self.native = native
        self.checkpoint_id = checkpoint_id
        self.reused = reused
        self.new = new
        self.tracker = tracker

    async def ready(self) -> None:
        """Nothing runs outside this process: the upload is :meth:`finish`'s."""

    async def finish(self, store: SharedFileStore) -> FinishedKeyedState:
        native = self.native
        files = dict(self.reused)
        for local, name in self.new.items():
            link = local in native.immutable
            files[local] = await store.upload(self.checkpoint_id, name, native.directory / local, link=link)
        self.tracker.record(self.checkpoint_id, {local: f for local, f in files.items() if local in native.immutable})
        return FinishedKeyedState(None, tuple(sorted(files.values(), key=lambda shared: shared.name)))

    async def discard(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.native.directory, True)


class CanonicalFromNative:
    """The background part of a savepoint (or full checkpoint) of a native backend: the
    canonical snapshot, read from the native snapshot's files while the backend goes on."""

    def __init__(self, backend: NativeSnapshotBackend, native: NativeSnapshot) -> None:
        self.backend = backend
        self.native = native

    async def ready(self) -> None:
        """Nothing runs outside this process: the reading is :meth:`finish`'s."""

    async def finish(self, store: SharedFileStore) -> FinishedKeyedState:
        return FinishedKeyedState(await asyncio.to_thread(self.backend.canonical_from_native, self.native), ())

    async def discard(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.native.directory, True)


class KeyedCheckpoints:
    """The keyed state of one operator subtask through checkpoints (module docstring).

    Called by its operator, on the task's event loop: :meth:`restore` in ``open``,
    :meth:`snapshot` at each barrier, :meth:`completed` / :meth:`aborted` /
    :meth:`shared_files_lost` as the coordinator's notices arrive.

    Args:
        backend: the subtask's keyed backend.
        owner: ``"<uid>-<subtask>"``, part of the names of the files it uploads.
        checkpoint_directory: the job's checkpoint directory (None without checkpoints):
            files of a restored checkpoint there may be reused as they are.
    """

    def __init__(self, backend: KeyedStateBackend, *, owner: str, checkpoint_directory: Path | None) -> None:
        self.backend = backend
        self.owner = owner
        self.checkpoint_directory = checkpoint_directory
        self.tracker = ReuseTracker()
        self.native = backend if isinstance(backend, NativeSnapshotBackend) else None

    # -- restore --------------------------------------------------------------------

    async def restore(self, parts: Sequence[dict[str, Any]]) -> list[TimerSnapshot]:
        """Load the key groups of this subtask from the old subtasks' keyed parts;
        returns the timers of this subtask's key groups that native parts hold in their
        files when the backend cannot take native parts (else they are in the backend
        now, and the list is empty).

        Raises:
            CheckpointCorruptedError: a shared file is missing or of another size.
            StateError: see the backend's ``restore`` and ``restore_native``.
        """
        canonical = [part for part in parts if not is_native_part(part)]
        native = [part for part in parts if is_native_part(part)]
        timers: list[TimerSnapshot] = []
        if native:
            canonical += await self._restore_native(native, timers)
        if canonical:
            self.backend.restore(canonical)
        return timers

    async def _restore_native(self, parts: list[dict[str, Any]], timers: list[TimerSnapshot]) -> list[dict[str, Any]]:
        """Native parts into the backend; for a backend without native restore, or parts
        of a legacy format, the canonical snapshots read from them (and their timers
        appended to ``timers``)."""
        own = self.backend.key_group_range
        relevant = [part for part in parts if _overlaps(part["key_groups"], own)]
        backend = self.native
        scratch = (
            Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="streamflow-restore-"))
            if backend is None
            else backend.working_directory / _RESTORE
        )
        try:
            restored = [await materialize_native(part, scratch / str(index)) for index, part in enumerate(relevant)]
            legacy = any(part.get("format") in LEGACY_FORMATS for part in relevant)
            if backend is None or legacy:  # read entry by entry into canonical snapshots
                for part in relevant:
                    if part.get("format") != NATIVE_FORMAT and part.get("format") not in LEGACY_FORMATS:
                        raise StateError(
                            f"operator {self.owner!r}: a native snapshot of format {part.get('format')!r} cannot be "
                            "restored into this state backend; restore it with the backend that took it",
                        )
                held = await asyncio.to_thread(timers_from_parts, restored, own)
                timers.append(TimerSnapshot(processing=held["processing"], event=held["event"]))
                return await asyncio.to_thread(canonical_from_parts, restored, own)
            await backend.restore_native(restored)
            if getattr(backend, "reused_files", False) and self._own_files(relevant[0]):
                files = relevant[0]["files"]
                self.tracker.seed(
                    {local: SharedFile.from_dict(files[local]) for local in relevant[0]["immutable"] if local in files}
                )
            return []
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    def _own_files(self, part: Mapping[str, Any]) -> bool:
        """Whether a restored part's files are in this job's own shared folder."""
        if self.checkpoint_directory is None:
            return False
        return Path(part["checkpoint_directory"]).resolve() == self.checkpoint_directory.resolve()

    # -- snapshot -------------------------------------------------------------------

    async def snapshot(
        self, checkpoint_id: int, snapshot_type: SnapshotType
    ) -> tuple[dict[str, Any] | None, PendingKeyedState | None]:
        """The keyed part for the state file (None when it is finished in the
        background) and the background work, if any (see the module docstring).

        Raises:
            CheckpointError: the native snapshot could not be taken (the checkpoint is
                declined; the job goes on).
            StateSerializationError: a serializer refused a value (canonical snapshots).
        """
        backend = self.native
        if backend is None:
            forkable = self.backend
            if isinstance(forkable, ChildSnapshotBackend) and forkable.snapshot_in_child():
                try:
                    child = fork_snapshot(
                        forkable.snapshot, operator=forkable.operator_uid, subtask=forkable.subtask_index
                    )
                except OSError as exc:  # no memory or processes left for a child: pickle here
                    log.warning("operator %s could not fork to snapshot (%r); snapshotting in the task", self.owner, exc)
                else:
                    return None, child
            return self.backend.snapshot(), None
        directory = backend.working_directory / _STAGING / str(checkpoint_id)
        try:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            native = await asyncio.to_thread(backend.snapshot_native, directory)
        except Exception as exc:  # noqa: BLE001 - RocksDB reports a full disk as a plain Exception
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise CheckpointError(
                f"checkpoint {checkpoint_id}: operator {self.owner!r} could not take its RocksDB snapshot in "
                f"{str(directory)!r} ({type(exc).__name__}: {exc}); check that the state directory has space",
                checkpoint_id=checkpoint_id,
            ) from exc
        if snapshot_type is SnapshotType.CHECKPOINT and backend.incremental:
            return self._plan(checkpoint_id, native)
        return None, CanonicalFromNative(backend, native)

    def _plan(self, checkpoint_id: int, native: NativeSnapshot) -> tuple[dict[str, Any], SharedUpload]:
        """Step 2: which files are reused, the names of the others, the keyed part."""
        reused = self.tracker.reusable({local: native.files[local] for local in native.immutable})
        new = {
            local: shared_file_name(checkpoint_id, self.owner, local) for local in sorted(native.files) if local not in reused
        }
        files = {local: {"name": ref.name, "size": ref.size} for local, ref in reused.items()}
        files.update({local: {"name": name, "size": native.files[local]} for local, name in new.items()})
        keyed = {**native.meta, "files": dict(sorted(files.items())), "immutable": sorted(native.immutable)}
        upload = SharedUpload(native, checkpoint_id=checkpoint_id, reused=reused, new=new, tracker=self.tracker)
        return keyed, upload

    # -- notices --------------------------------------------------------------------

    def completed(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` completed: its files may be reused from now on."""
        self.tracker.confirm(checkpoint_id)

    def aborted(self, checkpoint_id: int) -> None:
        self.tracker.abort(checkpoint_id)

    def shared_files_lost(self) -> None:
        """A checkpoint was declined because files it reused were deleted meanwhile:
        reuse nothing, the next checkpoint writes every file anew."""
        self.tracker.reset()


def _overlaps(key_groups: Sequence[int], own: range) -> bool:
    start, stop = key_groups
    return start < own.stop and own.start < stop


async def materialize_native(part: Mapping[str, Any], directory: Path) -> RestoredNative:
    """Put the files of a located native part (:func:`locate_native`) into ``directory``."""
    store = SharedFileStore(part["checkpoint_directory"])
    files = {local: (ref["name"], int(ref["size"])) for local, ref in part["files"].items()}
    await store.materialize(files, directory, immutable=frozenset(part["immutable"]))
    meta = {key: value for key, value in part.items() if key not in ("files", "immutable", "checkpoint_directory")}
    return RestoredNative(meta=meta, directory=directory)
