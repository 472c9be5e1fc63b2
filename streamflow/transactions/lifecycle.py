"""The two-phase-commit transaction lifecycle, as pure data: no event loop, no I/O.

A sink transaction moves OPEN -> PREPARED -> COMMITTED, or ends ABORTED::

    OPEN ──pre_commit──> PREPARED ──commit──> COMMITTED
      │                     │
      └──abort──> ABORTED <─┘ (a prepared transaction no restored checkpoint references)

:func:`check_transition` enforces the table and names both states when a move is
illegal. :class:`PreparedLog` is the bookkeeping of prepared transactions by checkpoint
id that a two-phase-commit writer snapshots and commits from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from streamflow.errors import StateError

__all__ = ["TRANSITIONS", "PreparedLog", "TransactionStateError", "TxnStatus", "check_transition"]


class TxnStatus(enum.Enum):
    """Where a sink transaction is in the two-phase-commit protocol."""

    OPEN = "open"
    """Begun; records are being written into it."""
    PREPARED = "prepared"
    """Flushed at a barrier; its handle is in the sink's snapshot; waiting for completion."""
    COMMITTED = "committed"
    """Published: readers see its records. Terminal."""
    ABORTED = "aborted"
    """Thrown away: readers never see its records. Terminal."""

    @property
    def is_terminal(self) -> bool:
        return not TRANSITIONS[self]

    def can_move_to(self, target: TxnStatus) -> bool:
        return target in TRANSITIONS[self]


TRANSITIONS: Mapping[TxnStatus, frozenset[TxnStatus]] = {
    TxnStatus.OPEN: frozenset({TxnStatus.PREPARED, TxnStatus.ABORTED}),
    # A prepared transaction is normally committed. It is aborted only as a lingering
    # transaction that no restored checkpoint references (its checkpoint never completed).
    TxnStatus.PREPARED: frozenset({TxnStatus.COMMITTED, TxnStatus.ABORTED}),
    TxnStatus.COMMITTED: frozenset(),
    TxnStatus.ABORTED: frozenset(),
}


class TransactionStateError(StateError):
    """A transaction was asked for a move its lifecycle does not allow.

    Fields: ``current`` and ``target`` (status names); ``checkpoint_id`` where known.
    Always a bug in a sink or in the runtime's call order, never bad user data.
    """

    current: str
    target: str


def check_transition(current: TxnStatus, target: TxnStatus) -> TxnStatus:
    """Return ``target`` if ``current -> target`` is legal, else raise TransactionStateError."""
    if current.can_move_to(target):
        return target
    allowed = ", ".join(sorted(s.name for s in TRANSITIONS[current])) or "nothing (terminal)"
    raise TransactionStateError(
        f"illegal transaction transition {current.name} -> {target.name}; "
        f"from {current.name} a transaction may move to: {allowed}. "
        "This is a bug in the sink or in the runtime's call order; please report it.",
        current=current.name,
        target=target.name,
    )


class PreparedLog:
    """Prepared, not yet committed transactions of one writer, by checkpoint id.

    Pure bookkeeping: the writer calls :meth:`prepare` at barrier n, snapshots
    :meth:`pending`, and on completion of n commits :meth:`to_commit` (n) in id order,
    calling :meth:`committed` after each. A prepared transaction whose checkpoint was
    aborted simply stays here and is committed with the next completed checkpoint, so
    :meth:`pending` includes it and a restore from any later checkpoint commits it too.

    Checkpoint ids must increase: a writer prepares at most one transaction per
    checkpoint, and checkpoints are numbered in trigger order.
    """

    __slots__ = ("_entries", "_last_prepared")

    def __init__(self) -> None:
        self._entries: dict[int, Any] = {}  # insertion order == id order (ids increase)
        self._last_prepared: int | None = None

    def prepare(self, checkpoint_id: int, handle: Any) -> None:
        """Record ``handle`` as the transaction prepared for checkpoint ``checkpoint_id``."""
        if self._last_prepared is not None and checkpoint_id <= self._last_prepared:
            raise TransactionStateError(
                f"cannot prepare a transaction for checkpoint {checkpoint_id}: checkpoint "
                f"{self._last_prepared} was already prepared and ids must increase. "
                "The runtime delivered barriers out of order; please report it.",
                checkpoint_id=checkpoint_id,
                current=TxnStatus.PREPARED.name,
                target=TxnStatus.PREPARED.name,
            )
        self._entries[checkpoint_id] = handle
        self._last_prepared = checkpoint_id

    def to_commit(self, up_to_checkpoint_id: int) -> list[tuple[int, Any]]:
        """Prepared ``(checkpoint_id, handle)`` pairs with id <= ``up_to_checkpoint_id``, oldest first."""
        return [(cid, h) for cid, h in self._entries.items() if cid <= up_to_checkpoint_id]

    def committed(self, checkpoint_id: int) -> None:
        """Forget the transaction of ``checkpoint_id``: it is committed (PREPARED -> COMMITTED)."""
        if checkpoint_id not in self._entries:
            raise TransactionStateError(
                f"checkpoint {checkpoint_id} has no prepared transaction to mark committed "
                f"(pending: {list(self._entries)!r}). Commit only what to_commit() returned.",
                checkpoint_id=checkpoint_id,
                current="UNKNOWN",
                target=TxnStatus.COMMITTED.name,
            )
        del self._entries[checkpoint_id]

    def pending(self) -> list[Any]:
        """Every prepared, not yet committed handle, oldest first: what goes into a snapshot."""
        return list(self._entries.values())

    def pending_entries(self) -> list[tuple[int, Any]]:
        """Like :meth:`pending`, with each handle's checkpoint id."""
        return list(self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"PreparedLog(pending={list(self._entries)!r})"
