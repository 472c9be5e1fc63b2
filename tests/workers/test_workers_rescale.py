"""Rescale 1 -> 3 -> 2 workers through savepoint sets, with keyed state, operator state
and a broadcast input: exact.

Each phase runs ``streamflow run workers_job:build --workers N`` from the previous
phase's savepoint set (a new checkpoint root each time), feeds it more input, waits for
what it can output, and stops it with ``streamflow stop`` (one command, every worker):

1. one worker: codes c0-c2 are broadcast, records of every key come; the records whose
   code is not known yet (c3-c5) wait in ``enrich``'s operator ListState;
2. three workers from the set of one: more records; codes c3 and c4. The waiting records
   of phase 1 come out only if the operator state moved (none lost, none twice); the
   new records with c0-c2 are named only by the restored broadcast state (those codes
   are not sent again, and the codes source resumes after them); counts continue from
   the restored keyed state;
3. two workers from the set of three: more records; code c5 releases the rest.

The output, read back by an independent read_committed client, holds every record once,
named, with each key's counts exactly 1..n (see ``check_exact``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import workers_job
from streamflow.savepoint.sets import read_set_manifest
from worker_processes import (
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

KEYS = 36
PHASE = 900  # records per phase

PHASES = [(1, ["c0", "c1", "c2"]), (3, ["c3", "c4"]), (2, ["c5"])]


@pytest.mark.timeout(400)
async def test_rescale_one_three_two_workers_through_savepoint_sets_is_exact(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await new_settings(kafka_bootstrap)
    job, home = "rescale", tmp_path / "home"
    env = job_environment(settings, home)
    records: list[dict[str, object]] = []
    known: set[str] = set()
    savepoint_set: Path | None = None
    for phase, (workers, codes) in enumerate(PHASES):
        where = f"phase {phase + 1} ({workers} workers)"
        extra = ("--savepoint-dir", str(tmp_path / "savepoints"))
        if savepoint_set is not None:
            extra += ("--from-savepoint", str(savepoint_set))
        args = run_arguments(settings, job=job, root=tmp_path / f"chk-{phase}", workers=workers, extra=extra)
        run = await start_job(args, env, where)
        await wait_for_workers(home, job, workers)
        batch = [workers_job.record(len(records) + i, KEYS) for i in range(PHASE)]
        records.extend(batch)
        await produce_records(settings, batch)
        await produce_codes(settings, codes)
        known.update(codes)
        named = [r for r in records if workers_job.code_of(str(r["key"])) in known]
        rows = await wait_for_output(settings, len(named), timeout=120.0, runs=[run])
        assert len(rows) == len(named), f"{where}: {len(rows)} records out, {len(named)} have a known code"
        code, out, err = await cli(["stop", job], env)
        assert code == 0, f"{where}: stop: {out}\n{err}"
        savepoint_set = Path(out.strip())
        manifest = read_set_manifest(savepoint_set)
        assert manifest is not None and manifest.workers == workers and manifest.exchanged == (workers > 1), where
        assert await run.wait(60) == 0, run.describe()

    rows = await wait_for_output(settings, len(records), timeout=30.0)
    check_exact(rows, records, "after 1 -> 3 -> 2 workers", ranked=False)  # type: ignore[arg-type]
    assert await open_transactions(kafka_bootstrap, [settings.output, *exchange_topics(job)]) == {}
