"""An operator's or a source's error policy at work on the records that failed.

A function operator hands it a record its function raised on; a source task a record
its reader could not decode. :class:`RecordErrorHandler` decides by the
:class:`~streamflow.api.errors_policy.ErrorPolicy`:

- the policy does not take the error (``fail``, or an exception type outside ``on``):
  :meth:`~RecordErrorHandler.takes` is False and the caller raises its own error, which
  names what failed where (a function on a record, a deserializer on bytes);
- ``skip``: the record is counted in ``records_skipped`` and logged, the first ten and
  then every thousandth, so a stream of bad records cannot flood the log;
- ``dead_letter``: the record is counted in ``records_dead_lettered`` and kept as a dead
  letter ``{"operator", "subtask", "position", "error", "record"}`` until
  :meth:`~RecordErrorHandler.flush` sends the kept ones to the dead-letter output, once
  per batch.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from streamflow.api.errors_policy import ErrorAction, ErrorPolicy
from streamflow.core.elements import Batch
from streamflow.runtime.operators.base import OperatorMetrics

__all__ = ["RecordErrorHandler"]

_LOGGED_FIRST = 10
_LOGGED_EVERY = 1000


class RecordErrorHandler:
    """Applies the error policy of one operator (or source) subtask; see the module docstring.

    Args:
        policy: the operator's error policy.
        owner: ``"operator"`` or ``"source"``, as log lines name it.
        uid: the operator's uid.
        subtask: the subtask index.
        metrics: the counters ``records_skipped`` and ``records_dead_lettered`` go to.
        logger: where skipped records are logged (the owner's logger).
    """

    __slots__ = ("policy", "owner", "uid", "subtask", "metrics", "logger", "pending")

    def __init__(
        self,
        policy: ErrorPolicy,
        *,
        owner: str,
        uid: str,
        subtask: int,
        metrics: OperatorMetrics,
        logger: logging.Logger,
    ) -> None:
        self.policy = policy
        self.owner = owner
        self.uid = uid
        self.subtask = subtask
        self.metrics = metrics
        self.logger = logger
        self.pending: list[dict[str, Any]] = []  # dead letters not yet flushed

    def takes(self, error: BaseException) -> bool:
        """Whether the policy skips or dead-letters ``error``; if not, the caller fails
        the attempt with its own error (``raise ... from error``)."""
        policy = self.policy
        return policy.action is not ErrorAction.FAIL and isinstance(error, policy.on)

    def set_aside(self, error: Exception, record: Any, position: str | None, what: str) -> None:
        """Skip or dead-letter ``record`` (only after :meth:`takes` said yes).

        ``position`` is the record's source position as text (None when it has none);
        ``what`` names the record in a log line, e.g. ``"the record at src[0] f.txt @ 3"``.
        """
        metrics = self.metrics
        if self.policy.action is ErrorAction.SKIP:
            metrics.records_skipped += 1
            skipped = metrics.records_skipped
            if skipped <= _LOGGED_FIRST or skipped % _LOGGED_EVERY == 0:
                self.logger.warning(
                    "%s %r (subtask %d) skipped %s: %s: %s (%d skipped so far)",
                    self.owner, self.uid, self.subtask, what, type(error).__name__, error, skipped,
                )
            return
        metrics.records_dead_lettered += 1
        self.pending.append(
            {
                "operator": self.uid,
                "subtask": self.subtask,
                "position": position,
                "error": f"{type(error).__name__}: {error}",
                "record": record,
            }
        )

    async def flush(self, emit: Callable[[Batch], Awaitable[None]] | None) -> None:
        """Send the dead letters kept so far to ``emit`` (the dead-letter output)."""
        if self.pending:
            dead, self.pending = self.pending, []
            if emit is not None:
                await emit(Batch(dead))
