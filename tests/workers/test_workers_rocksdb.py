"""Workers on the RocksDB state backend with incremental checkpoints.

Phase 1 runs ``workers_job`` on two workers with ``--state-backend rocksdb`` (one
``--state-dir`` for both). Worker 1's first process dies after 400 records, when it has
completed incremental checkpoints; the supervisor starts it again alone and it restores
from its own checkpoint folder, whose shared SST files it reads back. Phase 2 stops the
job with a savepoint set (canonical snapshots, as every savepoint) and runs it on three
workers from that set, still on RocksDB, with more input. The output read back by an
independent read_committed client holds every record once with exact counts; each
worker's databases lived in its own folder of the state directory and are gone once
the job stopped (those of the killed process removed by its restart).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

import workers_job
from streamflow.savepoint.sets import read_set_manifest
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

KEYS = 30
PHASE = 1200  # records per phase
PACE = 0.003  # seconds per record and parse subtask: phase 1 spans several checkpoints


@pytest.mark.crash
@pytest.mark.timeout(400)
async def test_workers_on_rocksdb_restore_alone_from_shared_files_and_rescale_through_a_savepoint_set(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await new_settings(kafka_bootstrap, pace=PACE)
    job, home, state = "rocks", tmp_path / "home", tmp_path / "state"
    records: list[dict[str, object]] = []
    savepoint_set: Path | None = None
    await produce_codes(settings, all_codes())
    for phase, workers in enumerate((2, 3)):
        where = f"phase {phase + 1} ({workers} workers)"
        root = tmp_path / f"chk-{phase}"
        phase_settings = replace(settings, crash_worker=1 if phase == 0 else None, checkpoint_root=root)
        extra = ("--state-backend", "rocksdb", "--state-dir", str(state), "--rocksdb-memory", "32M",
                 "--savepoint-dir", str(tmp_path / "savepoints"), "--log-level", "INFO")  # fmt: skip
        if savepoint_set is not None:
            extra += ("--from-savepoint", str(savepoint_set))
        env = job_environment(phase_settings, home, crash="records:400" if phase == 0 else None)
        run = await start_job(run_arguments(phase_settings, job=job, root=root, workers=workers, extra=extra), env, where)
        await wait_for_workers(home, job, workers)
        batch = [workers_job.record(len(records) + i, KEYS) for i in range(PHASE)]
        records.extend(batch)
        await produce_records(settings, batch)
        await wait_for_output(settings, len(records), timeout=120.0, runs=[run])
        assert sorted(p.name for p in state.iterdir()) == [f"worker-{i}" for i in range(workers)], where
        for worker in range(workers):  # incremental checkpoints, in each worker's own folder
            code, raw, err = await cli(["inspect", str(root / f"worker-{worker}"), "--json"], env)
            assert code == 0, err
            described = json.loads(raw)
            assert described["format_version"] == 2 and described["shared_files"] > 0, f"{where}: {described}"
        code, out, err = await cli(["stop", job], env)
        assert code == 0, f"{where}: stop: {out}\n{err}"
        savepoint_set = Path(out.strip())
        manifest = read_set_manifest(savepoint_set)
        assert manifest is not None and manifest.workers == workers, where
        assert await run.wait(60) == 0, run.describe()
        for worker in state.iterdir():
            assert list(worker.iterdir()) == [], f"{where}: {worker.name} kept {list(worker.iterdir())}"
        if phase == 0:
            log = run.stderr.decode()
            assert log.count("injected crash") == 1, run.describe()
            restarts = re.findall(r"worker (\d+) \(pid \d+\) ended with exit code 137; restarting it alone", log)
            assert restarts == ["1"], run.describe()
            # the restarted worker 1 restored a checkpoint of its own once, from its shared
            # files: which one depends on how many records the exchange had handed its sink
            # by then (a fast machine reaches the 400th within checkpoint 1's delivery)
            restored = [int(n) for n in re.findall(r"job 'rocks' restores from checkpoint (\d+)", log)]
            assert len(restored) == 1 and restored[0] >= 1, run.describe()

    rows = await wait_for_output(settings, len(records), timeout=30.0)
    check_exact(rows, records, "2 workers on RocksDB (one killed), then 3 from their savepoint set")  # type: ignore[arg-type]
    assert await open_transactions(kafka_bootstrap, [settings.output, *exchange_topics(job)]) == {}
