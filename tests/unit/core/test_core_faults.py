"""Injected state write failures (``faults.fail_state_writes``): which checkpoints of
which operator fail, and that disarming ends them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamflow.core import faults


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


def test_every_kth_checkpoint_of_the_armed_operator_fails_until_disarmed() -> None:
    faults.fail_state_writes("sink", 4)
    failed = []
    for checkpoint_id in range(1, 13):
        try:
            faults.state_write("sink", checkpoint_id)
        except faults.InjectedFault as exc:
            failed.append(checkpoint_id)
            assert str(exc) == f"injected failure writing the state of 'sink' in checkpoint {checkpoint_id}"
        faults.state_write("other", checkpoint_id)  # other operators write as usual
    assert failed == [4, 8, 12]
    faults.arm("after_commit", 2)  # a crash point can be armed alongside
    with pytest.raises(faults.InjectedFault):
        faults.state_write("sink", 16)
    faults.disarm()
    faults.state_write("sink", 16)


def test_the_divisor_must_be_a_positive_int() -> None:
    with pytest.raises(ValueError, match="every >= 1"):
        faults.fail_state_writes("sink", 0)
