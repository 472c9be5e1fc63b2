"""What one operator subtask stores in a checkpoint: a typed record of its parts.

At barrier n each operator of a task returns an :class:`OperatorSnapshot` (or None for
no state); the task encodes its stored form (:meth:`OperatorSnapshot.to_stored`) into
the checkpoint. On restore every old subtask's stored form is read back with
:meth:`OperatorSnapshot.from_stored`, so the runtime sees typed fields, never string
keys.

The stored form is a plain dict with one key per part that is present, the same keys
checkpoints and savepoints have always had: ``"source"`` (the reader's split states),
``"sink"`` (the writer's state list: a two-phase-commit writer's prepared handles),
``"keyed"`` (the keyed state backend's snapshot), ``"operator"`` (the operator state
store's snapshot) and ``"timers"`` (``{"processing": [...], "event": [...]}``; absent
when a native keyed part holds the timers in its files, as RocksDB's incremental
checkpoints do). Every checkpoint written so far reads back unchanged. ``"async_inputs"`` is an async
operator's (map_async): one dict ``{"record", "position", "origin", "key", "timestamp"}``
per record it held at the barrier (call running, waiting, or done and not yet emitted),
in arrival order; ``origin`` is the record's :class:`~streamflow.core.elements.SourceRef`
(or None), ``key`` its key after ``key_by`` (else None) and ``timestamp`` its event time
(None without; absent in checkpoints written before records carried timestamps).
``"channel_state"`` is the in-flight elements of an unaligned checkpoint, in the snapshot
of a task's first operator: one ``{"channel": name, "elements": [encoded element, ...]}``
per input channel (see :mod:`streamflow.runtime.channel_state`).

Which parts a subtask wrote tells what it was: a source has a ``source`` part and a sink
a ``sink`` part, even when empty (a restore checks that a uid is not handed to an
operator of another kind).

A keyed part may be finished after the barrier (:attr:`OperatorSnapshot.pending`): the
files of an incremental checkpoint are put into shared storage, or a canonical snapshot
is read from a native one, in the background; the task writes the state file once that
is done (see :mod:`streamflow.checkpoint.incremental`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from streamflow.checkpoint.serde import PickledPart
from streamflow.checkpoint.shared_files import SharedFile, SharedFileStore
from streamflow.errors import StateError

__all__ = [
    "STORED_PARTS", "FinishedKeyedState", "OperatorSnapshot", "PendingKeyedState", "SnapshotType", "TimerSnapshot",
]


class SnapshotType(enum.Enum):
    """What a barrier asks for: a checkpoint (owned by the system, may be incremental)
    or a savepoint (self-contained and canonical, restorable into any backend)."""

    CHECKPOINT = "checkpoint"
    SAVEPOINT = "savepoint"


@dataclass(frozen=True, slots=True)
class FinishedKeyedState:
    """What the background part of a keyed snapshot produced: the keyed part, when it
    could not be built at the barrier (else None: the stored one stands; a
    :class:`~streamflow.checkpoint.serde.PickledPart` when it comes encoded), and the
    shared files the state needs."""

    keyed: dict[str, Any] | PickledPart | None
    shared: tuple[SharedFile, ...]


class PendingKeyedState(Protocol):
    """The part of a keyed snapshot that runs after the barrier, in the background.

    The task awaits :meth:`ready`, calls :meth:`finish` once, then :meth:`discard`
    whatever happened (also when the checkpoint was declined before :meth:`finish` ran).
    ``finish`` runs threads the task makes room for (see ``core.offload``); ``ready`` waits
    for what runs outside the process (a forked child), and the task does not slow down
    for it."""

    async def ready(self) -> None: ...

    async def finish(self, store: SharedFileStore) -> FinishedKeyedState: ...

    async def discard(self) -> None: ...

STORED_PARTS: Final = frozenset(
    {"source", "sink", "keyed", "operator", "timers", "channel_state", "async_inputs"}
)
"""The keys of the stored form; anything else in a stored snapshot is not ours."""


@dataclass(frozen=True, slots=True)
class TimerSnapshot:
    """A keyed operator's timers: ``(timestamp, key group, key)`` entries per time domain."""

    processing: list[Any]
    event: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSnapshot:
    """The parts of one operator subtask's state; None where the operator has no such part."""

    source: list[Any] | None = None
    """A source's split states (what ``SourceReader.snapshot_splits`` returned)."""
    sink: list[Any] | None = None
    """A sink writer's state list (what ``SinkWriter.snapshot`` returned)."""
    keyed: dict[str, Any] | None = None
    """The keyed state backend's snapshot (its own format, by key group)."""
    operator: dict[str, Any] | None = None
    """The operator state store's snapshot (list, union list and broadcast states)."""
    timers: TimerSnapshot | None = None
    """A keyed operator's timers."""
    channel_state: list[Any] | None = None
    """Unaligned checkpoints: the elements in flight in the task's input channels."""
    async_inputs: list[Any] | None = None
    """An async operator's held records at the barrier (see the module docstring)."""
    pending: PendingKeyedState | None = None
    """The keyed part's background work (not stored; see the module docstring)."""

    def to_stored(self) -> dict[str, Any]:
        """The plain dict this snapshot is stored as (see the module docstring)."""
        stored: dict[str, Any] = {}
        if self.source is not None:
            stored["source"] = self.source
        if self.sink is not None:
            stored["sink"] = self.sink
        if self.keyed is not None:
            stored["keyed"] = self.keyed
        if self.operator is not None:
            stored["operator"] = self.operator
        if self.timers is not None:
            stored["timers"] = {"processing": self.timers.processing, "event": self.timers.event}
        if self.channel_state is not None:
            stored["channel_state"] = self.channel_state
        if self.async_inputs is not None:
            stored["async_inputs"] = self.async_inputs
        return stored

    @classmethod
    def from_stored(cls, stored: Any, *, operator: str | None = None) -> OperatorSnapshot:
        """Read a stored snapshot back; ``operator`` (its uid) only names it in an error.

        Raises:
            StateError: ``stored`` is not a snapshot's stored form.
        """
        if not isinstance(stored, Mapping):
            raise StateError(
                f"the state of operator {operator!r} is a {type(stored).__name__}, not a stored operator "
                "snapshot; the checkpoint was not written by streamflow or is damaged",
                operator=operator,
            )
        timers = stored.get("timers")
        return cls(
            source=stored.get("source"),
            sink=stored.get("sink"),
            keyed=stored.get("keyed"),
            operator=stored.get("operator"),
            timers=None
            if timers is None
            else TimerSnapshot(processing=list(timers.get("processing") or []), event=list(timers.get("event") or [])),
            channel_state=stored.get("channel_state"),
            async_inputs=stored.get("async_inputs"),
        )
