"""Starting one new worker from a savepoint set: only the snapshots its plan names.

A set holds one savepoint per old worker (:mod:`.sets`). A new worker's
:class:`~.sets.WorkerRestorePlan` names, per operator uid, the old subtasks whose
snapshots it needs. Before anything runs, :func:`prepare_set_restore`:

1. verifies every old savepoint the plan reads from (checksums, as a single savepoint
   restore does) and reads the checkpoint id of every savepoint of the set: the new
   worker's checkpoint ids continue after the highest of them, so no transaction or
   file name of a sink repeats;
2. checks each against the worker's plan as a single savepoint is checked (state of
   uids the job lacks, max parallelism), across the whole set.

:meth:`SetRestorePoint.read` then decodes exactly the planned snapshots and lays them
out at their old global places (:func:`~.placement.place_planned_snapshots`), so the
existing restore code redistributes them as it does within one process. Broadcast
state is taken from one old worker only (``broadcast_from_worker``): every old worker
read the broadcast input at its own pace, and its broadcast state agrees with its own
broadcast reader's offsets, which the plan takes from the same worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streamflow.checkpoint.serde import decode
from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.errors import ConfigError
from streamflow.graph.plan import PhysicalPlan
from streamflow.savepoint.location import LocatedSnapshot, SnapshotDirectory, locate_snapshot
from streamflow.savepoint.placement import place_planned_snapshots
from streamflow.savepoint.restore import (
    NonRestoredStateError,
    Restored,
    check_snapshot_against_plan,
    check_state_shapes,
)
from streamflow.savepoint.sets import OldSubtask, SavepointSetManifest, WorkerRestorePlan

__all__ = ["SetRestorePoint", "SetRestoreSettings", "prepare_set_restore"]

log = logging.getLogger("streamflow.savepoint")


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRestoreSettings:
    """Where one new worker starts from: a complete savepoint set and its plan in it.

    Attributes:
        directory: the set's directory (it holds ``_savepoint_set.json``).
        manifest: the set's manifest, read from ``directory``.
        plan: what this worker reads (:func:`~.sets.plan_worker_restore`).
        allow_non_restored_state: drop state of uids the job lacks instead of refusing.
    """

    directory: Path
    manifest: SavepointSetManifest
    plan: WorkerRestorePlan
    allow_non_restored_state: bool = False

    @property
    def path(self) -> Path:
        return self.directory


@dataclass(frozen=True, slots=True)
class SetRestorePoint:
    """The verified savepoints one new worker reads, checked against its job."""

    settings: SetRestoreSettings
    savepoints: dict[int, LocatedSnapshot]  # old worker -> its savepoint (those the plan reads)
    checkpoint_id: int  # the highest of the set
    plan: PhysicalPlan
    dropped: frozenset[str] = field(default_factory=frozenset)

    @property
    def path(self) -> Path:
        return self.settings.directory

    async def read(self) -> Restored:
        """The planned snapshots at their old global places (see the module docstring).

        Raises:
            CheckpointCorruptedError: a state file changed since it was verified.
            StateError: see :func:`~.restore.check_state_shapes`.
        """
        plan = self.settings.plan
        read: dict[tuple[str, OldSubtask], OperatorSnapshot] = {}
        for uid, operator in plan.operators.items():
            if uid in self.dropped:
                continue
            for old in operator.reads:
                snapshot = await self._read_one(uid, old)
                keep_broadcast = operator.broadcast_from_worker in (None, old.worker)
                read[(uid, old)] = snapshot if keep_broadcast else _without_broadcast_state(snapshot)
        kept = replace(plan, operators={uid: op for uid, op in plan.operators.items() if uid not in self.dropped})
        restored = place_planned_snapshots(kept, read, empty=OperatorSnapshot)
        check_state_shapes(restored, self.plan, path=self.path)
        return restored

    async def _read_one(self, uid: str, old: OldSubtask) -> OperatorSnapshot:
        located = self.savepoints[old.worker]
        meta = located.metadata.operators.get(uid)
        handle = None if meta is None else meta.subtasks.get(old.local)
        if handle is None:
            return OperatorSnapshot()  # that old subtask kept no state
        stored = decode(await located.storage.read_state(located.completed.checkpoint_id, handle))
        return OperatorSnapshot.from_stored(stored, operator=uid)


async def prepare_set_restore(settings: SetRestoreSettings, plan: PhysicalPlan) -> SetRestorePoint:
    """Steps 1 and 2 of the module docstring.

    Raises:
        ConfigError: a savepoint of the set is missing.
        CheckpointCorruptedError: one is incomplete or damaged.
        NonRestoredStateError, StateError: as for a single savepoint, over the set.
    """
    manifest = settings.manifest
    readers = sorted({old.worker for op in settings.plan.operators.values() for old in op.reads})
    savepoints: dict[int, LocatedSnapshot] = {}
    highest = 0
    for worker, entry in enumerate(manifest.savepoints):
        path = settings.directory / entry
        if worker in readers:
            located = await locate_snapshot(path)
            if not located.is_savepoint:
                raise ConfigError(
                    f"savepoint set {str(settings.directory)!r}: worker {worker}'s entry {entry!r} is not a "
                    "savepoint; the set was altered by hand",
                    path=str(path),
                )
            savepoints[worker] = located
            highest = max(highest, located.completed.checkpoint_id)
        else:
            highest = max(highest, await SnapshotDirectory(path).checkpoint_id())
    dropped: set[str] = set()
    unmatched: set[str] = set()
    for worker, located in savepoints.items():
        try:
            dropped.update(
                check_snapshot_against_plan(
                    located.metadata, plan, allow_non_restored_state=settings.allow_non_restored_state,
                    path=located.path,
                )
            )
        except NonRestoredStateError as exc:
            unmatched.update(exc.uids)
    if unmatched:
        uids = sorted(unmatched)
        raise NonRestoredStateError(
            f"the savepoint set {str(settings.directory)!r} holds state for {len(uids)} operator uid(s) that this "
            f"job does not have: {', '.join(repr(u) for u in uids)}. Give the new operators the old uids, or, to "
            "drop that state, start with --allow-non-restored-state (allow_non_restored_state=True)",
            path=str(settings.directory),
            uids=uids,
        )
    log.info(
        "worker %d restores from savepoint set %s (taken by %d workers): %d snapshots of %d savepoints",
        settings.plan.worker, str(settings.directory), manifest.workers, settings.plan.files, len(savepoints),
    )
    return SetRestorePoint(settings, savepoints, highest, plan, frozenset(dropped))


def _without_broadcast_state(snapshot: OperatorSnapshot) -> OperatorSnapshot:
    """``snapshot`` with its broadcast-mode operator states left out (list states kept)."""
    operator = snapshot.operator
    if not operator or not isinstance(operator.get("states"), dict):
        return snapshot
    states: dict[str, Any] = {
        name: data for name, data in operator["states"].items() if not (isinstance(data, dict) and data.get("mode") == "broadcast")
    }
    return replace(snapshot, operator={**operator, "states": states})
