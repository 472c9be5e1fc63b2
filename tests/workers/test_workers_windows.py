"""Event time across the exchange between workers: an event-time tumbling window after a
key_by on 2 worker processes gives the one-process results record by record (each window
once, with its timestamp), also with a worker killed once at a named point; and a
worker whose input partitions are idle does not hold back the other worker's windows.

The job (``windows_job``) runs as real processes through ``streamflow run --workers``;
the exchange and the output are real Kafka topics, the output read back by an
independent read_committed client.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

import windows_job
import workers_job
from streamflow.testing.kafka import create_topic, unique_topic
from worker_processes import (
    job_environment,
    open_transactions,
    output_rows,
    produce_records,
    run_arguments,
    start_job,
    wait_for_output,
)

RECORDS = 1200
KEYS = 12
PACE = 0.005  # seconds per record and pace subtask: the runs span many checkpoints
CRASH = "after_pre_commit:3"  # exchange and output transactions prepared, not committed


async def new_settings(bootstrap: str, **changes: Any) -> windows_job.WindowSettings:
    settings = windows_job.WindowSettings(
        bootstrap=bootstrap, input=unique_topic("win-in"), output=unique_topic("win-out"), **changes
    )
    await create_topic(bootstrap, settings.input, workers_job.PARTITIONS)
    await create_topic(bootstrap, settings.output, 2)
    return settings


def exchange_topic(job: str) -> str:
    return f"streamflow.{job}.pace.window.0"


@pytest.mark.crash
@pytest.mark.timeout(400)
async def test_windows_after_an_exchange_on_two_workers_equal_the_one_process_run_also_through_a_crash(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    records = [windows_job.record(i, KEYS) for i in range(RECORDS)]
    expected = windows_job.expected_windows(records)
    settings = await new_settings(kafka_bootstrap, pace=PACE)
    await produce_records(settings, records)  # type: ignore[arg-type]  # bootstrap and input

    async def run(label: str, workers: int | None, crashed: int | None = None) -> list[dict[str, Any]]:
        root = tmp_path / label
        mine = windows_job.WindowSettings(
            bootstrap=kafka_bootstrap, input=settings.input, output=unique_topic(f"win-out-{label}"),
            pace=PACE, crash_worker=crashed, checkpoint_root=root / "chk",
        )
        await create_topic(kafka_bootstrap, mine.output, 2)
        job = f"win-{label}-{unique_topic('j')[-6:]}"
        args = run_arguments(mine, job=job, root=root / "chk", workers=workers, entry="windows_job:build")  # type: ignore[arg-type]
        crash = CRASH if crashed is not None else None
        process = await start_job(args, job_environment(mine, root / "home", crash=crash), label)  # type: ignore[arg-type]
        assert await process.wait(300) == 0, process.describe()
        if crashed is not None:
            log = process.stderr.decode()
            assert log.count("injected crash") == 1, process.describe()
            restarts = re.findall(r"worker (\d+) \(pid \d+\) ended with exit code 137; restarting it alone", log)
            assert restarts == [str(crashed)], process.describe()
        rows = await wait_for_output(mine, len(expected), timeout=30.0)  # type: ignore[arg-type]
        topics = [mine.output, *([exchange_topic(job)] if workers else [])]
        assert await open_transactions(kafka_bootstrap, topics) == {}, label
        return windows_job.rows_in_order(rows)

    reference, two, crashed = await asyncio.gather(run("one", None), run("two", 2), run("crash", 2, crashed=1))
    assert len(expected) > 300  # many windows per key, every key on both workers' sides
    assert reference == expected, "the one-process run differs from the windows of its input"
    assert two == reference, "2 workers differ from the one-process run"
    assert crashed == reference, "2 workers with one killed differ from the one-process run"


@pytest.mark.timeout(200)
async def test_a_worker_whose_input_is_idle_does_not_hold_back_the_windows_of_the_other(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Records in one input partition only: every other source subtask, on both workers,
    turns idle; the windows after the exchange still fire up to the busy partition's
    event time while the job runs on (unbounded input), each once."""
    busy = workers_job.partition_of("k0")
    keys = [f"k{i}" for i in range(40) if workers_job.partition_of(f"k{i}") == busy]
    assert len(keys) >= 2
    records = [{"id": i, "key": keys[i % len(keys)], "ts": windows_job.START + i * 0.25} for i in range(170)]
    expected = windows_job.fired_windows(records)  # event time ends mid-window: the last one stays open
    settings = await new_settings(kafka_bootstrap, bounded=False, idleness=1.0, checkpoint_root=tmp_path / "chk")
    await produce_records(settings, records)  # type: ignore[arg-type]
    job = f"win-idle-{unique_topic('j')[-6:]}"
    args = run_arguments(settings, job=job, root=tmp_path / "chk", workers=2, entry="windows_job:build")  # type: ignore[arg-type]
    process = await start_job(args, job_environment(settings, tmp_path / "home"), "idle")  # type: ignore[arg-type]
    rows = await wait_for_output(settings, len(expected), timeout=120.0, runs=[process])  # type: ignore[arg-type]
    await asyncio.sleep(2.0)  # a few more checkpoints: nothing else may fire
    rows = await output_rows(kafka_bootstrap, settings.output)
    assert process.process.returncode is None, "the unbounded job ended"
    assert windows_job.rows_in_order(rows) == expected
