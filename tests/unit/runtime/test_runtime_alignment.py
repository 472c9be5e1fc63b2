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
