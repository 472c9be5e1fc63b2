"""The lifecycle of one checkpoint, from trigger to completed or aborted.

Pure and synchronous: no event loop, no disk, no clock (times are passed in), so the
coordinator's bookkeeping is unit-testable and a wrong order of events fails loudly.

Lifecycle::

    PENDING ----(last ack; start_completing)----> COMPLETING ----(complete)----> COMPLETED
       |                                              |
       +----------------(abort)-----------------------+------------(abort)-----> ABORTED

PENDING collects acknowledgements; COMPLETING covers the metadata write; COMPLETED and
ABORTED are final. Any other transition raises :class:`CheckpointError` naming both states.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from streamflow.checkpoint.metadata import StateHandle
from streamflow.core.ids import CheckpointId, TaskKey
from streamflow.errors import CheckpointAbortedError, CheckpointError

__all__ = ["ALLOWED_TRANSITIONS", "CheckpointStatus", "PendingCheckpoint", "check_transition"]
"""A task that must acknowledge a checkpoint: ``(operator uid, subtask index)``."""


class CheckpointStatus(enum.Enum):
    PENDING = "pending"
    COMPLETING = "completing"
    COMPLETED = "completed"
    ABORTED = "aborted"


ALLOWED_TRANSITIONS: Mapping[CheckpointStatus, frozenset[CheckpointStatus]] = MappingProxyType(
    {
        CheckpointStatus.PENDING: frozenset({CheckpointStatus.COMPLETING, CheckpointStatus.ABORTED}),
        CheckpointStatus.COMPLETING: frozenset({CheckpointStatus.COMPLETED, CheckpointStatus.ABORTED}),
        CheckpointStatus.COMPLETED: frozenset(),
        CheckpointStatus.ABORTED: frozenset(),
    }
)


def check_transition(checkpoint_id: int, current: CheckpointStatus, target: CheckpointStatus) -> None:
    """Raise :class:`CheckpointError` unless ``current -> target`` is in the table."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise CheckpointError(
            f"checkpoint {checkpoint_id}: illegal transition {current.name} -> {target.name}; "
            f"from {current.name} only {sorted(s.name for s in ALLOWED_TRANSITIONS[current]) or 'nothing'} "
            "is allowed",
            checkpoint_id=checkpoint_id,
            current=current,
            target=target,
        )


class PendingCheckpoint:
    """One checkpoint the coordinator has triggered and not yet finished.

    Call order (by the coordinator): ``acknowledge`` once per expected task until it
    returns True; then ``start_completing``, write the metadata, ``complete``. At any
    point before COMPLETED, ``abort(reason)`` (timeout: check ``is_expired``; a task
    declined; the job fails).

    Args:
        checkpoint_id: n.
        trigger_time: clock seconds at trigger.
        expected: every task that must ack; at least one.
        deadline: clock seconds after which the checkpoint has timed out.
        is_savepoint: a user-requested savepoint rather than a periodic checkpoint.
    """

    __slots__ = (
        "checkpoint_id",
        "trigger_time",
        "deadline",
        "is_savepoint",
        "_expected",
        "_handles",
        "_acknowledged",
        "_status",
        "_abort_reason",
    )

    def __init__(
        self,
        checkpoint_id: CheckpointId,
        trigger_time: float,
        expected: Iterable[TaskKey],
        deadline: float,
        *,
        is_savepoint: bool = False,
    ) -> None:
        self.checkpoint_id = checkpoint_id
        self.trigger_time = trigger_time
        self.deadline = deadline
        self.is_savepoint = is_savepoint
        self._expected = frozenset(expected)
        if not self._expected:
            raise CheckpointError(
                f"checkpoint {checkpoint_id} expects no acknowledgements; a checkpoint "
                "needs at least one task (the sources)",
                checkpoint_id=checkpoint_id,
            )
        self._acknowledged: set[TaskKey] = set()
        self._handles: dict[TaskKey, StateHandle] = {}
        self._status = CheckpointStatus.PENDING
        self._abort_reason: str | None = None

    @property
    def status(self) -> CheckpointStatus:
        return self._status

    @property
    def expected(self) -> frozenset[TaskKey]:
        return self._expected

    @property
    def not_yet_acknowledged(self) -> frozenset[TaskKey]:
        """Tasks still to ack: what a timeout message should name."""
        return self._expected - self._acknowledged

    @property
    def is_fully_acknowledged(self) -> bool:
        return self._acknowledged == self._expected

    @property
    def handles(self) -> Mapping[TaskKey, StateHandle]:
        """State handles of the tasks that acked with state (stateless tasks are absent)."""
        return MappingProxyType(self._handles)

    @property
    def abort_reason(self) -> str | None:
        return self._abort_reason

    def acknowledge(self, task: TaskKey, handle: StateHandle | None) -> bool:
        """Record ``task``'s ack with the handle of what it wrote (None: no state).

        Returns:
            True when this was the last expected ack (the caller now completes).

        Raises:
            CheckpointAbortedError: the checkpoint was already aborted (a late ack; the
                caller should discard what the task wrote, which ``discard`` of the
                directory already does).
            CheckpointError: ``task`` is not expected, acked twice, or the checkpoint is
                no longer collecting acks.
        """
        if self._status is CheckpointStatus.ABORTED:
            raise CheckpointAbortedError(
                f"checkpoint {self.checkpoint_id} was aborted ({self._abort_reason}); "
                f"the ack of {task!r} came too late and is ignored",
                checkpoint_id=self.checkpoint_id,
                task=task,
            )
        if self._status is not CheckpointStatus.PENDING:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_id} is {self._status.name} and takes no more "
                f"acks, got one from {task!r}",
                checkpoint_id=self.checkpoint_id,
                task=task,
            )
        if task not in self._expected:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_id} got an ack from unexpected task {task!r}; "
                f"expected one of {sorted(self._expected)!r}",
                checkpoint_id=self.checkpoint_id,
                task=task,
            )
        if task in self._acknowledged:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_id} got a second ack from task {task!r}",
                checkpoint_id=self.checkpoint_id,
                task=task,
            )
        self._acknowledged.add(task)
        if handle is not None:
            self._handles[task] = handle
        return self.is_fully_acknowledged

    def start_completing(self) -> None:
        """PENDING -> COMPLETING: every ack is in; the metadata write begins."""
        if self._status is CheckpointStatus.PENDING and not self.is_fully_acknowledged:
            missing = sorted(self.not_yet_acknowledged)
            raise CheckpointError(
                f"checkpoint {self.checkpoint_id} cannot complete: no ack yet from {missing!r}",
                checkpoint_id=self.checkpoint_id,
            )
        self._transition(CheckpointStatus.COMPLETING)

    def complete(self) -> None:
        """COMPLETING -> COMPLETED: ``_metadata`` is durable; tasks may be notified."""
        self._transition(CheckpointStatus.COMPLETED)

    def abort(self, reason: str) -> None:
        """PENDING or COMPLETING -> ABORTED, remembering why (for logs and errors)."""
        self._transition(CheckpointStatus.ABORTED)
        self._abort_reason = reason

    def is_expired(self, now: float) -> bool:
        """True when the checkpoint is still collecting acks at or after its deadline.

        Once every ack is in (COMPLETING), the timeout no longer applies: aborting while
        the metadata is being written would race the rename that completes it.
        """
        return self._status is CheckpointStatus.PENDING and now >= self.deadline

    def _transition(self, target: CheckpointStatus) -> None:
        check_transition(self.checkpoint_id, self._status, target)
        self._status = target

    def __repr__(self) -> str:
        return (
            f"PendingCheckpoint({self.checkpoint_id}, {self._status.name}, "
            f"{len(self._acknowledged)}/{len(self._expected)} acked)"
        )
