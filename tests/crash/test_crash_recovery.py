"""Crash and recovery of the exactly-once file, SQLite, Kafka, MySQL (XA) and MySQL
offsets sinks (docs/architecture.md, "Recovery and restarts").

A real job process (``crash_job.py``) is killed at a named point (``STREAMFLOW_CRASH``,
``os._exit(137)``), a NEW process is started on the same checkpoint and output
directories, and the committed output is compared with a failure-free run of the same
job, record by record: the same multiset, no duplicate, no loss, and per key the counts
1..n in commit order (the counts come from keyed ValueState, so they also prove the
restored state was right). After every crash the committed output so far must be a
duplicate-free per-key prefix of the reference: nothing uncommitted is ever visible.

The MySQL offsets sink's processes resume from MySQL alone, not from a checkpoint (see
crash_job.py): where the others check the checkpoint restored, it checks the checkpoint
whose rows and offsets MySQL held when the process started.

The file sink's scenarios run on the RocksDB state backend as well (incremental
checkpoints: the counts a restarted process continues from come out of SST files that
several checkpoints share), at every named point; and on the heap with every snapshot
pickled by a forked child process while the job goes on (a crash at ``after_barrier``
kills the job while its child may still be writing).

Every run also aborts checkpoints 4, 8, ... after the sink pre-committed them (a failed
state write); the failure-free runs show that each sink's abort path ran with records in
the aborted checkpoint's transaction, and the exact output that they were committed
with a later checkpoint, once. A crash behind an aborted checkpoint (before the next one
completed) shows its transaction rolled back on restore instead.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

import crash_job
from crash_harness import CRASH_EXIT_CODE, CrashLab, Scenario, ScenarioResult

from streamflow.checkpoint.metadata import CheckpointMetadata
from streamflow.checkpoint.shared_files import uploaded_for

pytestmark = pytest.mark.crash

# kafka: KafkaSource -> ... -> exactly-once KafkaSink; mysql: KafkaSource -> ... -> XA MySqlSink;
# mysql-offsets: KafkaSource -> ... -> MySqlOffsetsSink, resumed from the offsets in MySQL
SINKS = crash_job.SINKS
PARALLELISMS = (1, 2)
# Checkpoint ids >= n fire, so n=2 is surely reached (a run takes ~10 checkpoints).
POINTS = (
    f"records:{crash_job.TOTAL_RECORDS // 3}",
    "after_barrier:2",
    "after_pre_commit:2",
    "metadata_write:2",
    "after_completion:2",
    "after_commit:2",
)
# The checkpoint the process after a crash at a point must restore from (min, max):
# checkpoint 2 completes only if the process died after its metadata was renamed.
RESTORED_FROM = {
    "records": (1, None),
    "after_barrier": (1, 1),
    "after_pre_commit": (1, 1),
    "metadata_write": (1, 1),
    "after_completion": (2, 2),
    "after_commit": (2, None),
}
# The checkpoint MySQL holds when the process after a crash starts (mysql-offsets): the
# last one the sink applied, which a completed checkpoint is not yet (after_completion).
RESUMED_FROM_MYSQL = {
    "records": (1, None),
    "after_barrier": (1, 1),
    "after_pre_commit": (1, 1),
    "metadata_write": (1, 1),
    "after_completion": (1, 1),
    "after_commit": (2, 2),
}
# Two crashes: checkpoint 3 complete but never committed; the next process commits its
# handles while opening and dies pre-committing its first checkpoint (which never
# completes), so the third process restores from 3 again and commits them a second time.
DOUBLE = ("after_completion:3", "after_pre_commit:2")
# A crash while an aborted checkpoint's transaction is still prepared: checkpoint 4 is
# aborted (a failed state write), the process dies pre-committing 5, and the next one
# restores 3: it must roll back the transactions of 4 and 5 and replay their records.
ABORTED = crash_job.ABORT_EVERY
BEHIND_ABORT = f"after_pre_commit:{ABORTED + 1}"


def _params(scenarios: list[Scenario]) -> list[object]:
    return [pytest.param(s, id=s.id) for s in scenarios]


# every sink on the heap; the file sink on RocksDB too (the backend's part is the same for
# all), and on the heap with every snapshot taken by a forked child (heap-fork)
VARIANTS = [(s, "heap") for s in SINKS] + [("file", "rocksdb"), ("file", "heap-fork")]
REFERENCES = [Scenario(s, p, state_backend=b) for s, b in VARIANTS for p in PARALLELISMS]
SINGLE = [Scenario(s, p, (point,), b) for s, b in VARIANTS for p in PARALLELISMS for point in POINTS]
TWICE = [Scenario(s, p, DOUBLE, b) for s, b in VARIANTS for p in PARALLELISMS]
AFTER_ABORT = [Scenario(s, 2, (BEHIND_ABORT,), b) for s, b in VARIANTS]  # p=2 only: the suite's time
ROCKSDB_REFERENCES = [s for s in REFERENCES if s.state_backend == "rocksdb"]


# -- comparison ---------------------------------------------------------------------------


def _sample(items: Iterable[Any], limit: int = 10) -> str:
    listed = sorted(items)
    more = f" ... (+{len(listed) - limit})" if len(listed) > limit else ""
    return f"{listed[:limit]}{more}"


def compare(got: list[crash_job.Result], reference: list[crash_job.Result], *, complete: bool) -> list[str]:
    """Problems of committed output ``got`` against the failure-free ``reference``.

    ``complete``: ``got`` must equal the reference as a multiset. Otherwise (after a
    crash) it must be a duplicate-free subset forming a prefix of every key's counts.
    """
    problems = []
    have, want = Counter(got), Counter(reference)
    duplicates = {r: n for r, n in have.items() if n > 1}
    if duplicates:
        problems.append(f"{len(duplicates)} records committed more than once, e.g. {_sample(duplicates.items())}")
    pairs = Counter((k, c) for k, c, _ in got)
    clashes = {p for p, n in pairs.items() if n > 1} - {(k, c) for (k, c, _) in duplicates}
    if clashes:
        problems.append(f"{len(clashes)} (key, count) pairs committed with different line ids: {_sample(clashes)}")
    extra = {r for r in have if r not in want}
    if extra:
        problems.append(f"{len(extra)} records not in the reference (wrong keyed state?): {_sample(extra)}")
    missing = want - have
    if complete and missing:
        problems.append(f"{sum(missing.values())} records of the reference lost: {_sample(missing)}")
    if complete and len(got) != len(reference):
        problems.append(f"{len(got)} records committed, the reference has {len(reference)}")
    counts: dict[str, list[int]] = defaultdict(list)
    for key, count, _ in got:
        counts[key].append(count)
    totals = Counter(key for key, _, _ in reference)
    for key in sorted(set(counts) | (set(totals) if complete else set())):
        seen = counts.get(key, [])
        if seen != list(range(1, len(seen) + 1)):
            wrong = next(i for i, c in enumerate(seen) if c != i + 1)
            problems.append(
                f"key {key}: counts in commit order are not 1..{len(seen)}: "
                f"{seen[max(0, wrong - 3) : wrong + 4]} around position {wrong + 1}"
            )
        elif complete and len(seen) != totals[key]:
            problems.append(f"key {key}: {len(seen)} records committed, the reference has {totals[key]}")
    return problems


def _fail(what: str, problems: list[str], result: ScenarioResult) -> None:
    lines = "\n  ".join(problems)
    pytest.fail(f"{what}:\n  {lines}\n\nprocesses of {result.scenario.id}:\n{result.describe()}", pytrace=False)


def _reference(lab: CrashLab, scenario: Scenario) -> ScenarioResult:
    reference = lab.result(scenario.reference)
    if reference.runs[-1].returncode != 0:
        pytest.fail(f"the failure-free reference run failed:\n{reference.describe()}", pytrace=False)
    return reference


def check_restored_from(result: ScenarioResult, ranges: dict[str, tuple[int, int | None]]) -> str:
    """The last process restored a checkpoint within ``ranges[point]`` (min, max or None)
    of the scenario's first crash point; returns that point's name."""
    point = result.scenario.crashes[0].partition(":")[0]
    low, high = ranges[point]
    restored = result.runs[-1].summary["restored_from"]
    assert restored is not None and restored >= low and (high is None or restored <= high), result.describe()
    return point


def check_recovery(lab: CrashLab, scenario: Scenario) -> ScenarioResult:
    reference = _reference(lab, scenario)
    result = lab.result(scenario)
    for i, crash in enumerate(scenario.crashes):
        run = result.runs[i]
        point = crash.partition(":")[0]
        if run.returncode != CRASH_EXIT_CODE or f"injected crash at {point}" not in run.stderr:
            pytest.fail(
                f"process {i + 1} armed with STREAMFLOW_CRASH={crash} did not die at that point "
                f"(expected exit code {CRASH_EXIT_CODE} and 'injected crash at {point}' on stderr):\n"
                f"{run.describe()}",
                pytrace=False,
            )
        problems = compare(result.committed[i], reference.final, complete=False)
        if problems:
            _fail(f"after the crash at {crash}, the committed output is not a prefix of the reference", problems, result)
    assert len(result.runs) == len(scenario.crashes) + 1
    last = result.runs[-1]
    if last.returncode != 0:
        pytest.fail(f"the restarted job did not finish (exit code 0 expected):\n{result.describe()}", pytrace=False)
    problems = compare(result.final, reference.final, complete=True)
    leftovers = result.inspections[-1].leftovers
    if leftovers:  # an open transaction hides everything after it from the reader
        problems.append(f"uncommitted transactions left behind after the job finished: {leftovers}")
    if problems:
        _fail("the committed output after recovery differs from the failure-free run", problems, result)
    counted = result.inspections[-1].committed_count
    assert counted == crash_job.TOTAL_RECORDS, f"{counted} records committed (counted apart), expected {crash_job.TOTAL_RECORDS}"
    return result


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", _params(REFERENCES))
def test_failure_free_run_is_a_valid_reference(scenario: Scenario, crash_lab: CrashLab) -> None:
    """The reference itself equals what the input implies, and P=2 spreads the work."""
    reference = _reference(crash_lab, scenario)
    assert reference.runs[-1].summary["restored_from"] is None
    assert reference.runs[-1].summary["checkpoints_completed"] >= 5, "the run must span several checkpoints"
    expected = crash_job.expected_results(crash_lab.inputs)
    assert len(expected) == crash_job.TOTAL_RECORDS
    problems = compare(reference.final, expected, complete=True)
    if problems:
        _fail("the failure-free run differs from what the input implies", problems, reference)
    assert reference.inspections[-1].committed_count == crash_job.TOTAL_RECORDS
    sink_parallelism = 1 if scenario.sink == "mysql-offsets" else scenario.parallelism
    assert reference.inspections[-1].subtasks_with_output == set(range(sink_parallelism))
    assert not reference.inspections[-1].leftovers


@pytest.mark.parametrize("scenario", _params(ROCKSDB_REFERENCES))
def test_rocksdb_checkpoints_were_incremental(scenario: Scenario, crash_lab: CrashLab) -> None:
    """The retained checkpoints of a RocksDB run list shared files, and the newest one
    reuses files written for an earlier checkpoint: a restore reads shared SST files."""
    checkpoints = _reference(crash_lab, scenario).checkpoints
    files = checkpoints.glob("chk-*/_metadata")
    metadata = [CheckpointMetadata.from_json(path.read_bytes().partition(b"\n")[2]) for path in files]
    assert metadata, f"no complete checkpoint in {checkpoints}"
    newest = max(metadata, key=lambda m: m.checkpoint_id)
    shared = [f for uid, _, handle in newest.handles() if uid == "count-per-key" for f in handle.shared]
    assert shared and all((checkpoints / "shared" / f.name).is_file() for f in shared)
    assert any((uploaded_for(f.name) or 0) < newest.checkpoint_id for f in shared), [f.name for f in shared]
    # only what the retained checkpoints reference is left (files of aborted ones were deleted)
    unreferenced = {path.name for path in (checkpoints / "shared").iterdir()} - {
        f.name for m in metadata for f in m.shared_files()
    }
    assert unreferenced == set(), sorted(unreferenced)


@pytest.mark.parametrize("scenario", _params(REFERENCES))
def test_the_sink_heard_aborted_checkpoints_with_records_and_got_small_batches(
    scenario: Scenario, crash_lab: CrashLab
) -> None:
    """The abort path ran with data at stake (the exact output above shows those records
    were committed later, once), and barriers fell between small batches."""
    summary = _reference(crash_lab, scenario).runs[-1].summary
    assert summary["checkpoints_aborted"] >= 1, summary
    assert summary["aborts_with_records"] >= 1, summary
    assert 0 < summary["max_sink_batch"] <= crash_job.SOURCE_BATCH, summary


@pytest.mark.parametrize("scenario", _params(SINGLE))
def test_exactly_once_after_a_crash(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check_recovery(crash_lab, scenario)
    point = scenario.crashes[0].partition(":")[0]
    summary = result.runs[-1].summary
    if scenario.sink == "mysql-offsets":
        (low, high), restored, what = RESUMED_FROM_MYSQL[point], summary["resumed_from_mysql"], "resumed from MySQL at"
        assert summary["restored_from"] is None
    else:
        (low, high), restored, what = RESTORED_FROM[point], summary["restored_from"], "restored from"
    assert restored is not None and restored >= low and (high is None or restored <= high), (
        f"after a crash at {scenario.crashes[0]} the job {what} checkpoint {restored}, "
        f"expected {low}..{high or 'any'}\n{result.describe()}"
    )


@pytest.mark.parametrize("scenario", _params(TWICE))
def test_exactly_once_after_two_consecutive_crashes(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check_recovery(crash_lab, scenario)
    summary = result.runs[-1].summary
    if scenario.sink == "mysql-offsets":  # the second process applied its own checkpoint 1 before it died
        restored = summary["resumed_from_mysql"]
        assert restored is not None and restored >= 1, f"resumed from MySQL at {restored}\n{result.describe()}"
        return
    restored = summary["restored_from"]
    assert restored == 3, f"the last process restored from {restored}, expected 3\n{result.describe()}"


@pytest.mark.parametrize("scenario", _params(AFTER_ABORT))
def test_exactly_once_after_a_crash_behind_an_aborted_checkpoint(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check_recovery(crash_lab, scenario)
    assert f"checkpoint {ABORTED} aborted" in result.runs[0].stderr, result.describe()
    summary = result.runs[-1].summary
    key = "resumed_from_mysql" if scenario.sink == "mysql-offsets" else "restored_from"
    assert summary[key] == ABORTED - 1, f"{key} {summary[key]}, expected {ABORTED - 1}\n{result.describe()}"
