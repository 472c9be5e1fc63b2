"""Starting a job from a savepoint (or a retained checkpoint) the user names.

State is matched to operators by uid, and nothing is dropped silently:

- state in the snapshot whose uid no operator of the new job has is refused with
  :class:`NonRestoredStateError`, listing the uids, unless the restore allows
  non-restored state, in which case that state is dropped with a WARNING;
- an operator of the new job with no state in the snapshot starts fresh, as on a first
  run (INFO): a source reads from its start, ``is_restored`` is False;
- keyed state is split by key group, so a keyed operator must keep the snapshot's
  ``max_parallelism`` (the parallelism itself may change: key groups move whole);
- state written by a source cannot be restored into a non-source and vice versa, and
  likewise for sinks: that is two different operators sharing a uid.

Operators without an explicit ``.uid(...)`` get an auto-generated uid ``"<name>#<n>"``,
where ``n`` is the operator's position in the program: adding or removing an operator
before it changes it. Restoring by such a uid works while the program keeps its shape
and is logged as a WARNING; when it no longer matches, the error says how to adopt the
old state (``.uid("<old auto uid>")``). See :func:`operators_without_uid`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamflow.checkpoint.incremental import is_native_part, locate_native
from streamflow.checkpoint.metadata import CheckpointMetadata
from streamflow.checkpoint.serde import decode
from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.checkpoint.storage import CheckpointStorage, CompletedCheckpoint
from streamflow.errors import ConfigError, StateError
from streamflow.graph.plan import PhysicalPlan
from streamflow.graph.spec import OperatorKind, OperatorSpec
from streamflow.savepoint.location import LocatedSnapshot, local_path, locate_snapshot

__all__ = [
    "NonRestoredStateError",
    "RestorePoint",
    "RestoreSettings",
    "check_max_parallelism",
    "check_snapshot_against_plan",
    "check_state_shapes",
    "is_auto_uid",
    "operators_without_uid",
    "prepare_restore",
    "read_snapshot_state",
]

log = logging.getLogger("streamflow.savepoint")

Restored = dict[str, list[OperatorSnapshot]]  # uid -> snapshot per old subtask


class NonRestoredStateError(StateError):
    """The snapshot holds state for operator uids the new job does not have.

    Fields: ``path`` (the snapshot) and ``uids`` (the unmatched uids, sorted). Not
    retriable: the same program would refuse again.
    """

    path: str
    uids: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreSettings:
    """Where a job starts from and what may be left behind.

    Attributes:
        path: a savepoint directory, a checkpoint directory ``chk-<n>``, or a job's
            checkpoint directory (its latest complete checkpoint); a ``file://`` URI of
            one is read as that path.
        allow_non_restored_state: drop (with a WARNING) state whose operator uid is not
            in the new job, instead of refusing to start.
    """

    path: Path
    allow_non_restored_state: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, Path)) or not str(self.path):
            raise ConfigError(
                f"restore path must be a savepoint or checkpoint directory (str or Path), got {self.path!r}"
            )
        object.__setattr__(self, "path", local_path(self.path, "savepoint path"))
        if not isinstance(self.allow_non_restored_state, bool):
            raise ConfigError(
                f"allow_non_restored_state must be True or False, got {self.allow_non_restored_state!r}"
            )


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """A verified snapshot, checked against the job, and the uids whose state is dropped."""

    snapshot: LocatedSnapshot
    plan: PhysicalPlan
    dropped: frozenset[str] = field(default_factory=frozenset)

    @property
    def checkpoint_id(self) -> int:
        return self.snapshot.completed.checkpoint_id

    @property
    def path(self) -> Path:
        return self.snapshot.path

    async def read(self) -> Restored:
        """Decode the state of every operator that is restored (dropped uids are skipped).

        Raises:
            CheckpointCorruptedError: a state file changed since it was verified.
            StateError: see :func:`check_state_shapes`.
        """
        restored = await read_snapshot_state(self.snapshot.storage, self.snapshot.completed, skip=self.dropped)
        check_state_shapes(restored, self.plan, path=self.path)
        return restored


async def prepare_restore(settings: RestoreSettings, plan: PhysicalPlan) -> RestorePoint:
    """Locate and verify the snapshot, then check it against ``plan``.

    Raises:
        ConfigError: no snapshot at the path.
        CheckpointCorruptedError: it is incomplete or damaged.
        UnsupportedCheckpointVersionError: it is in a format this version cannot read.
        NonRestoredStateError, StateError: see :func:`check_snapshot_against_plan`.
    """
    snapshot = await locate_snapshot(settings.path)
    dropped = check_snapshot_against_plan(
        snapshot.metadata, plan, allow_non_restored_state=settings.allow_non_restored_state, path=snapshot.path
    )
    return RestorePoint(snapshot, plan, frozenset(dropped))


def check_snapshot_against_plan(
    metadata: CheckpointMetadata, plan: PhysicalPlan, *, allow_non_restored_state: bool, path: Path
) -> list[str]:
    """The uids whose state is dropped; raises where the snapshot cannot go into ``plan``.

    Raises:
        NonRestoredStateError: state for uids the job lacks, and not allowed to drop it.
        StateError: a keyed operator's max parallelism differs from the snapshot's.
    """
    specs = _specs_by_uid(plan)
    where = "savepoint" if metadata.is_savepoint else "checkpoint"
    unmatched = sorted(uid for uid in metadata.operators if uid not in specs)
    if unmatched and not allow_non_restored_state:
        raise NonRestoredStateError(_unmatched_message(unmatched, specs, where, path), path=str(path), uids=unmatched)
    for uid in unmatched:
        log.warning(
            "%s %s holds state of operator uid %r, which this job does not have; that state is dropped "
            "(allow_non_restored_state)", where, str(path), uid,
        )
    check_max_parallelism(metadata, plan, path=path)
    for uid in sorted(metadata.operators):
        spec = specs.get(uid)
        if spec is None:
            continue
        if spec.uid is None and spec.holds_state:
            log.warning(
                "operator %r has no uid of its own and gets the state stored under its auto-generated uid %r; "
                "that uid changes when operators are added or removed before it: set .uid(%r) to keep it stable",
                spec.name, uid, uid,
            )
    for uid, spec in sorted(specs.items()):
        if uid not in metadata.operators and spec.holds_state:
            log.info("operator %r has no state in the %s %s and starts fresh", uid, where, str(path))
    return unmatched


def check_max_parallelism(metadata: CheckpointMetadata, plan: PhysicalPlan, *, path: Path) -> None:
    """Refuse keyed state split into another number of key groups than ``plan`` uses.

    Run for savepoints and for the latest checkpoint of a job's own directory alike: a
    key's key group is its hash modulo max_parallelism, so with another max parallelism
    restored keys would sit in groups no lookup reaches, and their state would be lost
    without a word.

    Raises:
        StateError: naming the operator, both values and the setting to use.
    """
    specs = _specs_by_uid(plan)
    where = "savepoint" if metadata.is_savepoint else "checkpoint"
    for uid, meta in sorted(metadata.operators.items()):
        spec = specs.get(uid)
        if spec is not None and spec.key_selector is not None and meta.max_parallelism != plan.max_parallelism:
            raise StateError(
                f"operator {uid!r} has keyed state split into {meta.max_parallelism} key groups in the {where} "
                f"{str(path)!r}, but this job has max_parallelism {plan.max_parallelism}; keyed state can only "
                f"be restored with the same max_parallelism: run with max_parallelism={meta.max_parallelism} "
                f"(--max-parallelism {meta.max_parallelism})",
                operator=uid,
                path=str(path),
            )


def _unmatched_message(unmatched: list[str], specs: Mapping[str, OperatorSpec], where: str, path: Path) -> str:
    lines = [
        f"the {where} {str(path)!r} holds state for {len(unmatched)} operator uid(s) that this job does not "
        f"have: {', '.join(repr(u) for u in unmatched)}."
    ]
    auto = [u for u in unmatched if is_auto_uid(u)]
    if auto:
        without = [s for s in specs.values() if s.uid is None and s.holds_state]
        hint = f" (operators without a uid here: {', '.join(repr(s.effective_uid) for s in without)})" if without else ""
        lines.append(
            f" {', '.join(repr(u) for u in auto)} look auto-generated (\"<name>#<position>\"): the old job did not "
            "set .uid(...) on them, and the position changed. To keep that state, set .uid(\"<that uid>\") on "
            f"the matching operator{hint}."
        )
    lines.append(
        " Otherwise give the new operators the old uids, or, to drop that state, restart with "
        "--allow-non-restored-state (allow_non_restored_state=True)."
    )
    return "".join(lines)


def is_auto_uid(uid: str) -> bool:
    """Whether ``uid`` has the shape of an auto-generated uid, ``"<name>#<position>"``."""
    name, sep, number = uid.rpartition("#")
    return bool(sep and name and number.isdigit())


def _specs_by_uid(plan: PhysicalPlan) -> dict[str, OperatorSpec]:
    return {op.effective_uid: op for chain in plan.chains for op in chain.operators}


def operators_without_uid(plan: PhysicalPlan) -> list[OperatorSpec]:
    """Operators that hold state (:attr:`OperatorSpec.holds_state`) but have only an
    auto-generated uid.

    Dead-letter sinks are left out: their uid follows the operator that feeds them and
    cannot be set.
    """
    dead_letter_sinks = {edge.downstream for edge in plan.edges if edge.dead_letter}
    return [
        op
        for chain in plan.chains
        for op in chain.operators
        if op.uid is None and op.holds_state and op.node_id not in dead_letter_sinks
    ]


async def read_snapshot_state(
    storage: CheckpointStorage, completed: CompletedCheckpoint, *, skip: Iterable[str] = ()
) -> Restored:
    """Snapshots per operator uid, indexed by old subtask (one without parts for an old
    subtask without state); the uids in ``skip`` are left out. A native keyed part (an
    incremental checkpoint) learns where its shared files are."""
    skipped = set(skip)
    restored: Restored = {}
    for uid, meta in completed.metadata.operators.items():
        if uid in skipped:
            continue
        snapshots = [OperatorSnapshot() for _ in range(meta.parallelism)]
        for subtask, handle in meta.subtasks.items():
            stored = decode(await storage.read_state(completed.checkpoint_id, handle))
            if isinstance(stored, dict) and is_native_part(stored.get("keyed")):
                stored["keyed"] = locate_native(stored["keyed"], handle, storage.directory)
            snapshots[subtask] = OperatorSnapshot.from_stored(stored, operator=uid)
        restored[uid] = snapshots
    return restored


def check_state_shapes(restored: Restored, plan: PhysicalPlan, *, path: Path) -> None:
    """Refuse state written by a source for a non-source (and the other way round), and
    likewise for sinks: one uid was given to two different operators.

    Raises:
        StateError: naming the uid, what wrote the state and what reads it now.
    """
    specs = _specs_by_uid(plan)
    for uid, snapshots in restored.items():
        spec = specs.get(uid)
        if spec is None:
            continue
        some_state = any(s != OperatorSnapshot() for s in snapshots)
        for what, kind in (("source", OperatorKind.SOURCE), ("sink", OperatorKind.SINK)):
            wrote = any((s.source if kind is OperatorKind.SOURCE else s.sink) is not None for s in snapshots)
            if wrote != (spec.kind is kind) and some_state:
                writer = f"a {what}" if wrote else f"an operator that is not a {what}"
                raise StateError(
                    f"the state of operator uid {uid!r} in {str(path)!r} was written by {writer}, but {uid!r} is now "
                    f"the {spec.kind.value} operator {spec.name!r}; two different operators share this uid: "
                    "give the new operator its own uid (and restore with --allow-non-restored-state to drop the "
                    "old state)",
                    operator=uid,
                    path=str(path),
                )
