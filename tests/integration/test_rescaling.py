"""Rescaling: a job at parallelism 1 stops after a checkpoint, a new job on the same
checkpoint directory resumes it at parallelism 3 and stops after a checkpoint of its own,
and a third finishes it at parallelism 2. The committed output (exactly-once file sink)
and the final state must equal a failure-free run's, exactly.

Each job stops by a failure injected right after a checkpoint completed (restart
strategy none, so the job fails); the next job is a new StreamEnvironment that finds the
checkpoint on disk, written by the in-memory state backend. Per kind of state the tests
also check what every new subtask restored: key groups move whole (keyed), split lists
are dealt round robin, union lists go whole to every subtask, broadcast state is copied
on scale-up and dropped on scale-down. The last test does the same with real processes
killed by ``os._exit``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import rescale_jobs as jobs

from streamflow import JobFailedError, StateError
from streamflow.connectors import read_committed_lines
from streamflow.core.faults import FaultInjector
from streamflow.partitioning.keygroups import key_group_for, key_group_range

faults = FaultInjector()  # the faults these tests arm; every job built here gets it

REPO = Path(__file__).resolve().parents[2]
STEPS = (1, 3, 2)  # the parallelism of the three jobs


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    faults.disarm()
    jobs.reset_records()
    yield
    faults.disarm()
    jobs.reset_records()


async def reference(kind: str, tmp_path: Path) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Output and final operator state of a failure-free run at parallelism 1."""
    await jobs.job(kind, tmp_path / "ref-chk", tmp_path / "ref", 1).execute("reference")
    output = Counter(read_committed_lines(tmp_path / "ref"))
    assert output == jobs.expected_output(kind)
    uid = {"keyed": "count", "list": "list", "union": "union", "broadcast": "path"}[kind]
    return output, await jobs.operator_state(tmp_path / "ref-chk", uid)


async def stop_after_a_checkpoint(kind: str, checkpoints: Path, out: Path, parallelism: int) -> int:
    """Run until the job's second checkpoint completed, then fail; the id it stopped at."""
    stop_at = jobs.highest_checkpoint_dir(checkpoints) + 2  # this job's ids follow those on disk
    faults.arm("after_completion", stop_at, action="raise")
    with pytest.raises(JobFailedError, match=r"InjectedFault: injected failure at after_completion"):
        await jobs.job(kind, checkpoints, out, parallelism).set_fault_injector(faults).execute("rescale")
    faults.disarm()
    latest = await jobs.latest_checkpoint(checkpoints)
    assert latest is not None and latest >= stop_at
    return latest


Expect = Callable[[Path, int], Awaitable[dict[int, Any]]]


async def rescale(
    kind: str, tmp_path: Path, recorded: Callable[[], dict[int, Any]] | None = None, expect: Expect | None = None
) -> Counter[str]:
    """The three jobs (parallelism 1, 3, 2); returns the committed output.

    Before each restoring job, ``expect(checkpoint_dir, new_parallelism)`` computes from
    the checkpoint about to be restored what each new subtask must restore; after it,
    ``recorded()`` (what the functions saw) must equal that.
    """
    checkpoints, out = tmp_path / "chk", tmp_path / "out"
    stopped = await stop_after_a_checkpoint(kind, checkpoints, out, STEPS[0])
    for parallelism in STEPS[1:]:
        expected = await expect(checkpoints, parallelism) if expect is not None else None
        jobs.reset_records()
        if parallelism == STEPS[-1]:
            result = await jobs.job(kind, checkpoints, out, parallelism).execute("rescale")
            assert result.restored_from == stopped and result.attempts == 1
        else:
            stopped_again = await stop_after_a_checkpoint(kind, checkpoints, out, parallelism)
            assert stopped_again > stopped
            stopped = stopped_again
        if recorded is not None:
            assert recorded() == expected, f"restored at parallelism {parallelism}"
    return Counter(read_committed_lines(out))


def _all_ids() -> Counter[int]:
    return Counter(i for i, _, _ in jobs.ACTIONS)


def _flat(lists: list[list[Any]]) -> list[Any]:
    return [item for items in lists for item in items]


# -- keyed state -------------------------------------------------------------------------


async def test_keyed_state_moves_by_key_group_1_to_3_to_2(tmp_path: Path) -> None:
    ref_output, _ = await reference("keyed", tmp_path)
    output = await rescale("keyed", tmp_path)
    assert output == ref_output  # every count 1..n exactly once: no key lost, none counted twice
    # the final checkpoint, at parallelism 2: each subtask holds exactly its key groups' keys
    final = await jobs.operator_state(tmp_path / "chk", "count")
    assert len(final) == 2
    counts: dict[str, int] = {}
    for subtask, snapshot in enumerate(final):
        owned = key_group_range(64, 2, subtask)
        for key_group, entries in snapshot["keyed"]["states"]["count"]["key_groups"].items():
            assert int(key_group) in owned
            for user, count in entries.items():
                assert key_group_for(user, 64) == int(key_group)
                counts[user] = count
    assert counts == Counter(user for _, user, _ in jobs.ACTIONS)


async def test_a_new_job_with_another_max_parallelism_refuses_the_keyed_state(tmp_path: Path) -> None:
    """Key groups are hash % max_parallelism: restoring into another number of them would
    strand every key's state where no lookup finds it, so the job refuses to start."""
    await stop_after_a_checkpoint("keyed", tmp_path / "chk", tmp_path / "out", 2)
    committed = read_committed_lines(tmp_path / "out")
    with pytest.raises(JobFailedError, match=r"keyed state split into 64 key groups in the checkpoint .*, but this "
                       r"job has max_parallelism 128.* run with max_parallelism=64") as info:
        await jobs.job("keyed", tmp_path / "chk", tmp_path / "out", 2, max_parallelism=128).execute("rescale")
    assert isinstance(info.value.__cause__, StateError) and info.value.__cause__.operator == "count"
    assert read_committed_lines(tmp_path / "out") == committed  # it ran nothing


# -- operator list state ---------------------------------------------------------------------


async def test_list_state_is_dealt_round_robin_1_to_3_to_2(tmp_path: Path) -> None:
    ref_output, ref_state = await reference("list", tmp_path)

    async def dealt(checkpoints: Path, parallelism: int) -> dict[int, Any]:
        everything = _flat(jobs.list_items(await jobs.operator_state(checkpoints, "list")))
        return {i: everything[i::parallelism] for i in range(parallelism)}

    output = await rescale("list", tmp_path, lambda: jobs.SeenList.restored, dealt)
    assert output == ref_output
    final = jobs.list_items(await jobs.operator_state(tmp_path / "chk", "list"))
    assert len(final) == 2
    # every id is in exactly one subtask's list: nothing lost or doubled across 1 -> 3 -> 2
    assert Counter(_flat(final)) == Counter(_flat(jobs.list_items(ref_state))) == _all_ids()


async def test_union_list_state_goes_whole_to_every_subtask_1_to_3_to_2(tmp_path: Path) -> None:
    ref_output, ref_state = await reference("union", tmp_path)

    async def whole(checkpoints: Path, parallelism: int) -> dict[int, Any]:
        everything = _flat(jobs.list_items(await jobs.operator_state(checkpoints, "union")))
        return {i: everything for i in range(parallelism)}

    output = await rescale("union", tmp_path, lambda: jobs.SeenUnion.restored, whole)
    assert output == ref_output
    final = jobs.list_items(await jobs.operator_state(tmp_path / "chk", "union"))
    assert len(final) == 2
    assert Counter(_flat(final)) == Counter(_flat(jobs.list_items(ref_state))) == _all_ids()


# -- broadcast state ------------------------------------------------------------------------


def _rules(snapshot: dict[str, Any]) -> list[tuple[str, int]]:
    return sorted((channel, threshold) for channel, threshold in snapshot["operator"]["states"]["rules"]["items"])


async def test_broadcast_state_is_copied_on_scale_up_and_dropped_on_scale_down_1_to_3_to_2(tmp_path: Path) -> None:
    ref_output, _ = await reference("broadcast", tmp_path)

    async def copied(checkpoints: Path, parallelism: int) -> dict[int, Any]:
        copies = [_rules(s) for s in await jobs.operator_state(checkpoints, "path")]
        assert all(copy == copies[0] for copy in copies)  # identical on every old subtask
        return {i: copies[i % len(copies)] for i in range(parallelism)}

    output = await rescale("broadcast", tmp_path, lambda: jobs.PathLength.restored, copied)
    assert output == ref_output == jobs.expected_reports()
    # The rules source read the rules before its first barrier and never replays them: the
    # subtasks of the 3- and 2-parallel jobs know them only from the restored copies.
    rules = sorted(jobs.THRESHOLDS.items())
    assert jobs.PathLength.restored == {0: rules, 1: rules}
    final = await jobs.operator_state(tmp_path / "chk", "path")
    assert [_rules(s) for s in final] == [rules, rules]


# -- a savepoint ------------------------------------------------------------------------------


async def test_a_moved_savepoint_of_the_in_memory_backend_restores_every_kind_of_state_at_parallelism_3(
    tmp_path: Path,
) -> None:
    """list -> union -> keyed broadcast in one job, stopped with a savepoint at parallelism 1
    (HashMapStateBackend); the savepoint is moved and a new job resumes from it at 3."""
    env = jobs.job("all", tmp_path / "chk-a", tmp_path / "out", 1)
    env.set_savepoint_dir(tmp_path / "savepoints")
    client = env.execute_async("rescale")
    for _ in range(500):
        if client.metrics()["operators"].get("path[0]", {}).get("records_in", 0) >= len(jobs.ACTIONS) // 4:
            break
        await asyncio.sleep(0.01)
    savepoint = await client.stop_with_savepoint()
    await client.wait()
    moved = tmp_path / "moved" / savepoint.name
    moved.parent.mkdir()
    shutil.move(str(savepoint), moved)

    result = await jobs.job("all", tmp_path / "chk-b", tmp_path / "out", 3).execute("rescale", from_savepoint=moved)
    assert result.restored_from is not None and result.attempts == 1
    assert Counter(read_committed_lines(tmp_path / "out")) == jobs.expected_reports()
    # what the new subtasks restored: split lists dealt evenly, the union list whole to each,
    # the rules copied to each (the rules source does not read them again)
    split = [jobs.SeenList.restored[i] for i in range(3)]
    assert max(map(len, split)) - min(map(len, split)) <= 1
    union = [jobs.SeenUnion.restored[i] for i in range(3)]
    assert union[0] == union[1] == union[2] and sorted(_flat(split)) == sorted(union[0])
    assert len(union[0]) >= len(jobs.ACTIONS) // 4
    rules = sorted(jobs.THRESHOLDS.items())
    assert jobs.PathLength.restored == {0: rules, 1: rules, 2: rules}
    assert result.metrics["tasks"]["rules[0]"]["source_records_out"] == 0
    split_final = jobs.list_items(await jobs.operator_state(tmp_path / "chk-b", "list"))
    union_final = jobs.list_items(await jobs.operator_state(tmp_path / "chk-b", "union"))
    assert Counter(_flat(split_final)) == Counter(_flat(union_final)) == _all_ids()


# -- real processes ---------------------------------------------------------------------------


def run_job(parallelism: int, checkpoints: Path, out: Path, crash: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STREAMFLOW_CRASH", None)
    env.pop("STREAMFLOW_CRASH_ACTION", None)
    if crash is not None:
        env["STREAMFLOW_CRASH"] = crash
    args = [sys.executable, str(Path(jobs.__file__).resolve()), "all", str(parallelism), str(checkpoints), str(out)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)


async def test_killed_processes_resume_at_parallelism_3_then_2_with_every_kind_of_state(tmp_path: Path) -> None:
    """list -> union -> keyed broadcast in one job; each process but the last is killed
    with ``os._exit`` right after a checkpoint completed."""
    checkpoints, out = tmp_path / "chk", tmp_path / "out"
    for parallelism in STEPS[:2]:
        killed = run_job(
            parallelism, checkpoints, out, f"after_completion:{jobs.highest_checkpoint_dir(checkpoints) + 2}"
        )
        assert killed.returncode == 137, killed.stdout + killed.stderr
        assert "injected crash at after_completion" in killed.stderr
    done = run_job(STEPS[2], checkpoints, out, None)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["restored_from"] is not None and summary["attempts"] == 1

    assert Counter(read_committed_lines(out)) == jobs.expected_reports()
    split = jobs.list_items(await jobs.operator_state(checkpoints, "list"))
    union = jobs.list_items(await jobs.operator_state(checkpoints, "union"))
    assert len(split) == len(union) == 2
    assert Counter(_flat(split)) == Counter(_flat(union)) == _all_ids()
    rules = sorted(jobs.THRESHOLDS.items())
    assert [_rules(s) for s in await jobs.operator_state(checkpoints, "path")] == [rules, rules]
