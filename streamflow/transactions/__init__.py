"""The two-phase-commit sink protocol (docs/architecture.md, "Two-phase-commit sinks").

:mod:`.lifecycle` is the pure part (transaction states, the log of prepared
transactions); :mod:`.two_phase` drives a subclass's begin / pre-commit / commit / abort
through the sink writer lifecycle.
"""

from __future__ import annotations

from streamflow.transactions.lifecycle import (
    TRANSITIONS,
    PreparedLog,
    TransactionStateError,
    TxnStatus,
    check_transition,
)
from streamflow.transactions.two_phase import END_OF_INPUT_CHECKPOINT_ID, TwoPhaseCommitSinkWriter

__all__ = [
    "END_OF_INPUT_CHECKPOINT_ID",
    "TRANSITIONS",
    "PreparedLog",
    "TransactionStateError",
    "TwoPhaseCommitSinkWriter",
    "TxnStatus",
    "check_transition",
]
