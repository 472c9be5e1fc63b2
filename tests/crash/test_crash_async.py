"""Crash and recovery of a Kafka -> map_async -> exactly-once Kafka job, with calls in
flight whenever it is killed.

``crash_job.py --sink kafka-async`` is the Kafka crash job with an async enrichment in
place of its paced map (up to 32 calls in flight per subtask, a few ms each, every
61st line failing its first attempt and retried), in input order; ``kafka-async-per-key``
puts a second ``key_by`` in front of it and keeps order per key. A real process is
killed at every named point (test_crash_recovery.py lists them), a new one restores, and
the committed output must equal a failure-free run record by record: no loss, no
duplicate (no result emitted twice), per key the counts 1..n in commit order (so the
order promised was kept across the restore). After a crash at a checkpoint-named point
the restored process must have called again the inputs that were in flight at its
checkpoint (``async_restored_inputs``).
"""

from __future__ import annotations

import pytest

from crash_harness import CrashLab, Scenario
import crash_job
from test_crash_recovery import DOUBLE, _params, check_recovery, check_restored_from

pytestmark = pytest.mark.crash

# The named points of test_crash_recovery.py, at checkpoint 5 rather than 2: the first
# checkpoint may come before any record reached the async operator, and a restore from
# it would call nothing again. Checkpoint 4 is always aborted (crash_job.ABORT_EVERY).
assert crash_job.ABORT_EVERY == 4
POINTS = (
    f"records:{crash_job.TOTAL_RECORDS // 3}",
    "after_barrier:5",
    "after_pre_commit:5",
    "metadata_write:5",
    "after_completion:5",
    "after_commit:5",
)
RESTORED_FROM = {  # (min, max) of the checkpoint the process after the crash restores
    "records": (1, None),
    "after_barrier": (3, 3),
    "after_pre_commit": (3, 3),
    "metadata_write": (3, 3),
    "after_completion": (5, 5),
    "after_commit": (5, None),
}
ORDERED = [Scenario("kafka-async", p, (point,)) for p in (1, 2) for point in POINTS]
PER_KEY = [Scenario("kafka-async-per-key", 2, (point,)) for point in POINTS]
TWICE = [Scenario(sink, 2, DOUBLE) for sink in ("kafka-async", "kafka-async-per-key")]


@pytest.mark.parametrize("scenario", _params([ORDERED[0].reference, ORDERED[-1].reference, PER_KEY[0].reference]))
def test_the_failure_free_async_run_retried_the_flaky_calls_and_spans_checkpoints(
    scenario: Scenario, crash_lab: CrashLab
) -> None:
    summary = crash_lab.result(scenario).runs[-1].summary
    assert summary["async_retries"] >= 1 and summary["async_restored_inputs"] == 0, summary
    assert summary["checkpoints_completed"] >= 3, summary


@pytest.mark.parametrize("scenario", _params(ORDERED + PER_KEY))
def test_exactly_once_through_map_async_after_a_crash(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check_recovery(crash_lab, scenario)
    summary = result.runs[-1].summary
    point = check_restored_from(result, RESTORED_FROM)
    restored = summary["restored_from"]
    if point != "records":  # records:N restores whatever checkpoint was last, perhaps one taken while
        # the source was starved and nothing was in flight; the checkpoint-named points restore
        # mid-run checkpoints (3 or 5), taken with calls in flight
        assert summary["async_restored_inputs"] > 0, f"no call in flight at checkpoint {restored}?\n{result.describe()}"


@pytest.mark.parametrize("scenario", _params(TWICE))
def test_exactly_once_through_map_async_after_two_crashes(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check_recovery(crash_lab, scenario)
    summary = result.runs[-1].summary
    assert summary["restored_from"] == 3 and summary["async_restored_inputs"] > 0, result.describe()
