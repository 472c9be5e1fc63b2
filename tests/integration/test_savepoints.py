"""Savepoints of running jobs, in one process: take, stop with, move, restore, refuse.

The jobs (savepoint_jobs.py) read a replayable source that never ends and count words in
keyed ValueState; their ``(word, count)`` outputs show whether state was restored.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from savepoint_jobs import FIRST, MORE, Count, EndlessSource, final_counts, job, wait_for
from streamflow import JobFailedError, StateError, StreamEnvironment
from streamflow.checkpoint.storage import METADATA_FILE, CheckpointStorage
from streamflow.connectors.debug import CollectSink
from streamflow.connectors.file_sink import ExactlyOnceFileSink, read_committed_lines
from streamflow.control import ControlError, ControlServer, JobRegistry, send_command
from streamflow.errors import CheckpointError, ConfigError, JobCancelledError
from streamflow.savepoint import NonRestoredStateError, locate_snapshot
from streamflow.state import ListStateDescriptor


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"savepoints::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


async def savepoint_after_first(tmp_path: Path, out: str, *, stop: bool = True) -> Path:
    """Run the first job until it counted FIRST, take a savepoint (stop or not), end it."""
    client = job(FIRST, tmp_path / "chk-a", CollectSink(out)).execute_async("words")
    await wait_for(lambda: len(CollectSink.results(out)) == len(FIRST), "the first words to be counted")
    if stop:
        path = await client.stop_with_savepoint(tmp_path / "savepoints")
        result = await client.wait()
        assert result.stopped_with_savepoint == path
    else:
        path = await client.trigger_savepoint(tmp_path / "savepoints")
        await client.cancel()
    CollectSink.clear(out)
    return path


# -- taking and restoring --------------------------------------------------------------


async def test_a_moved_savepoint_restores_at_another_parallelism_and_counts_go_on(tmp_path: Path, out: str) -> None:
    path = await savepoint_after_first(tmp_path, out, stop=False)
    assert path.parent == tmp_path / "savepoints" and path.name.startswith("savepoint-words-")
    metadata = (path / METADATA_FILE).read_bytes()
    assert b'"is_savepoint":true' in metadata and b'"format_version":1' in metadata
    assert str(tmp_path).encode() not in metadata  # no absolute paths: it can move

    moved = tmp_path / "elsewhere" / "renamed-savepoint"
    moved.parent.mkdir()
    shutil.move(str(path), moved)
    client = job(FIRST + MORE, tmp_path / "chk-b", CollectSink(out), parallelism=3).execute_async(
        "words", from_savepoint=moved
    )
    await wait_for(lambda: len(CollectSink.results(out)) == len(MORE), "the new words to be counted")
    await client.cancel()
    assert final_counts(CollectSink.results(out)) == {"hello": 3, "world": 1, "flink": 2}
    assert client.metrics()["checkpoints"]["restored_path"] == str(moved)


async def test_stop_with_savepoint_commits_the_sinks_and_ends_the_job(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    client = job(FIRST, tmp_path / "chk", ExactlyOnceFileSink(out_dir)).execute_async("words")
    await wait_for(lambda: client.metrics()["operators"].get("out[0]", {}).get("records_in", 0)
                   + client.metrics()["operators"].get("out[1]", {}).get("records_in", 0) == len(FIRST),
                   "the sink to get every record")
    assert read_committed_lines(out_dir) == []  # exactly-once: nothing visible before a checkpoint

    path = await client.stop_with_savepoint(tmp_path / "savepoints")
    result = await client.wait()

    assert result.stopped_with_savepoint == path and client.status == "finished"
    assert sorted(read_committed_lines(out_dir)) == sorted(
        ['["hello",1]', '["flink",1]', '["hello",2]', '["state",1]']
    )
    snapshot = await locate_snapshot(path)
    assert snapshot.is_savepoint and set(snapshot.metadata.operators) == {"words", "count", "out"}


async def test_a_failed_stop_keeps_the_job_running_and_a_later_stop_works(tmp_path: Path, out: str) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    client = job(FIRST + MORE, tmp_path / "chk", CollectSink(out)).execute_async("words")
    await wait_for(lambda: len(CollectSink.results(out)) >= 2, "the first words")
    with pytest.raises(CheckpointError, match="savepoint could not be written"):
        await client.stop_with_savepoint(not_a_directory)
    await wait_for(lambda: len(CollectSink.results(out)) == len(FIRST + MORE), "the source to read on")
    assert client.status == "running" and client.metrics()["checkpoints"]["failed"] == 1
    path = await client.stop_with_savepoint(tmp_path / "savepoints")
    assert (await client.wait()).stopped_with_savepoint == path


async def test_retention_never_deletes_a_savepoint_in_the_checkpoint_directory(tmp_path: Path, out: str) -> None:
    checkpoints = tmp_path / "chk"
    client = job(FIRST, checkpoints, CollectSink(out), retained=1).execute_async("words")
    await wait_for(lambda: len(CollectSink.results(out)) == len(FIRST), "the words")
    path = await client.trigger_savepoint(checkpoints)  # the same directory as the checkpoints
    for _ in range(3):
        await client.trigger_checkpoint()
    # retained=1 at work (retention runs right after the completion the trigger waited for)
    await wait_for(lambda: sorted(p.name for p in checkpoints.glob("chk-*")) == ["chk-4"], "retention")
    await client.cancel()
    assert (await locate_snapshot(path)).completed.checkpoint_id == 1
    # the job's checkpoint directory as a restore path means its latest checkpoint
    assert (await locate_snapshot(checkpoints)).completed.checkpoint_id == 4


async def test_a_retained_checkpoint_directory_restores_like_a_savepoint(tmp_path: Path, out: str) -> None:
    client = job(FIRST, tmp_path / "chk-a", CollectSink(out)).execute_async("words")
    await wait_for(lambda: len(CollectSink.results(out)) == len(FIRST), "the words")
    checkpoint_id = await client.trigger_checkpoint()
    await client.cancel()
    CollectSink.clear(out)
    chk = tmp_path / "chk-a" / f"chk-{checkpoint_id}"
    result_client = job(FIRST + MORE, tmp_path / "chk-b", CollectSink(out)).execute_async("words", from_savepoint=chk)
    await wait_for(lambda: len(CollectSink.results(out)) == len(MORE), "the new words")
    # checkpoint ids continue after the restored one: a sink's transaction names never repeat
    assert await result_client.trigger_checkpoint() == checkpoint_id + 1
    await result_client.cancel()
    assert final_counts(CollectSink.results(out)) == {"hello": 3, "world": 1, "flink": 2}
    assert result_client.metrics()["checkpoints"]["restored_from"] == checkpoint_id
    assert await CheckpointStorage(tmp_path / "chk-b").highest_checkpoint_id() == checkpoint_id + 1


# -- refusing -----------------------------------------------------------------------------


async def test_state_of_a_missing_uid_is_refused_with_the_uids_listed(tmp_path: Path, out: str) -> None:
    path = await savepoint_after_first(tmp_path, out)
    env = job(FIRST + MORE, tmp_path / "chk-b", CollectSink(out), count_uid="count-v2")
    with pytest.raises(NonRestoredStateError, match=r"operator uid\(s\) that this job does not have: 'count'") as caught:
        await env.execute("words", from_savepoint=path)
    assert caught.value.uids == ["count"] and "--allow-non-restored-state" in str(caught.value)
    assert CollectSink.results(out) == []


async def test_allowing_non_restored_state_drops_it_with_a_warning(
    tmp_path: Path, out: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = await savepoint_after_first(tmp_path, out)
    env = job(FIRST + MORE, tmp_path / "chk-b", CollectSink(out), count_uid="count-v2")
    with caplog.at_level(logging.WARNING, logger="streamflow.savepoint"):
        client = env.execute_async("words", from_savepoint=path, allow_non_restored_state=True)
        await wait_for(lambda: len(CollectSink.results(out)) == len(MORE), "the new words")
    await client.cancel()
    assert final_counts(CollectSink.results(out)) == {"hello": 1, "world": 1, "flink": 1}  # counts start over
    assert any("uid 'count'" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


async def test_a_state_whose_kind_changed_fails_with_a_state_error_naming_uid_and_state(
    tmp_path: Path, out: str
) -> None:
    path = await savepoint_after_first(tmp_path, out)
    env = job(FIRST + MORE, tmp_path / "chk-b", CollectSink(out), count=Count(ListStateDescriptor("count")))
    with pytest.raises(JobFailedError) as caught:
        await env.execute("words", from_savepoint=path)
    error = caught.value.__cause__
    assert isinstance(error, StateError)
    assert (error.operator, error.state) == ("count", "count")
    assert "holds state 'count' as a value state, but the job now asks for it with a ListStateDescriptor" in str(
        error
    )


class Remember:
    """A map that keeps every word it saw in operator list state (split or union)."""

    def __init__(self, union: bool) -> None:
        self.union = union
        self.seen: list[str] = []

    def __call__(self, word: str) -> str:
        self.seen.append(word)
        return word

    def initialize_state(self, ctx: Any) -> None:
        store = ctx.operator_state_store
        get = store.get_union_list_state if self.union else store.get_list_state
        self.state = get(ListStateDescriptor("seen"))
        self.seen = self.state.get()

    def snapshot_state(self, ctx: Any) -> None:
        self.state.update(self.seen)


def remembering(items: list[str], directory: Path, out: str, *, union: bool) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=1)
    env.enable_checkpointing(30.0, directory=directory)
    (
        env.from_source(EndlessSource(items), name="words").uid("words")
        .map(Remember(union)).uid("remember")
        .sink_to(CollectSink(out)).uid("out")
    )
    return env


async def test_operator_state_restored_in_another_mode_names_the_operator_and_state(
    tmp_path: Path, out: str
) -> None:
    client = remembering(FIRST, tmp_path / "chk-a", out, union=False).execute_async("words")
    await wait_for(lambda: len(CollectSink.results(out)) == len(FIRST), "the words")
    path = await client.stop_with_savepoint(tmp_path / "savepoints")
    await client.wait()
    env = remembering(FIRST + MORE, tmp_path / "chk-b", out, union=True)
    with pytest.raises(JobFailedError) as caught:
        await env.execute("words", from_savepoint=path)
    error = caught.value.__cause__
    assert isinstance(error, StateError) and (error.operator, error.state) == ("remember", "seen")
    assert str(error).startswith("operator 'remember' (subtask 0): operator state 'seen' is a split list state")


async def test_another_max_parallelism_is_refused_for_keyed_state(tmp_path: Path, out: str) -> None:
    path = await savepoint_after_first(tmp_path, out)
    env = StreamEnvironment(parallelism=2, max_parallelism=64)
    env.enable_checkpointing(30.0, directory=tmp_path / "chk-b")
    (
        env.from_source(EndlessSource(FIRST), name="words").uid("words").set_parallelism(1)
        .key_by(lambda word: word).process(Count()).uid("count")
        .sink_to(CollectSink(out)).uid("out")
    )
    with pytest.raises(StateError, match=r"run with max_parallelism=128 \(--max-parallelism 128\)"):
        await env.execute("words", from_savepoint=path)


async def test_a_path_without_a_snapshot_is_refused_clearly(tmp_path: Path, out: str) -> None:
    env = job(FIRST, tmp_path / "chk", CollectSink(out))
    with pytest.raises(ConfigError, match="neither a savepoint, nor a checkpoint"):
        await env.execute("words", from_savepoint=tmp_path)
    with pytest.raises(ConfigError, match="is not a directory"):
        await env.execute("words", from_savepoint=tmp_path / "missing")


async def test_savepoints_need_checkpointing_and_a_directory(tmp_path: Path, out: str) -> None:
    env = StreamEnvironment()
    env.from_source(EndlessSource(FIRST)).uid("words").sink_to(CollectSink(out)).uid("out")
    client = env.execute_async("plain")
    await wait_for(lambda: client.status == "running" and len(CollectSink.results(out)) == len(FIRST), "the job")
    with pytest.raises(ConfigError, match="no savepoint directory for job 'plain'"):
        await client.trigger_savepoint()
    with pytest.raises(ConfigError, match="runs without checkpointing"):
        await client.trigger_savepoint(tmp_path)
    await client.cancel()
    with pytest.raises(JobCancelledError, match="job 'plain' was cancelled"):
        await client.wait()
    with pytest.raises(CheckpointError, match="job 'plain' is cancelled"):
        await client.trigger_savepoint(tmp_path)


# -- the control socket, in process -----------------------------------------------------------


async def test_the_control_socket_answers_status_savepoint_and_cancel(tmp_path: Path, out: str) -> None:
    registry = JobRegistry(tmp_path / "home")
    client = job(FIRST, tmp_path / "chk", CollectSink(out)).execute_async("words")
    async with ControlServer(client, registry) as server:
        assert server.entry is not None and registry.resolve("words") == server.entry
        await wait_for(lambda: len(CollectSink.results(out)) == len(FIRST), "the words")
        status = await send_command(server.entry, "status", timeout=5)
        assert status["name"] == "words" and status["metrics"]["status"] == "running"
        assert set(status["metrics"]["tasks"]) >= {"words[0]", "count[0]", "count[1]"}
        taken = await send_command(server.entry, "savepoint", timeout=30, directory=str(tmp_path / "sp"))
        assert (await locate_snapshot(taken["path"])).is_savepoint
        with pytest.raises(ControlError, match="ConfigError: unknown control command 'nap'"):
            await send_command(server.entry, "nap", timeout=5)
        assert await send_command(server.entry, "cancel", timeout=30) == {"status": "cancelled"}
    assert registry.entries() == []
    with pytest.raises(JobCancelledError):
        await client.wait()
