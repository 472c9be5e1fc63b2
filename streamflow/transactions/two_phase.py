"""The two-phase-commit sink writer: exactly-once output tied to checkpoint completion.

A subclass says how to begin, write, pre-commit, commit and abort one transaction of its
external system; :class:`TwoPhaseCommitSinkWriter` drives them through the
:class:`~streamflow.api.connector.SinkWriter` lifecycle (docs/architecture.md,
"Two-phase-commit sinks").

The commit path, in order:

1. ``open``: commit every handle of the restored checkpoint (``recover``), oldest first;
   then abort every lingering transaction of this sink (``abort_lingering``, see below);
   then ``begin`` the first transaction.
2. ``write``: records go into the open transaction (``write_to``).
3. ``snapshot(n)`` on barrier n: ``pre_commit`` the open transaction (flush; it is now
   PREPARED and durable), record its handle under n, ``begin`` the next one, and return
   every prepared-but-uncommitted handle as the checkpoint state.
4. ``notify_checkpoint_complete(n)``: ``commit`` every prepared handle with id <= n,
   oldest first, each finished even if the task is cancelled meanwhile (a half-done
   commit must finish; :func:`~streamflow.core.cancellation.finish_even_if_cancelled`).
   ``notify_checkpoint_aborted(n)`` does nothing: the prepared transaction stays pending
   and is committed with the next completed checkpoint, as in Flink.
5. ``finish``: without checkpointing, pre-commit and commit the open transaction
   directly. With checkpointing the final checkpoint commits; ``finish`` only drops an
   empty open transaction (a non-empty one is left for the final checkpoint).
6. ``close``: abort the open transaction, if any. Prepared transactions are left alone:
   a restore from their checkpoint commits them. ``close`` is not called after a crash.

:meth:`TwoPhaseCommitSinkWriter.metrics` counts this writer's transactions (committed,
aborted, open, prepared) for the job's metrics; counts start at 0 with each attempt.

Why ``abort_lingering`` is not always run in ``open``: after a rescale, a subtask's
restored handles may belong to other old subtasks, and its own old handles may have gone
to another new subtask that has not committed them yet. Aborting "everything of my
subtask index that I was not given" would then destroy prepared data of a completed
checkpoint. So the base runs ``abort_lingering`` in ``open`` only when that is provably
safe (a fresh start, or a restore at the same parallelism where every restored handle is
this subtask's own), and otherwise after the first checkpoint completes: completion
proves every subtask has opened, hence committed its restored handles.

State format: ``snapshot`` returns one plain dict per pending transaction,
``{"checkpoint_id": n, "subtask": i, "parallelism": p, "handle": <subclass handle>}``.
"""

from __future__ import annotations

import abc
import logging
from typing import Any, Generic, TypeVar

from streamflow.api.connector import SinkContext
from streamflow.core.cancellation import finish_even_if_cancelled
from streamflow.errors import StateError
from streamflow.transactions.lifecycle import PreparedLog, TxnStatus, check_transition

__all__ = ["END_OF_INPUT_CHECKPOINT_ID", "TwoPhaseCommitSinkWriter"]

Txn = TypeVar("Txn")

END_OF_INPUT_CHECKPOINT_ID = 2**63 - 1
"""The checkpoint id ``pre_commit`` gets in ``finish`` when checkpointing is off (as Flink
uses Long.MAX_VALUE for end of input). Fits a signed 64-bit SQL integer."""

_log = logging.getLogger(__name__)
_ENTRY_KEYS = frozenset({"checkpoint_id", "subtask", "parallelism", "handle"})


class TwoPhaseCommitSinkWriter(abc.ABC, Generic[Txn]):
    """Base of exactly-once sink writers; see the module docstring for the commit path.

    Subclasses implement :meth:`begin`, :meth:`write_to`, :meth:`pre_commit`,
    :meth:`commit` and :meth:`abort`, usually :meth:`abort_lingering`, and may override
    :meth:`recover`. A subclass that holds a connection opens it before calling
    ``super().open()`` and closes it after ``super().close()``.
    """

    def __init__(self, ctx: SinkContext) -> None:
        self.ctx = ctx
        self._prepared = PreparedLog()
        self._current: Txn | None = None
        # Status of the transaction this writer began last (None before the first).
        self._status: TxnStatus | None = None
        self._current_records = 0
        self._finished = False
        self._lingering_deferred = False
        self._committed_count = 0
        self._aborted_count = 0

    # -- what a subclass implements ------------------------------------------------------

    @abc.abstractmethod
    async def begin(self) -> Txn:
        """Start a new transaction; nothing written to it is visible until committed."""

    @abc.abstractmethod
    async def write_to(self, txn: Txn, records: list[Any]) -> None:
        """Write ``records`` into the open transaction ``txn``."""

    @abc.abstractmethod
    async def pre_commit(self, txn: Txn, checkpoint_id: int) -> Any:
        """Make ``txn`` durable and committable later, possibly by another process.

        Returns a picklable handle that :meth:`commit` can finish the transaction from;
        it is stored in checkpoint ``checkpoint_id`` and restored exactly.
        """

    @abc.abstractmethod
    async def commit(self, handle: Any) -> None:
        """Publish the prepared transaction ``handle``. Must be idempotent: committing an
        already-committed handle is not an error. Raise DataLossError if the prepared data
        is gone. Runs to its end even if the task is cancelled meanwhile."""

    @abc.abstractmethod
    async def abort(self, txn: Txn) -> None:
        """Throw away the open (never prepared) transaction ``txn``."""

    async def recover(self, restored_handles: list[Any]) -> None:
        """Commit every handle of the restored checkpoint, oldest first (called in open)."""
        for handle in restored_handles:
            await finish_even_if_cancelled(self.commit(handle))

    async def abort_lingering(self) -> None:
        """Abort every in-progress transaction of this sink left by earlier attempts.

        "This sink" is this subtask index, and for subtask 0 also every index >= the
        current parallelism. Spare this writer's own live transactions (the open one and
        :meth:`pending_handles`): when the base defers this call it runs after
        checkpoints of the current attempt. Default: nothing to clean up.
        """

    # -- for subclasses ------------------------------------------------------------------

    def pending_handles(self) -> list[Any]:
        """Handles prepared by this writer and not yet committed, oldest first."""
        return self._prepared.pending()

    @property
    def current(self) -> Txn | None:
        """The open transaction, if any (abort_lingering must spare it)."""
        return self._current

    @property
    def finished(self) -> bool:
        return self._finished

    def metrics(self) -> dict[str, float]:
        """This writer's own transactions, read by the job's metrics: committed and
        aborted since it opened (handles recovered from a checkpoint and lingering
        transactions of earlier attempts are not counted), open (0 or 1) and prepared but
        not yet committed now."""
        return {
            "numTransactionsCommitted": self._committed_count,
            "numTransactionsAborted": self._aborted_count,
            "numTransactionsOpen": 1 if self._current is not None else 0,
            "numTransactionsPrepared": len(self._prepared.pending()),
        }

    # -- the SinkWriter protocol ---------------------------------------------------------

    async def open(self) -> None:
        entries = self._restored_entries()
        await self.recover([e["handle"] for e in entries])
        if self.ctx.restored_state is None or self._same_layout(entries):
            await self.abort_lingering()
        else:
            self._lingering_deferred = True
        await self._begin()

    async def write(self, records: list[Any]) -> None:
        if not records:
            return
        if self._finished:
            raise StateError(
                f"sink {self.ctx.operator_uid!r}[{self.ctx.subtask_index}] got records after "
                "finish(); the runtime must not write after end of input",
                operator=self.ctx.operator_uid,
                subtask=self.ctx.subtask_index,
            )
        if self._current is None:
            await self._begin()
        assert self._current is not None  # internal invariant, not user input
        await self.write_to(self._current, records)
        self._current_records += len(records)

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        if self._current is not None:
            await self._prepare_current(checkpoint_id)
            if not self._finished:
                await self._begin()
        return [
            {
                "checkpoint_id": cid,
                "subtask": self.ctx.subtask_index,
                "parallelism": self.ctx.parallelism,
                "handle": handle,
            }
            for cid, handle in self._prepared.pending_entries()
        ]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await self._commit_up_to(checkpoint_id)
        if self._lingering_deferred:
            # Completion proves every subtask of this attempt opened (it acked), so every
            # restored handle is committed: what is left over is truly lingering.
            self._lingering_deferred = False
            await self.abort_lingering()

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        # Nothing to do: the transaction prepared for it stays in the log and is committed
        # with the next completed checkpoint (whose snapshot lists it as pending, too).
        return None

    async def finish(self) -> None:
        self._finished = True
        if self._current is None:
            return
        if not self.ctx.checkpointing:
            await self._prepare_current(END_OF_INPUT_CHECKPOINT_ID)
            await self._commit_up_to(END_OF_INPUT_CHECKPOINT_ID)
        elif self._current_records == 0:
            await self._abort_current()
        # else: records arrived after the last barrier; the final checkpoint prepares
        # and commits them. Aborting here would lose them.

    async def close(self) -> None:
        if self._current is None:
            return
        if self._current_records:
            _log.warning(
                "sink %s[%d] closes with %d records written after the last checkpoint; "
                "they are aborted (a restore from that checkpoint replays them)",
                self.ctx.operator_uid, self.ctx.subtask_index, self._current_records,
            )
        await self._abort_current()

    # -- internals -----------------------------------------------------------------------

    async def _begin(self) -> None:
        self._current = await self.begin()
        self._status = TxnStatus.OPEN
        self._current_records = 0

    async def _prepare_current(self, checkpoint_id: int) -> None:
        assert self._current is not None and self._status is not None  # internal invariant
        check_transition(self._status, TxnStatus.PREPARED)
        handle = await self.pre_commit(self._current, checkpoint_id)
        self._prepared.prepare(checkpoint_id, handle)
        self._current, self._status = None, TxnStatus.PREPARED

    async def _abort_current(self) -> None:
        assert self._current is not None and self._status is not None  # internal invariant
        self._status = check_transition(self._status, TxnStatus.ABORTED)
        txn, self._current = self._current, None
        await self.abort(txn)
        self._aborted_count += 1

    async def _commit_up_to(self, checkpoint_id: int) -> None:
        for cid, handle in self._prepared.to_commit(checkpoint_id):
            await finish_even_if_cancelled(self.commit(handle))
            self._prepared.committed(cid)
            self._committed_count += 1

    def _restored_entries(self) -> list[dict[str, Any]]:
        restored = self.ctx.restored_state or []
        for entry in restored:
            if not isinstance(entry, dict) or not _ENTRY_KEYS <= entry.keys():
                raise StateError(
                    f"restored state {entry!r} of sink {self.ctx.operator_uid!r} is not a "
                    "two-phase-commit entry; was this uid used by a different sink before? "
                    "Give the sink a new uid or restore from a matching checkpoint.",
                    operator=self.ctx.operator_uid,
                    subtask=self.ctx.subtask_index,
                )
        return sorted(restored, key=lambda e: e["checkpoint_id"])

    def _same_layout(self, entries: list[dict[str, Any]]) -> bool:
        """True when the restored entries are provably this subtask's own, at an unchanged
        parallelism, so no other subtask holds a handle of this subtask index."""
        return bool(entries) and all(
            e["subtask"] == self.ctx.subtask_index and e["parallelism"] == self.ctx.parallelism
            for e in entries
        )
