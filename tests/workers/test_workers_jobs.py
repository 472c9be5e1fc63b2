"""One job on 1, 2 and 3 worker processes equals the failure-free reference, record by
record; a misconfigured worker is refused at start-up, through the command line, with
what to change.

The job (``workers_job``: Kafka -> parse -> enrich by a broadcast table -> key_by ->
keyed count -> Kafka exactly-once) runs as real processes: ``streamflow run
workers_job:build --workers N`` starts N workers and supervises them; exchanges go
through the real broker. The output is read back by an independent read_committed
client.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

import workers_job
from streamflow.testing.kafka import create_topic, unique_topic
from worker_processes import (
    all_codes,
    check_exact,
    cli,
    exchange_topics,
    job_environment,
    new_settings,
    open_transactions,
    produce_codes,
    produce_records,
    run_arguments,
    start_job,
    wait_for_output,
    wait_for_workers,
)

RECORDS = 3000
KEYS = 40
RUN_TIMEOUT = 150.0


@pytest.mark.timeout(300)
async def test_the_keyed_count_on_one_two_and_three_workers_equals_the_failure_free_reference(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await new_settings(kafka_bootstrap, bounded=True)
    records = [workers_job.record(i, KEYS) for i in range(RECORDS)]
    await produce_codes(settings, all_codes())
    await produce_records(settings, records)

    async def run(workers: int | None) -> list[dict[str, object]]:
        label = "reference" if workers is None else f"w{workers}"
        mine = replace(settings, output=unique_topic(f"w-out-{label}"))
        await create_topic(kafka_bootstrap, mine.output, 2)
        job = f"count-{label}-{unique_topic('j')[-8:]}"
        args = run_arguments(mine, job=job, root=tmp_path / label / "chk", workers=workers)
        process = await start_job(args, job_environment(mine, tmp_path / label / "home"), label)
        assert await process.wait(RUN_TIMEOUT) == 0, process.describe()
        rows = await wait_for_output(mine, RECORDS, timeout=30.0)
        topics = [mine.output, *(exchange_topics(job) if workers and workers > 1 else [])]
        assert await open_transactions(kafka_bootstrap, topics) == {}, label
        return rows

    reference, *scaled = await asyncio.gather(run(None), run(1), run(2), run(3))
    check_exact(reference, records, "reference")
    by_id = {row["id"]: row for row in reference}
    for workers, rows in zip((1, 2, 3), scaled):
        check_exact(rows, records, f"{workers} workers")
        assert {row["id"]: row for row in rows} == by_id, f"{workers} workers differ from the reference"


@pytest.mark.timeout(300)
async def test_each_misconfigured_worker_is_refused_at_start_up_saying_what_to_change(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """While worker 0 of 2 runs, workers started wrongly on its checkpoint root are
    refused (exit 2) before they read anything; then the right worker 1 completes the
    job, and the output is exact: nothing was read twice or lost."""
    settings = await new_settings(kafka_bootstrap, bounded=True)
    records = [workers_job.record(i, KEYS) for i in range(600)]
    await produce_codes(settings, all_codes())
    await produce_records(settings, records)
    job, root, home = "refusals", tmp_path / "chk", tmp_path / "home"
    env = job_environment(settings, home)

    def args(index: int | None, *, workers: int | None = 2, extra: tuple[str, ...] = (), **changes: object) -> list[str]:
        chosen = {"job": job, "root": root, "workers": workers, "index": index, **changes}
        return run_arguments(settings, extra=extra, **chosen)  # type: ignore[arg-type]

    async def refused(arguments: list[str], *expected: str) -> None:
        code, out, err = await cli(arguments, env)
        assert code == 2, f"{arguments}: exit {code}\n{out}\n{err}"
        for text in expected:
            assert text in err, f"{arguments}: {text!r} not in\n{err}"

    # Refused when the job is built, before any process touches the root:
    await asyncio.gather(
        refused(args(0, workers=3, extra=("--exchange-partitions", "2")), "3 workers but only 2 exchange partitions",
                "run at most 2 workers"),
        refused(_without(args(0), "--checkpoint-interval"), "needs checkpointing", "--checkpoint-interval"),
        refused(_without(args(0), "--exchange-bootstrap"), "needs an exchange", "--exchange-bootstrap"),
        refused(args(2), "worker index 2 is not one of the 2 workers", "--worker-index from 0 to 1"),
        refused(args(0, workers=None), "--worker-index needs --workers N"),
    )
    # An exchange topic of another partition count, made before the job's first start:
    other_job = "refusals-topic"
    await create_topic(kafka_bootstrap, exchange_topics(other_job)[0], 4)
    await refused(
        args(0, job=other_job, root=tmp_path / "other-chk"), "has 4 partitions", "Run the job with 4 exchange partitions"
    )

    worker0 = await start_job(args(0), env, "worker 0")
    await wait_for_workers(home, job, 1)
    await refused(args(0), "worker 0 is already running", "Give each worker process its own index")
    # one at a time: each holds worker 1's lock while it compares, and two at once would
    # refuse each other as "worker 1 is already running"
    await refused(args(1, workers=3), "runs with workers 3, the job with 2", "start every worker with --workers 2")
    await refused(args(1, job="another-job"), "belongs to job 'refusals'", "--job-name refusals")
    await refused(args(1, parallelism=3), "another job graph than the job's other workers", "parallelism 3")
    assert worker0.process.returncode is None, worker0.describe()  # undisturbed
    worker1 = await start_job(args(1), env, "worker 1")
    assert await worker1.wait(RUN_TIMEOUT) == 0, worker1.describe()
    assert await worker0.wait(RUN_TIMEOUT) == 0, worker0.describe()
    check_exact(await wait_for_output(settings, len(records), timeout=30.0), records, "after the refusals")


def _without(arguments: list[str], option: str) -> list[str]:
    """``arguments`` without ``option`` and its value."""
    at = arguments.index(option)
    return arguments[:at] + arguments[at + 2:]
