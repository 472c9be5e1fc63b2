from __future__ import annotations

import pickle

import pytest

from streamflow.checkpoint.metadata import StateHandle
from streamflow.checkpoint.pending import (
    ALLOWED_TRANSITIONS,
    CheckpointStatus,
    PendingCheckpoint,
    check_transition,
)
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointAbortedError, CheckpointError

S = CheckpointStatus
HANDLE = StateHandle(file="count-0", size=1, sha256="0" * 64)


def make(expected: set[tuple[str, int]] | None = None) -> PendingCheckpoint:
    return PendingCheckpoint(
        CheckpointId(5), trigger_time=10.0, expected=expected or {("src", 0), ("count", 0)}, deadline=70.0
    )


def test_happy_path() -> None:
    pending = make()
    assert pending.status is S.PENDING
    assert pending.acknowledge(("src", 0), None) is False
    assert not pending.is_fully_acknowledged
    assert pending.not_yet_acknowledged == {("count", 0)}
    assert pending.acknowledge(("count", 0), HANDLE) is True
    assert pending.is_fully_acknowledged
    assert dict(pending.handles) == {("count", 0): HANDLE}
    pending.start_completing()
    assert pending.status is S.COMPLETING
    pending.complete()
    assert pending.status is S.COMPLETED


def test_duplicate_ack_rejected() -> None:
    pending = make()
    pending.acknowledge(("src", 0), None)
    with pytest.raises(CheckpointError, match=r"second ack from task \('src', 0\)"):
        pending.acknowledge(("src", 0), None)


def test_unexpected_ack_rejected() -> None:
    with pytest.raises(CheckpointError, match=r"unexpected task \('other', 3\)"):
        make().acknowledge(("other", 3), None)


def test_late_ack_after_abort() -> None:
    pending = make()
    pending.abort("timed out")
    assert pending.abort_reason == "timed out"
    with pytest.raises(CheckpointAbortedError, match="aborted \\(timed out\\)"):
        pending.acknowledge(("src", 0), None)


def test_ack_while_completing_rejected() -> None:
    pending = make({("src", 0)})
    pending.acknowledge(("src", 0), None)
    pending.start_completing()
    with pytest.raises(CheckpointError, match="COMPLETING and takes no more acks"):
        pending.acknowledge(("src", 0), None)


def test_cannot_complete_before_all_acks() -> None:
    pending = make()
    pending.acknowledge(("src", 0), None)
    with pytest.raises(CheckpointError, match=r"no ack yet from \[\('count', 0\)\]"):
        pending.start_completing()
    assert pending.status is S.PENDING


def test_illegal_transitions_name_both_states() -> None:
    pending = make()
    with pytest.raises(CheckpointError, match="illegal transition PENDING -> COMPLETED"):
        pending.complete()
    pending.abort("declined")
    with pytest.raises(CheckpointError, match="illegal transition ABORTED -> ABORTED"):
        pending.abort("again")
    with pytest.raises(CheckpointError, match="illegal transition ABORTED -> COMPLETING"):
        pending.start_completing()


def test_completed_cannot_abort() -> None:
    pending = make({("src", 0)})
    pending.acknowledge(("src", 0), None)
    pending.start_completing()
    pending.complete()
    with pytest.raises(CheckpointError, match="illegal transition COMPLETED -> ABORTED"):
        pending.abort("too late")


def test_abort_while_completing_allowed() -> None:
    pending = make({("src", 0)})
    pending.acknowledge(("src", 0), None)
    pending.start_completing()
    pending.abort("metadata write failed")
    assert pending.status is S.ABORTED


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_transition_table(current: CheckpointStatus, target: CheckpointStatus) -> None:
    legal = {(S.PENDING, S.COMPLETING), (S.PENDING, S.ABORTED), (S.COMPLETING, S.COMPLETED), (S.COMPLETING, S.ABORTED)}
    assert (target in ALLOWED_TRANSITIONS[current]) == ((current, target) in legal)
    if (current, target) in legal:
        check_transition(1, current, target)
    else:
        with pytest.raises(CheckpointError, match=f"{current.name} -> {target.name}") as info:
            check_transition(1, current, target)
        clone = pickle.loads(pickle.dumps(info.value))
        assert str(clone) == str(info.value)
        assert clone.current is current


def test_expiry_only_while_pending() -> None:
    pending = make({("src", 0)})
    assert not pending.is_expired(69.9)
    assert pending.is_expired(70.0)
    pending.acknowledge(("src", 0), None)
    pending.start_completing()
    assert not pending.is_expired(100.0)


def test_needs_expected_tasks() -> None:
    with pytest.raises(CheckpointError, match="expects no acknowledgements"):
        PendingCheckpoint(CheckpointId(1), 0.0, set(), 1.0)
