"""The bounded pool of transactional ids of one exactly-once Kafka sink subtask.

Pure bookkeeping, no I/O. Why a pool: every transactional id the broker sees stays in its
transaction state log until ``transactional.id.expiration.ms`` (7 days by default), so a
new id per checkpoint floods it. A subtask reuses ``pool_size`` ids instead.

Why an id cannot be reused right after its commit: a transaction is committed by
``EndTxn(transactional id, producer id, epoch)``, and a producer keeps its producer id and
epoch from one transaction to the next. If id X is committed for checkpoint n and
immediately reused, a restore from checkpoint n (which lists X's handle) would send
EndTxn(commit) for X again, and the broker would commit X's *new* open transaction, whose
records belong to no completed checkpoint: duplicates after the replay. So a committed id
is RETIRING until a checkpoint whose snapshot was taken after the commit has completed
(then no restorable checkpoint lists it), and only then FREE again. The ids of restored
handles are held the same way: a second restore from the same checkpoint commits them
again, which must find them untouched.

States and moves::

    FREE --acquire--> IN_USE --retire--> RETIRING --checkpoint m > bound completes--> FREE
                        |
                        +--release (aborted, never prepared)--> FREE
    FREE --hold(bound)--> RETIRING           (ids of restored handles)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence

from streamflow.errors import ConnectorError

__all__ = [
    "IdState", "TransactionalIdPool", "TransactionalIdPoolExhaustedError", "id_layout", "transactional_id",
]


def transactional_id(prefix: str, operator_uid: str, subtask: int, parallelism: int, k: int) -> str:
    """The k-th pooled id of ``subtask`` when the sink runs with ``parallelism`` subtasks.

    The parallelism is part of the id so that after a rescale the new subtasks' ids never
    equal an old subtask's: initialising a producer aborts the open transaction of its id,
    and an old id may hold a prepared transaction that another new subtask has not
    committed yet (restored state is dealt round-robin over the new subtasks).
    """
    return f"{prefix}-{operator_uid}-{subtask}of{parallelism}-{k}"


def id_layout(tid: str, prefix: str, operator_uid: str) -> tuple[int, int, int] | None:
    """``(subtask, parallelism, k)`` if ``tid`` is a pooled id of this sink (prefix and
    uid), made by :func:`transactional_id` at any parallelism; else None."""
    match = re.fullmatch(rf"{re.escape(prefix)}-{re.escape(operator_uid)}-(\d+)of(\d+)-(\d+)", tid)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


class IdState(enum.Enum):
    FREE = "free"
    """No transaction of a restorable checkpoint uses it; may start the next one."""
    IN_USE = "in use"
    """Holds the open transaction, or a prepared one awaiting its checkpoint."""
    RETIRING = "retiring"
    """Committed (or restored); a restorable checkpoint may still list its handle."""


class TransactionalIdPoolExhaustedError(ConnectorError):
    """Every pooled id is in use or retiring: too many checkpoints are pending."""


class TransactionalIdPool:
    """Which of a subtask's transactional ids may start the next transaction.

    The writer calls :meth:`snapshot_taken` at every barrier, :meth:`acquire` when a
    transaction gets its first record, :meth:`retire` after committing it, :meth:`release`
    after aborting it, and :meth:`checkpoint_completed` on every completed checkpoint.
    Ids are handed out lowest first, so a healthy job uses the same few ids forever.
    """

    __slots__ = ("_bounds", "_ids", "_last_snapshot", "_setting", "_state")

    def __init__(self, ids: Sequence[str], *, setting: str = "transactional_id_pool_size") -> None:
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"a transactional id pool needs distinct ids, got {list(ids)!r}")
        self._ids = list(ids)
        self._state = dict.fromkeys(self._ids, IdState.FREE)
        self._bounds: dict[str, int] = {}  # RETIRING id -> the checkpoint it must outlive
        self._last_snapshot = 0
        self._setting = setting

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def state(self, tid: str) -> IdState:
        return self._state[tid]

    def ids_in(self, state: IdState) -> list[str]:
        return [t for t in self._ids if self._state[t] is state]

    def snapshot_taken(self, checkpoint_id: int) -> None:
        """Barrier ``checkpoint_id`` passed: ids committed from now on are not in its snapshot."""
        self._last_snapshot = max(self._last_snapshot, checkpoint_id)

    def acquire(self) -> str:
        """The lowest FREE id, now IN_USE; TransactionalIdPoolExhaustedError if none is."""
        for tid in self._ids:
            if self._state[tid] is IdState.FREE:
                self._state[tid] = IdState.IN_USE
                return tid
        raise TransactionalIdPoolExhaustedError(
            f"all {len(self._ids)} transactional ids of this sink subtask are in use or waiting "
            f"for a later checkpoint to complete ({self._describe()}): too many checkpoints are "
            f"pending or were aborted in a row. Raise {self._setting} (now {len(self._ids)}), or "
            "find out why checkpoints do not complete.",
            pool_size=len(self._ids),
        )

    def release(self, tid: str) -> None:
        """``tid``'s transaction was aborted before it was prepared: FREE at once."""
        self._move(tid, IdState.IN_USE, IdState.FREE)

    def retire(self, tid: str) -> None:
        """``tid``'s transaction is committed: FREE once a checkpoint after the last
        snapshot completes (that snapshot may still list it)."""
        self._move(tid, IdState.IN_USE, IdState.RETIRING)
        self._bounds[tid] = self._last_snapshot

    def hold(self, tids: Iterable[str], checkpoint_id: int) -> None:
        """Ids of handles restored from checkpoint ``checkpoint_id``: RETIRING until a
        later checkpoint completes. Ids not in this pool are ignored."""
        for tid in tids:
            if tid in self._state:
                self._move(tid, IdState.FREE, IdState.RETIRING)
                self._bounds[tid] = max(checkpoint_id, self._bounds.get(tid, 0))

    def checkpoint_completed(self, checkpoint_id: int) -> list[str]:
        """Free the RETIRING ids that checkpoint ``checkpoint_id`` outlives; returns them."""
        freed = [t for t, bound in self._bounds.items() if checkpoint_id > bound]
        for tid in freed:
            del self._bounds[tid]
            self._state[tid] = IdState.FREE
        return freed

    def _move(self, tid: str, source: IdState, target: IdState) -> None:
        current = self._state.get(tid)
        if current is None:
            raise KeyError(f"{tid!r} is not a transactional id of this pool")
        if current is not source and not (source is IdState.FREE and current is IdState.RETIRING):
            raise ValueError(
                f"transactional id {tid!r} is {current.value}, cannot move it to {target.value} "
                f"(only from {source.value}); this is a bug in the Kafka sink, please report it"
            )
        self._state[tid] = target

    def _describe(self) -> str:
        parts = []
        for tid in self._ids:
            state = self._state[tid]
            bound = f" until a checkpoint after {self._bounds[tid]} completes" if tid in self._bounds else ""
            parts.append(f"{tid}: {state.value}{bound}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"TransactionalIdPool({self._describe()})"
