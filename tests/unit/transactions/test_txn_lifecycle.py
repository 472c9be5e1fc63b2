"""The 2PC lifecycle and PreparedLog are pure: tested without an event loop."""

from __future__ import annotations

import pickle

import pytest

from streamflow.errors import StateError
from streamflow.transactions import (
    TRANSITIONS,
    PreparedLog,
    TransactionStateError,
    TxnStatus,
    check_transition,
)

LEGAL = [
    (TxnStatus.OPEN, TxnStatus.PREPARED),
    (TxnStatus.OPEN, TxnStatus.ABORTED),
    (TxnStatus.PREPARED, TxnStatus.COMMITTED),
    (TxnStatus.PREPARED, TxnStatus.ABORTED),
]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transitions_return_the_target(current: TxnStatus, target: TxnStatus) -> None:
    assert check_transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [(c, t) for c in TxnStatus for t in TxnStatus if (c, t) not in LEGAL],
)
def test_illegal_transitions_name_both_states(current: TxnStatus, target: TxnStatus) -> None:
    with pytest.raises(TransactionStateError, match=f"{current.name} -> {target.name}") as info:
        check_transition(current, target)
    assert isinstance(info.value, StateError)
    assert (info.value.current, info.value.target) == (current.name, target.name)


def test_terminal_states_and_error_pickles() -> None:
    assert {s for s in TxnStatus if s.is_terminal} == {TxnStatus.COMMITTED, TxnStatus.ABORTED}
    assert set(TRANSITIONS) == set(TxnStatus)
    with pytest.raises(TransactionStateError) as info:
        check_transition(TxnStatus.COMMITTED, TxnStatus.OPEN)
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is TransactionStateError and clone.current == "COMMITTED"


def test_prepared_log_commits_up_to_n_in_id_order() -> None:
    log = PreparedLog()
    log.prepare(1, "h1")
    log.prepare(2, "h2")
    log.prepare(4, "h4")
    assert log.to_commit(3) == [(1, "h1"), (2, "h2")]
    assert log.to_commit(0) == []
    assert log.pending() == ["h1", "h2", "h4"]
    log.committed(1)
    assert log.pending() == ["h2", "h4"]
    assert log.pending_entries() == [(2, "h2"), (4, "h4")]
    assert log.to_commit(10) == [(2, "h2"), (4, "h4")]
    assert len(log) == 2


def test_prepared_log_pending_keeps_an_aborted_checkpoints_txn() -> None:
    log = PreparedLog()
    log.prepare(5, "h5")  # checkpoint 5 is aborted: nothing is committed
    log.prepare(6, "h6")
    # Snapshot 6 must carry h5 as well, so a restore from 6 commits it.
    assert log.pending() == ["h5", "h6"]


def test_prepared_log_rejects_non_increasing_ids_and_unknown_commits() -> None:
    log = PreparedLog()
    log.prepare(3, "h3")
    with pytest.raises(TransactionStateError, match="checkpoint 3 was already prepared"):
        log.prepare(3, "again")
    with pytest.raises(TransactionStateError, match="ids must increase"):
        log.prepare(2, "older")
    with pytest.raises(TransactionStateError, match="checkpoint 9 has no prepared transaction"):
        log.committed(9)
