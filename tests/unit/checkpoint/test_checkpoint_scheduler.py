from __future__ import annotations

import pytest

from streamflow.checkpoint.scheduler import CheckpointScheduler
from streamflow.config import CheckpointConfig
from streamflow.errors import CheckpointError


def scheduler(start_id: int = 0, started_at: float | None = 0.0, **config: float) -> CheckpointScheduler:
    return CheckpointScheduler(CheckpointConfig(**{"interval": 10.0, **config}), start_id, started_at=started_at)


def test_interval_from_previous_trigger() -> None:
    s = scheduler()
    assert s.next_trigger_time(0.0) == 10.0
    assert not s.should_trigger(9.99)
    assert s.should_trigger(10.0)
    assert s.on_triggered(10.5) == 1
    s.on_completed(1, 12.0)
    assert s.next_trigger_time(12.0) == 20.5
    assert not s.should_trigger(20.0)
    assert s.on_triggered(20.5) == 2


def test_first_checkpoint_due_at_once_without_start_time() -> None:
    s = scheduler(started_at=None)
    assert s.should_trigger(123.0)


def test_ids_continue_after_start_id() -> None:
    s = scheduler(start_id=41, max_concurrent=3)
    assert [s.on_triggered(t) for t in (10.0, 20.0, 30.0)] == [42, 43, 44]
    assert s.in_flight == (42, 43, 44)


def test_min_pause_from_end_of_last_checkpoint() -> None:
    s = scheduler(min_pause=8.0)
    s.on_triggered(10.0)
    assert s.next_trigger_time(15.0) is None  # in flight: its end is not known yet
    s.on_completed(1, 19.0)
    assert s.next_trigger_time(19.0) == 27.0  # 19 + 8 beats 10 + 10
    assert not s.should_trigger(26.9)
    assert s.should_trigger(27.0)


def test_min_pause_counts_from_abort_too() -> None:
    s = scheduler(min_pause=5.0, tolerable_failures=3)
    s.on_triggered(10.0)
    s.on_aborted(1, 18.0)
    assert s.next_trigger_time(18.0) == 23.0


def test_max_concurrent() -> None:
    s = scheduler(max_concurrent=2)
    s.on_triggered(10.0)
    assert s.next_trigger_time(10.0) == 20.0
    s.on_triggered(20.0)
    assert s.next_trigger_time(30.0) is None
    assert not s.should_trigger(1000.0)
    with pytest.raises(CheckpointError, match="no checkpoint is due"):
        s.on_triggered(1000.0)
    s.on_completed(1, 31.0)
    assert s.in_flight == (2,)
    assert s.should_trigger(31.0)


def test_force_trigger_ignores_interval_and_min_pause_not_max_concurrent() -> None:
    s = scheduler(min_pause=100.0)
    assert s.can_force_trigger()
    assert s.force_trigger(1.0) == 1
    assert not s.can_force_trigger()
    with pytest.raises(CheckpointError, match="max_concurrent is 1"):
        s.force_trigger(2.0)
    s.on_completed(1, 2.0)
    assert s.force_trigger(3.0) == 2  # min pause of 100 s ignored
    s.on_completed(2, 4.0)
    assert s.next_trigger_time(4.0) == 104.0


def test_forced_trigger_restarts_interval() -> None:
    s = scheduler()
    s.force_trigger(7.0)
    s.on_completed(1, 8.0)
    assert s.next_trigger_time(8.0) == 17.0


def test_tolerable_failures_counts_consecutive() -> None:
    s = scheduler(tolerable_failures=2)
    t = 10.0
    for expected in (False, False):
        assert s.on_aborted(s.on_triggered(t), t + 1) is expected
        t += 10
    assert s.consecutive_failures == 2
    s.on_completed(s.on_triggered(t), t + 1)  # success resets
    assert s.consecutive_failures == 0
    t += 10
    results = []
    for _ in range(3):
        results.append(s.on_aborted(s.on_triggered(t), t + 1))
        t += 10
    assert results == [False, False, True]


def test_zero_tolerance_fails_on_first_abort() -> None:
    s = scheduler()
    assert s.on_aborted(s.on_triggered(10.0), 11.0) is True


def test_subsumed_is_not_a_failure() -> None:
    s = scheduler(max_concurrent=2)
    s.on_triggered(10.0)
    s.on_triggered(20.0)
    s.on_completed(2, 25.0)
    s.on_subsumed(1)
    assert s.in_flight == ()
    assert s.consecutive_failures == 0


def test_unknown_id_rejected() -> None:
    s = scheduler()
    with pytest.raises(CheckpointError, match="not in flight"):
        s.on_completed(7, 1.0)
    s.on_completed(s.on_triggered(10.0), 11.0)
    with pytest.raises(CheckpointError, match="checkpoint 1 is not in flight"):
        s.on_aborted(1, 12.0)


def test_bad_start_id() -> None:
    with pytest.raises(CheckpointError, match="start_id"):
        scheduler(start_id=-1)
