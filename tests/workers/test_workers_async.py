"""map_async across workers: the inputs of calls in flight are operator state, restored
by the worker that owns their key.

``workers_job`` with a lookup delay puts a per-key ``map_async`` (slow calls) between
two exchanges: ``enrich -> key_by -> lookup -> key_by -> count``. Three
workers of one subtask each: with 4 exchange partitions their key groups (0-63, 64-95,
96-127) are not Flink's even split of 128 over 3 (0-42, 43-85, 86-127), so a restored
call input must be kept by the key groups its exchange partitions bring (worker 1 owns
k4, k13, k18, k26 and, outside Flink's split, k1 and k7). In worker 1's first process
the lookup service stops answering, and the process dies at the completion of a
checkpoint taken while it held calls in flight (``workers_job.StalledService``); the
supervisor starts it again alone, it restores that checkpoint's held inputs and calls
them again. The input is unbounded: a bounded one would end, and the lookup's end of
input waits for its calls, so no checkpoint of a stalled service would complete. Once
the output read back by an independent read_committed client holds every record once,
each key counted 1..n in its input order, the job is stopped.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

import workers_job
from streamflow.testing.kafka import create_topic, unique_topic
from worker_processes import (
    all_codes,
    cli,
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

RECORDS = 900
KEYS = 30
LOOKUP_DELAY = 0.05  # seconds per call; one call per key at a time: the run spans many checkpoints


@pytest.mark.crash
@pytest.mark.timeout(300)
async def test_map_async_on_workers_restores_its_calls_in_flight_on_the_worker_that_owns_their_key(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    root = tmp_path / "chk"
    settings = await new_settings(
        kafka_bootstrap, bounded=False, lookup_delay=LOOKUP_DELAY, stall_lookup=True, crash_worker=1,
        checkpoint_root=root,
    )
    settings = replace(settings, output=unique_topic("w-async-out"))
    await create_topic(kafka_bootstrap, settings.output, 2)
    records = [workers_job.record(i, KEYS) for i in range(RECORDS)]
    await produce_codes(settings, all_codes())
    await produce_records(settings, records)
    job = "async"
    home = tmp_path / "home"
    env = job_environment(settings, home)
    extra = ("--log-level", "INFO", "--exchange-partitions", "4", "--savepoint-dir", str(tmp_path / "savepoints"))
    run = await start_job(
        run_arguments(settings, job=job, root=root, workers=3, parallelism=1, extra=extra), env, "async on 3 workers"
    )
    rows = await wait_for_output(settings, RECORDS, timeout=120.0, runs=[run])
    code, out, err = await cli(["stop", job], env)
    assert code == 0, f"stop: {out}\n{err}"
    assert await run.wait(60) == 0, run.describe()
    log = run.stderr.decode()
    assert log.count("injected crash") == 1, run.describe()
    restarts = re.findall(r"worker (\d+) \(pid \d+\) ended with exit code 137; restarting it alone", log)
    assert restarts == ["1"], run.describe()
    again = re.findall(r"async operator 'lookup' subtask (\d+) calls again (\d+) input", log)
    assert [subtask for subtask, _ in again] == ["1"] and int(again[0][1]) > 0, run.describe()
    check_exact(rows, records, "map_async on 3 workers, worker 1 killed")
    assert await open_transactions(kafka_bootstrap, [settings.output, *exchange_topics(job, lookup=True)]) == {}
