"""What the checkpoint coordinator and the tasks tell each other.

The coordinator posts into a task's mailbox (the mail queue of its input gate, served
before any record, between batches): :class:`TriggerCheckpoint` (source tasks only),
:class:`CheckpointCompleted`, :class:`CheckpointAborted`, :data:`FINISH` and
:data:`STOP`. An operator of the task posts :class:`OperatorWakeup` when work it runs
in the background has something to emit. A task answers through its :class:`CoordinatorLink`: acknowledge or
decline a checkpoint, report end of input. Both sides depend on this module and
neither on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from streamflow.core.elements import Barrier
from streamflow.core.ids import CheckpointId, TaskKey

__all__ = [
    "FINISH",
    "STOP",
    "CheckpointAborted",
    "CheckpointCompleted",
    "CoordinatorLink",
    "Mailbox",
    "OperatorWakeup",
    "TriggerCheckpoint",
]


@dataclass(frozen=True, slots=True)
class TriggerCheckpoint:
    """To a source task: take checkpoint ``barrier.checkpoint_id`` and emit the barrier."""

    barrier: Barrier
    stop: bool = False  # stop with savepoint: the source reads nothing after this barrier


@dataclass(frozen=True, slots=True)
class CheckpointCompleted:
    """To every task: the checkpoint is durable (sinks commit)."""

    checkpoint_id: CheckpointId


@dataclass(frozen=True, slots=True)
class CheckpointAborted:
    """To every task: the checkpoint was given up (timed out, declined, subsumed).

    ``shared_files_lost``: it was declined because shared files it reused had been
    deleted meanwhile; keyed operators then reuse none (the next checkpoint writes every
    file anew)."""

    checkpoint_id: CheckpointId
    shared_files_lost: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class OperatorWakeup:
    """To a task, from one of its own operators: call ``operator.on_wakeup()`` (the
    results of calls the operator runs in the background are ready to be emitted)."""

    operator: Any


class _Finish:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FINISH"


class _Stop:
    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


FINISH: Final = _Finish()
"""To every task: the final checkpoint is complete (or there is none); finish and end."""

STOP: Final = _Stop()
"""To every task: a stop with savepoint completed; end without ``finish``."""


class Mailbox(Protocol):
    """Where the coordinator posts a task's mail (an :class:`~streamflow.runtime.channel.InputGate`)."""

    def post(self, mail: Any) -> None: ...


class CoordinatorLink(Protocol):
    """What a task calls on the coordinator (implemented by CheckpointCoordinator)."""

    def acknowledge(self, checkpoint_id: int, task: TaskKey, handle: Any) -> None: ...

    def decline(self, checkpoint_id: int, task: TaskKey, reason: str) -> None: ...

    def end_of_input(self, task_name: str) -> None: ...
