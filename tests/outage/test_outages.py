"""A broker or database away for a minute is ridden out by the default restart strategy,
with no person involved, and quietly.

Each scenario (outage_harness.py) stops the job's real server mid-run (Kafka broker or
MariaDB, SIGTERM), keeps it away 60 s and starts it again on the same port and data
directory. The job runs with the defaults (exponential-delay restarts): its attempts fail
while the server is away, it resumes from its latest checkpoint once the server is back,
and the committed output is exact: every (key, count) once, no transaction left open.
While the server is away the job must stay quiet: a bounded number of log lines and
little CPU (the broker outage used to bring ~14,000 aiokafka ERROR lines a second and a
busy core).
"""

from __future__ import annotations

from collections import Counter

import pytest

from outage_harness import MEASURED, OUTAGE, OutageLab, OutageRun
from outage_job import expected_results

EXPECTED = Counter(expected_results())
LOG_LINES_MEASURED = 100  # log lines in the first 30 s of the outage, at most
CPU_MEASURED = 1.5  # CPU seconds of the job process in the first 30 s of the outage, at most


def check(run: OutageRun) -> None:
    assert run.returncode == 0, f"the job did not finish (exit {run.returncode}):\n{run.log_tail()}"
    assert run.summary["attempts"] >= 2, "the outage should have failed attempts; the restart strategy brought it back"
    assert run.results == EXPECTED, f"{sum((run.results - EXPECTED).values())} duplicates, " \
                                    f"{sum((EXPECTED - run.results).values())} lost"
    assert not run.left_open
    measured = run.lines_between(0, MEASURED)
    assert len(measured) < LOG_LINES_MEASURED, "\n".join(measured[:60])
    assert run.cpu_measured < CPU_MEASURED
    print(f"{run.kind}: {run.seconds:.0f} s in all; back {run.recovered_after:.1f} s after the server; "
          f"{run.summary['attempts']} attempts; log lines {len(measured)} in the first {MEASURED:.0f} s of the "
          f"outage, {len(run.lines_between(0, OUTAGE))} in {OUTAGE:.0f} s; CPU {run.cpu_measured:.2f} s / "
          f"{run.cpu_outage:.2f} s")


@pytest.mark.outage("kafka")
@pytest.mark.timeout(300)
def test_a_kafka_broker_away_for_a_minute_is_ridden_out_exactly_and_quietly(outage_lab: OutageLab) -> None:
    check(outage_lab.result("kafka"))


@pytest.mark.outage("mysql")
@pytest.mark.timeout(300)
def test_a_mariadb_away_for_a_minute_is_ridden_out_exactly_and_quietly(outage_lab: OutageLab) -> None:
    check(outage_lab.result("mysql"))
