"""BarrierAligner: pure, synchronous barrier alignment (no event loop)."""

from __future__ import annotations

from streamflow.config import CheckpointingMode
from streamflow.core.elements import Barrier
from streamflow.core.ids import CheckpointId
from streamflow.runtime.alignment import AlignmentStep, BarrierAligner

EXACTLY_ONCE = CheckpointingMode.EXACTLY_ONCE
AT_LEAST_ONCE = CheckpointingMode.AT_LEAST_ONCE


def barrier(n: int) -> Barrier:
    return Barrier(CheckpointId(n), timestamp=float(n))


def test_exactly_once_holds_first_input_until_every_input_delivered_the_barrier() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)

    first = aligner.on_barrier(0, barrier(1))
    assert first == AlignmentStep(hold=True)
    assert aligner.aligning == 1

    second = aligner.on_barrier(1, barrier(1))
    assert second.trigger == barrier(1)
    assert second.hold is False
    assert second.abandoned is None
    assert aligner.aligning is None


def test_exactly_once_with_three_inputs_holds_each_until_the_last() -> None:
    aligner = BarrierAligner(3, EXACTLY_ONCE)
    assert aligner.on_barrier(2, barrier(4)).hold
    assert aligner.on_barrier(0, barrier(4)).hold
    step = aligner.on_barrier(1, barrier(4))
    assert step.trigger == barrier(4)
    assert not step.hold


def test_single_input_triggers_at_once_without_holding() -> None:
    aligner = BarrierAligner(1, EXACTLY_ONCE)
    step = aligner.on_barrier(0, barrier(1))
    assert step == AlignmentStep(trigger=barrier(1))


def test_at_least_once_never_holds_and_triggers_on_the_last_barrier() -> None:
    aligner = BarrierAligner(2, AT_LEAST_ONCE)
    first = aligner.on_barrier(1, barrier(1))
    assert first.hold is False
    assert first.trigger is None
    assert aligner.aligning == 1
    second = aligner.on_barrier(0, barrier(1))
    assert second.hold is False
    assert second.trigger == barrier(1)


def test_newer_barrier_abandons_the_older_alignment() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    assert aligner.on_barrier(0, barrier(1)).hold

    step = aligner.on_barrier(1, barrier(2))
    assert step.abandoned == 1
    assert step.hold is True
    assert step.trigger is None
    assert aligner.aligning == 2

    done = aligner.on_barrier(0, barrier(2))
    assert done.trigger == barrier(2)
    assert done.abandoned is None


def test_barrier_of_an_abandoned_checkpoint_is_stale() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    aligner.on_barrier(0, barrier(1))
    aligner.on_barrier(1, barrier(2))  # abandons 1
    assert aligner.on_barrier(1, barrier(1)) == AlignmentStep()
    assert aligner.aligning == 2


def test_abort_drops_the_alignment_and_reports_it() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    assert aligner.on_barrier(0, barrier(3)).hold
    assert aligner.abort(3) is True
    assert aligner.aligning is None
    # the late barrier 3 on the other input is stale now: nothing to hold or trigger
    assert aligner.on_barrier(1, barrier(3)) == AlignmentStep()


def test_abort_of_another_checkpoint_keeps_the_current_alignment() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    aligner.on_barrier(0, barrier(5))
    assert aligner.abort(4) is False
    assert aligner.aligning == 5
    assert aligner.on_barrier(1, barrier(5)).trigger == barrier(5)


def test_abort_before_any_barrier_makes_that_checkpoint_stale() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    assert aligner.abort(1) is False
    assert aligner.on_barrier(0, barrier(1)) == AlignmentStep()
    assert aligner.on_barrier(1, barrier(1)) == AlignmentStep()
    # the next checkpoint aligns normally
    assert aligner.on_barrier(0, barrier(2)).hold


def test_stale_barrier_after_completion_is_ignored() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    aligner.on_barrier(0, barrier(1))
    assert aligner.on_barrier(1, barrier(1)).trigger == barrier(1)
    assert aligner.on_barrier(0, barrier(1)) == AlignmentStep()
    assert aligner.aligning is None


def test_consecutive_checkpoints_align_independently() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    for n in (1, 2, 3):
        assert aligner.on_barrier(n % 2, barrier(n)).hold
        assert aligner.on_barrier((n + 1) % 2, barrier(n)).trigger == barrier(n)


# -- unaligned ------------------------------------------------------------------------------


def test_unaligned_triggers_on_the_first_barrier_and_says_when_the_last_came() -> None:
    aligner = BarrierAligner(3, EXACTLY_ONCE, unaligned=True)
    first = aligner.on_barrier(1, barrier(1))
    assert first == AlignmentStep(trigger=barrier(1), unaligned=True)
    assert aligner.in_flight and aligner.arrived == {1}
    assert aligner.on_barrier(0, barrier(1)) == AlignmentStep()
    assert aligner.on_barrier(2, barrier(1)) == AlignmentStep(in_flight_done=1)
    assert not aligner.in_flight and aligner.current is None
    assert aligner.on_barrier(2, barrier(1)) == AlignmentStep()  # stale now


def test_unaligned_with_one_input_is_done_at_the_trigger() -> None:
    aligner = BarrierAligner(1, EXACTLY_ONCE, unaligned=True)
    assert aligner.on_barrier(0, barrier(2)) == AlignmentStep(trigger=barrier(2), unaligned=True, in_flight_done=2)
    assert not aligner.in_flight


def test_a_savepoint_barrier_aligns_even_when_unaligned() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE, unaligned=True)
    savepoint = Barrier(CheckpointId(3), timestamp=3.0, is_savepoint=True)
    assert aligner.on_barrier(0, savepoint) == AlignmentStep(hold=True)
    assert aligner.go_unaligned() == AlignmentStep()  # a savepoint never switches either
    assert aligner.on_barrier(1, savepoint) == AlignmentStep(trigger=savepoint)


def test_an_aligned_timeout_switches_the_alignment_in_progress() -> None:
    aligner = BarrierAligner(3, EXACTLY_ONCE)  # aligned first: unaligned only by go_unaligned
    assert aligner.go_unaligned() == AlignmentStep()  # nothing aligning
    assert aligner.on_barrier(0, barrier(1)).hold
    switched = aligner.go_unaligned()
    assert switched == AlignmentStep(trigger=barrier(1), unaligned=True)
    assert aligner.arrived == {0} and aligner.in_flight
    assert aligner.go_unaligned() == AlignmentStep()  # already switched
    assert aligner.on_barrier(1, barrier(1)) == AlignmentStep()
    assert aligner.on_barrier(2, barrier(1)) == AlignmentStep(in_flight_done=1)


def test_unaligned_in_flight_checkpoint_is_abandoned_by_a_newer_barrier_and_dropped_by_abort() -> None:
    aligner = BarrierAligner(2, EXACTLY_ONCE, unaligned=True)
    aligner.on_barrier(0, barrier(1))
    step = aligner.on_barrier(1, barrier(2))  # channel 1 never got barrier 1 (aborted upstream)
    assert step == AlignmentStep(trigger=barrier(2), abandoned=1, unaligned=True)
    assert aligner.abort(2) and not aligner.in_flight


def test_a_barrier_taken_past_queued_records_makes_its_checkpoint_unaligned() -> None:
    """Aligned timeout: the task took barrier 1 out of the middle of channel 0. Holding
    channel 0 now would put the records it overtook after the snapshot (lost): it goes
    unaligned instead, whatever the other channels did so far."""
    aligner = BarrierAligner(2, EXACTLY_ONCE)
    assert aligner.on_barrier(0, barrier(1), overtaking=True) == AlignmentStep(trigger=barrier(1), unaligned=True)
    assert aligner.on_barrier(1, barrier(1)) == AlignmentStep(in_flight_done=1)
    assert aligner.on_barrier(0, barrier(2)).hold  # the next one starts aligned again
