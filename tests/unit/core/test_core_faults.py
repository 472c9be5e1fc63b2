"""The fault injector of one job run: injected state write failures (which checkpoints of
which operator fail, until disarmed), crash points firing once, and arming from the
environment as the crash suite does."""

from __future__ import annotations

import pytest

from streamflow.core.faults import FaultInjector, InjectedFault


def test_every_kth_checkpoint_of_the_armed_operator_fails_until_disarmed() -> None:
    faults = FaultInjector()
    faults.fail_state_writes("sink", 4)
    failed = []
    for checkpoint_id in range(1, 13):
        try:
            faults.state_write("sink", checkpoint_id)
        except InjectedFault as exc:
            failed.append(checkpoint_id)
            assert str(exc) == f"injected failure writing the state of 'sink' in checkpoint {checkpoint_id}"
        faults.state_write("other", checkpoint_id)  # other operators write as usual
    assert failed == [4, 8, 12]
    faults.arm("after_commit", 2)  # a crash point can be armed alongside
    with pytest.raises(InjectedFault):
        faults.state_write("sink", 16)
    faults.disarm()
    faults.state_write("sink", 16)


def test_the_divisor_must_be_a_positive_int() -> None:
    with pytest.raises(ValueError, match="every >= 1"):
        FaultInjector().fail_state_writes("sink", 0)


def test_a_crash_point_fires_once_at_its_checkpoint_and_only_in_its_injector() -> None:
    armed, other = FaultInjector(), FaultInjector()
    armed.arm("after_barrier", 3, action="raise")
    armed.hit("after_barrier", 2)
    armed.hit("after_commit", 3)  # another point
    other.hit("after_barrier", 3)  # another job's injector: nothing armed there
    with pytest.raises(InjectedFault, match="after_barrier of checkpoint 3"):
        armed.hit("after_barrier", 3)
    armed.hit("after_barrier", 4)  # fired once: a restarted attempt passes


def test_the_records_point_counts_what_sinks_wrote() -> None:
    faults = FaultInjector()
    faults.arm("records", 10, action="raise")
    faults.records_written(6)
    with pytest.raises(InjectedFault, match="records after 12 records written"):
        faults.records_written(6)


def test_arming_from_the_environment() -> None:
    armed = FaultInjector.from_environment({"STREAMFLOW_CRASH": "metadata_write:4", "STREAMFLOW_CRASH_ACTION": "raise"})
    armed.hit("metadata_write", 3)
    with pytest.raises(InjectedFault):
        armed.hit("metadata_write", 4)
    FaultInjector.from_environment({}).hit("metadata_write", 4)  # nothing armed
    with pytest.raises(ValueError, match="unknown crash point 'typo'"):
        FaultInjector.from_environment({"STREAMFLOW_CRASH": "typo:1"})
