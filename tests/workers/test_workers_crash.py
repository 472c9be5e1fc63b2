"""A worker killed at each named point while the others run: the supervisor restarts it
alone, it restores from its own checkpoints, and the output is exact.

Each scenario runs ``streamflow run workers_job:build --workers N`` (the supervisor and
N worker processes) on bounded input paced over many checkpoints; one worker's first
process is armed to die at the point (``os._exit``, as close to SIGKILL as Python
gets), the supervisor starts it again, unarmed, and the job completes. Then the output
read back by an independent read_committed client holds every record once with its
exact count and types, no transaction is left open on the output or exchange topics,
and the other workers were never restarted. The scenarios run at the same time (the
processes mostly wait).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import workers_job
from streamflow.testing.kafka import create_topic, unique_topic
from worker_processes import (
    all_codes,
    check_exact,
    exchange_topics,
    job_environment,
    new_settings,
    open_transactions,
    produce_codes,
    produce_records,
    run_arguments,
    start_job,
    wait_for_output,
)

RECORDS = 1200
KEYS = 30
PACE = 0.004  # seconds per record and parse subtask: each run spans many checkpoints


@dataclass(frozen=True, slots=True)
class Scenario:
    point: str
    workers: int
    crashed: int  # the index of the worker that dies


SCENARIOS = [
    Scenario("records:150", 2, 1),
    Scenario("after_barrier:3", 3, 2),
    Scenario("after_pre_commit:3", 2, 0),
    Scenario("metadata_write:3", 3, 1),
    Scenario("after_completion:3", 2, 1),
    Scenario("after_commit:3", 2, 0),
]


@pytest.mark.crash
@pytest.mark.timeout(400)
async def test_a_worker_killed_at_each_named_point_restarts_alone_and_the_output_is_exact(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    base = await new_settings(kafka_bootstrap, bounded=True, pace=PACE)
    records = [workers_job.record(i, KEYS) for i in range(RECORDS)]
    await produce_codes(base, all_codes())
    await produce_records(base, records)

    async def scenario(number: int, case: Scenario) -> None:
        where = f"{case} "
        root = tmp_path / f"s{number}"
        settings = replace(
            base, output=unique_topic("w-crash-out"), crash_worker=case.crashed, checkpoint_root=root / "chk"
        )
        await create_topic(kafka_bootstrap, settings.output, 2)
        job = f"crash{number}-{unique_topic('j')[-6:]}"
        args = run_arguments(settings, job=job, root=root / "chk", workers=case.workers)
        run = await start_job(args, job_environment(settings, root / "home", crash=case.point), where)
        assert await run.wait(300) == 0, run.describe()
        log = run.stderr.decode()
        assert log.count("injected crash") == 1, run.describe()
        restarts = re.findall(r"worker (\d+) \(pid \d+\) ended with exit code 137; restarting it alone", log)
        assert restarts == [str(case.crashed)], run.describe()  # the others were never restarted
        rows = await wait_for_output(settings, RECORDS, timeout=30.0)
        check_exact(rows, records, where)
        assert await open_transactions(kafka_bootstrap, [settings.output, *exchange_topics(job)]) == {}, where

    await asyncio.gather(*(scenario(i, case) for i, case in enumerate(SCENARIOS)))
