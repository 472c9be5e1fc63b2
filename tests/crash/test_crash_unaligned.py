"""Crash and recovery with unaligned checkpoints, under backpressure.

``crash_job.py --unaligned`` is the file and SQLite crash job with unaligned checkpoints
and channels of 16 batches (and, in TIMED_OUT, an aligned timeout of 50 ms): its source reads far faster than the paced counting chain,
so the channels into that chain are full whenever a barrier comes, and every barrier
overtakes records that the checkpoint then holds as channel state. A real process is
killed at every named point (at checkpoint 5, as in test_crash_async.py: the first
checkpoints may come before the channels filled up), a new one restores,
and the committed output must equal a failure-free run record by record. After a crash
at a checkpoint-named point the restored process must have put in-flight records back
into its channels (``restored_in_flight``): the channel state was used, not empty.
"""

from __future__ import annotations

import pytest

from crash_harness import CrashLab, Scenario
from test_crash_async import POINTS, RESTORED_FROM
from test_crash_recovery import DOUBLE, _params, _reference, check_recovery, check_restored_from

pytestmark = pytest.mark.crash

SINGLE = [Scenario(sink, p, (point,), unaligned=True) for sink, p in (("file", 2), ("sqlite", 2)) for point in POINTS]
# aligned first, unaligned once a barrier waited 50 ms (queued, or aligning): under this
# backpressure most checkpoints switch, through the aligned-timeout path
TIMED_OUT = [Scenario("file", 2, (point,), unaligned=True, aligned_timeout=0.05) for point in POINTS]
TWICE = [Scenario("file", 2, DOUBLE, unaligned=True)]
REFERENCES = [
    Scenario("file", 2, unaligned=True), Scenario("sqlite", 2, unaligned=True),
    Scenario("file", 2, unaligned=True, aligned_timeout=0.05),
]


@pytest.mark.parametrize("scenario", _params(REFERENCES))
def test_the_failure_free_unaligned_run_persisted_records_in_flight(scenario: Scenario, crash_lab: CrashLab) -> None:
    summary = _reference(crash_lab, scenario).runs[-1].summary
    assert summary["checkpoints_completed"] >= 5, summary
    assert summary["unaligned_checkpoints"] >= 3, f"barriers overtook no records: not under backpressure? {summary}"


@pytest.mark.parametrize("scenario", _params(SINGLE + TIMED_OUT))
def test_exactly_once_with_unaligned_checkpoints_after_a_crash(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check_recovery(crash_lab, scenario)
    summary = result.runs[-1].summary
    if check_restored_from(result, RESTORED_FROM) != "records":  # records:N restores whatever checkpoint was last
        restored = summary["restored_from"]
        assert summary["restored_in_flight"] > 0, f"checkpoint {restored} held no records in flight\n{result.describe()}"


@pytest.mark.parametrize("scenario", _params(TWICE))
def test_exactly_once_with_unaligned_checkpoints_after_two_crashes(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check_recovery(crash_lab, scenario)
    assert result.runs[-1].summary["restored_in_flight"] > 0, result.describe()
