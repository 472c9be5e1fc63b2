"""Crash and recovery of windowed jobs: Kafka -> session windows -> Kafka exactly once, and
Kafka -> tumbling windows -> MySQL (XA), killed as real processes at every named point
(crash_job.py, its window jobs), restarted, the committed output compared with the
hand computation from the input, window by window.

A window's contents and timers are keyed state: a window open at the checkpoint a
process restores from must fire once, with all its records (those before the checkpoint
from the state, those after from the replayed input); a window that fired and was
committed before the crash must not fire again. So the committed output must equal the
expected windows exactly (no window twice, none lost, none with a record too many or too
few), and after every crash it must be a duplicate-free prefix, per key, of the key's
windows in the order they end.

The session job also runs on RocksDB with incremental checkpoints, at two points: the
window state and timers restored from native snapshot files (the timers live in the
database, and its files are all a checkpoint holds of them).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

import pytest

import crash_job
from crash_harness import CRASH_EXIT_CODE, CrashLab, Scenario, ScenarioResult
from streamflow.checkpoint import serde
from streamflow.checkpoint.metadata import CheckpointMetadata
from streamflow.checkpoint.shared_files import uploaded_for
from streamflow.checkpoint.storage import CheckpointStorage

pytestmark = pytest.mark.crash

PARALLELISMS = (1, 2)
POINTS = (
    "records:300",  # window results written by the sink subtasks of the process
    "after_barrier:2",
    "after_pre_commit:2",
    "metadata_write:2",
    "after_completion:2",
    "after_commit:2",
)
SCENARIOS = [Scenario(sink, p, (point,)) for sink in crash_job.WINDOW_SINKS for p in PARALLELISMS for point in POINTS]
REFERENCES = [Scenario(sink, p) for sink in crash_job.WINDOW_SINKS for p in PARALLELISMS]
TWICE = [Scenario(sink, 2, ("after_completion:3", "after_pre_commit:2")) for sink in crash_job.WINDOW_SINKS]
ROCKSDB_POINTS = ("after_pre_commit:2", "after_completion:2")
ROCKSDB_SCENARIOS = [Scenario("kafka-session", 2, (point,), state_backend="rocksdb") for point in ROCKSDB_POINTS]
REFERENCES += [s.reference for s in ROCKSDB_SCENARIOS[:1]]
SCENARIOS += ROCKSDB_SCENARIOS


def _params(scenarios: list[Scenario]) -> list[object]:
    return [pytest.param(s, id=s.id) for s in scenarios]


def compare(got: list[Any], want: list[Any], *, complete: bool) -> list[str]:
    """Problems of the committed windows ``got`` against the expected ``want``.

    ``complete``: equal as multisets; else (after a crash) a duplicate-free subset whose
    windows of each key are the first ones of the key's expected windows, in order.
    """
    problems = []
    have = Counter(got)
    twice = [w for w, n in have.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} windows committed more than once, e.g. {sorted(twice)[:5]}")
    foreign = [w for w in have if w not in set(want)]
    if foreign:
        problems.append(f"{len(foreign)} windows not expected (fired twice with part of their records?): {sorted(foreign)[:5]}")
    if complete:
        missing = Counter(want) - have
        if missing:
            problems.append(f"{sum(missing.values())} windows lost, e.g. {sorted(missing)[:5]}")
    per_key: dict[str, list[Any]] = defaultdict(list)
    for window in want:
        per_key[window[0]].append(window)
    committed: dict[str, list[Any]] = defaultdict(list)
    for window in got:
        committed[window[0]].append(window)
    for key, windows in committed.items():
        if windows != per_key[key][: len(windows)]:
            problems.append(f"key {key}: the committed windows are not the first {len(windows)} of the key's, in order")
    return problems


def _fail(what: str, problems: list[str], result: ScenarioResult) -> None:
    lines = "\n  ".join(problems)
    pytest.fail(f"{what}:\n  {lines}\n\nprocesses of {result.scenario.id}:\n{result.describe()}", pytrace=False)


def check(lab: CrashLab, scenario: Scenario) -> ScenarioResult:
    want = crash_job.expected_windows(lab.inputs, scenario.sink)
    result = lab.result(scenario)
    for i, crash in enumerate(scenario.crashes):
        run = result.runs[i]
        point = crash.partition(":")[0]
        if run.returncode != CRASH_EXIT_CODE or f"injected crash at {point}" not in run.stderr:
            pytest.fail(
                f"process {i + 1} armed with STREAMFLOW_CRASH={crash} did not die there:\n{run.describe()}",
                pytrace=False,
            )
        problems = compare(result.committed[i], want, complete=False)
        if problems:
            _fail(f"after the crash at {crash}, the committed windows are not a prefix of the expected", problems, result)
    last = result.runs[-1]
    if last.returncode != 0:
        pytest.fail(f"the last process did not finish (exit code 0 expected):\n{result.describe()}", pytrace=False)
    inspection = result.inspections[-1]
    problems = compare(result.final, want, complete=True)
    if inspection.leftovers:  # an open transaction hides everything after it from the reader
        problems.append(f"transactions left behind after the job finished: {inspection.leftovers}")
    if problems:
        _fail("the committed windows differ from the expected ones", problems, result)
    assert inspection.committed_count == len(want), (inspection.committed_count, len(want))
    return result


@pytest.mark.parametrize("scenario", _params(REFERENCES))
def test_a_failure_free_window_job_emits_the_hand_computed_windows(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check(crash_lab, scenario)
    summary = result.runs[-1].summary
    assert summary["checkpoints_completed"] >= 5, "the run must span several checkpoints"
    assert summary["aborts_with_records"] >= 1, summary  # the abort path ran with windows at stake
    want = crash_job.expected_windows(crash_lab.inputs, scenario.sink)
    assert len({w[0] for w in want}) == crash_job.INPUT_FILES * crash_job.KEYS_PER_FILE
    assert len(want) > 2 * crash_job.INPUT_FILES * crash_job.KEYS_PER_FILE  # several windows per key
    assert sum(w[3] for w in want) == crash_job.TOTAL_RECORDS
    if scenario.state_backend == "rocksdb":  # the windows' state went through shared files, reused
        files = result.checkpoints.glob("chk-*/_metadata")
        metadata = [CheckpointMetadata.from_json(path.read_bytes().partition(b"\n")[2]) for path in files]
        newest = max(metadata, key=lambda m: m.checkpoint_id)
        shared = [f for uid, _, handle in newest.handles() if uid == "windows" for f in handle.shared]
        assert shared and any((uploaded_for(f.name) or 0) < newest.checkpoint_id for f in shared), shared
        # the windows' timers are in the database files too, not in a pickled list beside them
        storage = CheckpointStorage(result.checkpoints)
        for uid, subtask, handle in newest.handles():
            if uid == "windows":
                stored = serde.decode(asyncio.run(storage.read_state(newest.checkpoint_id, handle)))
                assert stored["keyed"]["timers"] is True and "timers" not in stored, (subtask, sorted(stored))


@pytest.mark.parametrize("scenario", _params(SCENARIOS))
def test_windows_are_exact_after_a_crash(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check(crash_lab, scenario)
    assert result.runs[-1].summary["restored_from"] is not None, result.describe()


@pytest.mark.parametrize("scenario", _params(TWICE))
def test_windows_are_exact_after_two_consecutive_crashes(scenario: Scenario, crash_lab: CrashLab) -> None:
    result = check(crash_lab, scenario)
    assert result.runs[-1].summary["restored_from"] == 3, result.describe()
