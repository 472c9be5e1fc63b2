"""Whole jobs on the RocksDB state backend with incremental checkpoints, on real files.

- rescale 1 -> 3 -> 2 from RocksDB checkpoints (each job fails right after a checkpoint,
  the next one restores it at another parallelism from the shared SST files);
- rescale 1 -> 3 -> 2 through savepoints that move keyed state heap -> RocksDB -> heap;
- retention: a job takes more than 50 checkpoints with ``retained=3``; the shared folder
  then holds exactly the files the retained checkpoints reference;
- bad input: a full disk under the checkpoint directory (a real tmpfs) aborts the
  checkpoints it hits and the job goes on; a shared file missing on restore is named,
  and the previous complete checkpoint is restored under the rollback rule.

The output of every job goes to an exactly-once file sink and is compared with what the
input implies, record by record. (The command line and ``inspect`` are tested in
test_rocksdb_cli.py, the crash points in tests/crash.)
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import rescale_jobs as jobs

from streamflow import JobFailedError, KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.checkpoint.rollback import CheckpointRollbackError
from streamflow.checkpoint.metadata import CheckpointMetadata
from streamflow.checkpoint.shared_files import uploaded_for
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.connectors import ExactlyOnceFileSink, GeneratorSource, read_committed_lines
from streamflow.connectors.generator import GeneratorContext
from streamflow.core.faults import FaultInjector
from streamflow.state import EmbeddedRocksDBStateBackend, HashMapStateBackend, StateBackend, ValueStateDescriptor

faults = FaultInjector()  # the faults these tests arm


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    faults.disarm()
    jobs.reset_records()
    yield
    faults.disarm()


def rocksdb(tmp_path: Path) -> EmbeddedRocksDBStateBackend:
    return EmbeddedRocksDBStateBackend(tmp_path / "rocksdb", memory_budget=16 << 20)


def metadata_of(checkpoints: Path) -> list[CheckpointMetadata]:
    """The ``_metadata`` of every complete checkpoint on disk, oldest first."""
    found = [CheckpointMetadata.from_json(p.read_bytes().partition(b"\n")[2]) for p in checkpoints.glob("chk-*/_metadata")]
    return sorted(found, key=lambda m: m.checkpoint_id)


async def stop_after_a_checkpoint(checkpoints: Path, out: Path, parallelism: int, backend: StateBackend) -> int:
    """Run the keyed job until its second checkpoint completed, then fail it there."""
    stop_at = await CheckpointStorage(checkpoints).highest_checkpoint_id() + 2
    faults.arm("after_completion", stop_at, action="raise")
    env = jobs.job("keyed", checkpoints, out, parallelism, state_backend=backend).set_fault_injector(faults)
    with pytest.raises(JobFailedError, match=r"InjectedFault: injected failure at after_completion"):
        await env.execute("rescale")
    faults.disarm()
    latest = await jobs.latest_checkpoint(checkpoints)
    assert latest is not None and latest >= stop_at
    return latest


async def test_keyed_state_on_rocksdb_moves_by_key_group_1_to_3_to_2_through_checkpoints(tmp_path: Path) -> None:
    checkpoints, out = tmp_path / "chk", tmp_path / "out"
    stopped = await stop_after_a_checkpoint(checkpoints, out, 1, rocksdb(tmp_path))
    restored_from = []
    for parallelism in (3, 2):
        # what the next job restores: native snapshots whose SST files sit in shared/
        newest = metadata_of(checkpoints)[-1]
        assert newest.format_version == 2 and all(h.shared for uid, _, h in newest.handles() if uid == "count")
        if parallelism == 3:
            stopped = await stop_after_a_checkpoint(checkpoints, out, parallelism, rocksdb(tmp_path))
            restored_from.append(stopped)
        else:
            result = await jobs.job("keyed", checkpoints, out, 2, state_backend=rocksdb(tmp_path)).execute("rescale")
            assert result.restored_from == stopped and result.attempts == 1
    assert Counter(read_committed_lines(out)) == jobs.expected_counts()  # every count 1..n once: no key lost
    # a later checkpoint reused files written for an earlier one (incremental), and the
    # working directories of all three jobs are gone
    reused = [f for m in metadata_of(checkpoints) for f in m.shared_files() if uploaded_for(f.name) < m.checkpoint_id]
    assert reused
    assert not any((tmp_path / "rocksdb").iterdir())


async def run_until_stopped_with_savepoint(
    env: StreamEnvironment, out: Path, more: int, savepoints: Path, from_savepoint: Path | None = None
) -> Path:
    """Start the keyed job, wait for ``more`` new committed lines, stop with a savepoint."""
    before = len(read_committed_lines(out)) if out.exists() else 0
    client = env.set_savepoint_dir(savepoints).execute_async("rescale", from_savepoint=from_savepoint)
    for _ in range(2000):
        if out.exists() and len(read_committed_lines(out)) >= before + more:
            break
        await asyncio.sleep(0.005)
    savepoint = await client.stop_with_savepoint()
    await client.wait()
    return savepoint


async def test_savepoints_move_keyed_state_heap_to_rocksdb_to_heap_1_to_3_to_2(tmp_path: Path) -> None:
    out, savepoints = tmp_path / "out", tmp_path / "savepoints"
    heap_job = jobs.job("keyed", tmp_path / "chk-1", out, 1, state_backend=HashMapStateBackend())
    first = await run_until_stopped_with_savepoint(heap_job, out, 100, savepoints)
    rocksdb_job = jobs.job("keyed", tmp_path / "chk-2", out, 3, state_backend=rocksdb(tmp_path))
    second = await run_until_stopped_with_savepoint(rocksdb_job, out, 100, savepoints, from_savepoint=first)
    # a savepoint of the RocksDB job is canonical and self-contained: no shared files
    meta = CheckpointMetadata.from_json((second / "_metadata").read_bytes().partition(b"\n")[2])
    assert meta.format_version == 1 and meta.shared_files() == [] and meta.operators["count"].parallelism == 3

    result = await jobs.job("keyed", tmp_path / "chk-3", out, 2, state_backend=HashMapStateBackend()).execute(
        "rescale", from_savepoint=second
    )
    assert result.restored_from == meta.checkpoint_id
    assert Counter(read_committed_lines(out)) == jobs.expected_counts()


# -- retention -------------------------------------------------------------------------------

CHECKPOINTS_WANTED = 55
PER_CHECKPOINT = 40  # records the source lets through per completed checkpoint (one per key)
TOTAL = CHECKPOINTS_WANTED * PER_CHECKPOINT
EXPECTED = Counter(f"k{k} {n}" for k in range(40) for n in range(1, TOTAL // 40 + 1))
completed: set[int] = set()  # checkpoint ids the counting function heard complete


async def gated(ctx: GeneratorContext, position: int | None) -> AsyncIterator[tuple[Any, int]]:
    """Records 0, 1, ... of 40 keys; record i waits until i // PER_CHECKPOINT checkpoints
    completed, so the job takes at least CHECKPOINTS_WANTED of them however fast it runs
    (the source awaits: barriers pass meanwhile)."""
    n = 0 if position is None else position
    while n < TOTAL:
        while len(completed) < n // PER_CHECKPOINT:
            await asyncio.sleep(0.001)
        yield (f"k{n % 40}", n), n + 1
        n += 1


class CountAndListen(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, record: Any, ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect(f"{record[0]} {n}")

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        completed.add(checkpoint_id)


async def test_retention_with_incremental_checkpoints_keeps_only_referenced_shared_files(tmp_path: Path) -> None:
    completed.clear()
    checkpoints, out = tmp_path / "chk", tmp_path / "out"
    env = StreamEnvironment(parallelism=1, max_parallelism=32).set_state_backend(rocksdb(tmp_path))
    env.enable_checkpointing(0.005, directory=checkpoints, retained=3)
    env.set_restart_strategy(RestartStrategy.none())
    (env.from_source(GeneratorSource(gated), name="records").uid("records").key_by(lambda r: r[0])
        .process(CountAndListen()).uid("count").sink_to(ExactlyOnceFileSink(out)).uid("out"))  # fmt: skip
    result = await env.execute("retention")
    assert result.checkpoints_completed >= CHECKPOINTS_WANTED > 50
    assert Counter(read_committed_lines(out)) == EXPECTED
    retained = metadata_of(checkpoints)
    assert len(retained) == 3
    referenced = {f.name for m in retained for f in m.shared_files()}
    assert referenced and {p.name for p in (checkpoints / "shared").iterdir()} == referenced
    # the run wrote far more than is left: retention deleted the files of dropped checkpoints
    written = sum(h["size"] for h in result.metrics["checkpoints"]["history"] if h["status"] == "completed")
    assert written > 2 * sum(p.stat().st_size for p in (checkpoints / "shared").iterdir())


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for the test: a file system that really fills up."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_aborts_the_checkpoints_it_hits_and_the_job_goes_on(small_tmpfs: Path, tmp_path: Path) -> None:
    completed.clear()
    checkpoints, out = small_tmpfs / "chk", tmp_path / "out"
    ballast = small_tmpfs / "ballast"
    env = StreamEnvironment(parallelism=2, max_parallelism=32).set_state_backend(rocksdb(tmp_path))
    env.enable_checkpointing(0.005, directory=checkpoints, tolerable_failures=10_000)
    env.set_restart_strategy(RestartStrategy.none())
    (env.from_source(GeneratorSource(gated), name="records").uid("records").key_by(lambda r: r[0])
        .process(CountAndListen()).uid("count").sink_to(ExactlyOnceFileSink(out)).uid("out"))  # fmt: skip
    client = env.execute_async("full-disk")

    reasons: list[str] = []

    async def fill_then_free() -> None:
        while len(completed) < 10:
            await asyncio.sleep(0.002)
        with open(ballast, "wb") as sink:  # everything that is left
            try:
                while True:
                    sink.write(b"\0" * (1 << 20))
                    sink.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        while not reasons:
            history = client.metrics()["checkpoints"]["history"]
            reasons.extend(h["reason"] for h in history if h["status"] == "aborted")
            await asyncio.sleep(0.002)
        os.unlink(ballast)

    freed = asyncio.ensure_future(fill_then_free())
    result = await client.wait()
    await freed
    assert any("No space left on device" in reason for reason in reasons), reasons
    assert result.metrics["checkpoints"]["failed"] >= 1
    assert result.attempts == 1  # no restart: the checkpoints failed, the job went on
    assert result.checkpoints_completed >= CHECKPOINTS_WANTED
    assert Counter(read_committed_lines(out)) == EXPECTED


async def test_a_missing_shared_file_is_named_and_the_previous_checkpoint_restored_under_the_rollback_rule(
    tmp_path: Path,
) -> None:
    checkpoints, out = tmp_path / "chk", tmp_path / "out"
    latest = await stop_after_a_checkpoint(checkpoints, out, 2, rocksdb(tmp_path))
    newest = metadata_of(checkpoints)[-1]
    only_latest = next(f for f in newest.shared_files() if uploaded_for(f.name) == latest)
    (checkpoints / "shared" / only_latest.name).unlink()

    previous = max(m.checkpoint_id for m in metadata_of(checkpoints) if m.checkpoint_id < latest)

    # the job has an exactly-once sink: skipping a completed checkpoint would repeat its output
    with pytest.raises(JobFailedError, match=rf"checkpoint {latest} is damaged: the shared file "
                       rf".*{only_latest.name}' is missing\). Restoring checkpoint {previous} instead") as refused:
        await jobs.job("keyed", checkpoints, out, 2, state_backend=rocksdb(tmp_path)).execute("rescale")
    assert isinstance(refused.value.__cause__, CheckpointRollbackError)
    result = await jobs.job("keyed", checkpoints, out, 2, state_backend=rocksdb(tmp_path)).execute(
        "rescale", allow_checkpoint_rollback=True
    )
    assert result.restored_from == previous  # what it wrote since is written again: the rollback allowed
