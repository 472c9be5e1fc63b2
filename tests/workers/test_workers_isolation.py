"""A worker killed again and again while the others keep committing; every worker shown
by ``streamflow list`` and ``status``; one ``streamflow stop`` stops them all with a
savepoint set.

Three workers (``streamflow run workers_job:build --workers 3``) read input that keeps
coming. The test SIGKILLs worker 1 four times; each time, while it is down, the other
workers complete checkpoints (their sinks commit at each), and their processes are never
restarted (same pids); the supervisor starts worker 1 again alone. (What they commit
becomes visible to read_committed readers of a partition once the killed worker's open
transaction there is aborted, by its restart: Kafka holds a partition's readers at its
oldest open transaction.) Then the input stops, the output becomes
exact, ``list``/``status`` show each worker with its last checkpoint and its lag per
exchange topic, and ``stop`` takes a complete savepoint set and ends every worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import workers_job
from streamflow.control import JobEntry, send_command
from streamflow.savepoint.sets import read_set_manifest
from worker_processes import (
    all_codes,
    check_exact,
    cli,
    exchange_topics,
    job_environment,
    kill,
    new_settings,
    open_transactions,
    produce_codes,
    produce_records,
    registered_workers,
    run_arguments,
    start_job,
    wait_for_output,
    wait_for_workers,
)

KEYS = 30
WAVE = 60  # records per wave of input
WAVE_PAUSE = 0.25
KILLS = 4


async def completed_checkpoints(entry: JobEntry) -> int:
    """How many checkpoints the worker of ``entry`` has completed (its control socket)."""
    status = await send_command(entry, "status", timeout=10.0)
    return int(status["metrics"]["checkpoints"]["completed"])


@pytest.mark.crash
@pytest.mark.timeout(300)
async def test_a_worker_killed_repeatedly_restarts_alone_while_the_others_keep_committing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await new_settings(kafka_bootstrap)
    await produce_codes(settings, all_codes())
    job, home = "isolation", tmp_path / "home"
    env = job_environment(settings, home)
    args = run_arguments(settings, job=job, root=tmp_path / "chk", workers=3, extra=("--savepoint-dir", str(tmp_path / "sp")))
    run = await start_job(args, env, "3 workers")
    records: list[dict[str, object]] = []
    feeding = True

    async def feed() -> None:
        while feeding:
            wave = [workers_job.record(len(records) + i, KEYS) for i in range(WAVE)]
            await produce_records(settings, wave)
            records.extend(wave)
            await asyncio.sleep(WAVE_PAUSE)

    feeder = asyncio.create_task(feed())
    try:
        workers = await wait_for_workers(home, job, 3)
        others = {e.worker.index: e.pid for e in workers if e.worker is not None and e.worker.index != 1}
        await wait_for_output(settings, WAVE, timeout=60.0, runs=[run])
        for _ in range(KILLS):
            entries = await wait_for_workers(home, job, 3)
            victim = next(e for e in entries if e.worker and e.worker.index == 1)
            survivors = [e for e in entries if e is not victim]
            before = [await completed_checkpoints(e) for e in survivors]
            kill(victim.pid)
            went_on = False
            deadline = time.monotonic() + 60
            while True:  # until the supervisor's new worker 1 registered
                back = [e for e in registered_workers(home, job) if e.worker and e.worker.index == 1 and e.pid != victim.pid]
                if not went_on:
                    now = [await completed_checkpoints(e) for e in survivors]
                    went_on = all(n > b for n, b in zip(now, before))
                if back:
                    break
                assert time.monotonic() < deadline and run.process.returncode is None, run.describe()
                await asyncio.sleep(0.1)
            assert went_on, "the other workers completed no checkpoint while worker 1 was down"
        current = {e.worker.index: e.pid for e in await wait_for_workers(home, job, 3) if e.worker and e.worker.index != 1}
        assert current == others  # never restarted
    finally:
        feeding = False
        await feeder

    rows = await wait_for_output(settings, len(records), timeout=90.0, runs=[run])
    check_exact(rows, records, "after the kills")  # type: ignore[arg-type]

    code, out, err = await cli(["list", "--json"], env)
    assert code == 0, err
    listed = [job_ for job_ in json.loads(out) if job_["name"] == job]
    assert sorted(j["worker"]["index"] for j in listed) == [0, 1, 2]
    assert {j["status"] for j in listed} == {"running"}
    code, out, err = await cli(["status", job, "--json"], env)
    assert code == 0, err
    statuses = json.loads(out)
    assert [s["worker"]["index"] for s in statuses] == [0, 1, 2]
    for status in statuses:
        history = status["metrics"]["checkpoints"]["history"]
        assert any(r["status"] == "completed" for r in history)
        behind = {  # each exchange reader's records behind its topic (Kafka's pendingRecords)
            op["uid"] for op in status["metrics"]["operators"].values()
            if op["kind"] == "source" and "pendingRecords" in op["connector"]
        }
        assert behind >= {"enrich->count.0.exchange-reader", "parse-codes->enrich.1.exchange-reader"}
    code, out, err = await cli(["status", job], env)
    assert code == 0 and out.count("worker ") >= 3 and "enrich->count.0.exchange-reader" in out, out

    code, out, err = await cli(["stop", job], env)
    assert code == 0, f"{out}\n{err}"
    manifest = read_set_manifest(Path(out.strip()))
    assert manifest is not None and manifest.workers == 3 and manifest.exchanged
    assert await run.wait(60) == 0, run.describe()
    assert await open_transactions(kafka_bootstrap, [settings.output, *exchange_topics(job)]) == {}
