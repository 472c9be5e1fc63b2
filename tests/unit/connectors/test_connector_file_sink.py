"""ExactlyOnceFileSink driven through the SinkWriter protocol directly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from streamflow.api.connector import SinkContext
from streamflow.connectors import ExactlyOnceFileSink, read_committed_lines
from streamflow.connectors.file_sink import FileSinkWriter
from streamflow.errors import ConfigError, ConnectorError, DataLossError


def ctx(*, restored: list[Any] | None = None, subtask: int = 0, parallelism: int = 1,
        checkpointing: bool = True) -> SinkContext:
    return SinkContext(job_name="j", operator_uid="out", subtask_index=subtask, parallelism=parallelism,
                       checkpointing=checkpointing, restored_state=restored)


async def writer(tmp_path: Path, **kwargs: Any) -> FileSinkWriter:
    w = ExactlyOnceFileSink(tmp_path).create_writer(ctx(**kwargs))
    await w.open()
    return w


def pending_files(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / ".pending"))


def crash(w: FileSinkWriter) -> None:
    """Drop the writer as a crash would (no close); only release its file handle."""
    if w.current is not None and w.current.file is not None:
        w.current.file.close()


async def test_records_are_invisible_until_the_checkpoint_completes(tmp_path: Path) -> None:
    w = await writer(tmp_path)
    await w.write(["plain line", {"k": 1}, [1, "x"]])
    assert read_committed_lines(tmp_path) == []
    state = await w.snapshot(1)
    assert read_committed_lines(tmp_path) == []  # prepared, not committed
    assert pending_files(tmp_path) == ["part-out-0-00000001.inprogress"]
    assert state[0]["handle"]["final"].endswith("part-out-0-00000001.txt")
    await w.notify_checkpoint_complete(1)
    assert read_committed_lines(tmp_path) == ["plain line", '{"k":1}', '[1,"x"]']
    assert pending_files(tmp_path) == []
    await w.close()


async def test_commit_is_idempotent_and_a_lost_pending_file_is_data_loss(tmp_path: Path) -> None:
    w = await writer(tmp_path)
    await w.write(["a"])
    handle = (await w.snapshot(1))[0]["handle"]
    await w.commit(handle)
    await w.commit(handle)  # again, e.g. after a restore: not an error, not a duplicate
    assert read_committed_lines(tmp_path) == ["a"]
    os.unlink(handle["final"])
    with pytest.raises(DataLossError, match="prepared file .* is gone"):
        await w.commit(handle)
    await w.close()


async def test_recovery_after_crash_publishes_exactly_once_and_drops_lingering(tmp_path: Path) -> None:
    first = await writer(tmp_path)
    await first.write(["r1", "r2"])
    state = await first.snapshot(1)  # checkpoint 1 completes, but we crash before commit
    await first.write(["after barrier"])  # in flight: must never become visible
    crash(first)
    assert pending_files(tmp_path) == ["part-out-0-00000001.inprogress", "part-out-0-00000002.inprogress"]

    second = await writer(tmp_path, restored=state)
    assert read_committed_lines(tmp_path) == ["r1", "r2"]
    assert pending_files(tmp_path) == []  # the lingering epoch-2 file is gone
    crash(second)

    third = await writer(tmp_path, restored=state)  # crash again before a new checkpoint
    assert read_committed_lines(tmp_path) == ["r1", "r2"]
    await third.write(["r3"])
    await third.snapshot(2)
    await third.notify_checkpoint_complete(2)
    assert read_committed_lines(tmp_path) == ["r1", "r2", "r3"]
    # Epochs continue past every file that exists at open, so no published part is ever
    # overwritten (epoch 2 may be reused: its lingering file was deleted, never published).
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["part-out-0-00000001.txt", "part-out-0-00000002.txt"]
    await third.close()


async def test_aborted_checkpoint_commits_with_the_next_one(tmp_path: Path) -> None:
    w = await writer(tmp_path)
    await w.write(["a"])
    await w.snapshot(1)
    await w.notify_checkpoint_aborted(1)
    await w.write(["b"])
    await w.snapshot(2)
    assert read_committed_lines(tmp_path) == []
    await w.notify_checkpoint_complete(2)
    assert read_committed_lines(tmp_path) == ["a", "b"]
    await w.close()


async def test_rescaled_restore_commits_all_and_cleans_up_after_first_completion(tmp_path: Path) -> None:
    old = [await writer(tmp_path, subtask=i, parallelism=2) for i in range(2)]
    states = []
    for i, w in enumerate(old):
        await w.write([f"s{i}"])
        states += await w.snapshot(3)
        await w.write([f"lingering {i}"])
        crash(w)
    new = await writer(tmp_path, restored=states, parallelism=1)
    assert sorted(read_committed_lines(tmp_path)) == ["s0", "s1"]
    # Parallelism changed: another new subtask might still need old files, so wait.
    assert len(pending_files(tmp_path)) == 2
    await new.write(["n"])
    await new.snapshot(4)
    await new.notify_checkpoint_complete(4)
    assert pending_files(tmp_path) == []  # subtask 0 also removed old subtask 1's file
    assert sorted(read_committed_lines(tmp_path)) == ["n", "s0", "s1"]
    await new.close()


async def test_empty_transactions_publish_nothing(tmp_path: Path) -> None:
    w = await writer(tmp_path)
    state = await w.snapshot(1)
    assert state[0]["handle"]["records"] == 0
    await w.notify_checkpoint_complete(1)
    assert list(tmp_path.glob("*.txt")) == [] and pending_files(tmp_path) == []
    await w.close()


async def test_without_checkpointing_finish_publishes(tmp_path: Path) -> None:
    w = await writer(tmp_path, checkpointing=False)
    await w.write(["x", "y"])
    await w.finish()
    await w.close()
    assert read_committed_lines(tmp_path) == ["x", "y"]


async def test_fresh_start_removes_old_in_progress_files_but_keeps_output(tmp_path: Path) -> None:
    old = await writer(tmp_path)
    await old.write(["kept"])
    await old.snapshot(1)
    await old.notify_checkpoint_complete(1)
    await old.write(["half"])
    crash(old)
    fresh = await writer(tmp_path)
    assert pending_files(tmp_path) == []
    await fresh.write(["new"])
    await fresh.snapshot(1)
    await fresh.notify_checkpoint_complete(1)
    assert read_committed_lines(tmp_path) == ["kept", "new"]
    await fresh.close()


async def test_close_discards_the_open_transaction(tmp_path: Path) -> None:
    w = await writer(tmp_path)
    await w.write(["never"])
    await w.close()
    assert pending_files(tmp_path) == [] and read_committed_lines(tmp_path) == []


async def test_unencodable_record_is_a_connector_error(tmp_path: Path) -> None:
    w = await writer(tmp_path)
    with pytest.raises(ConnectorError, match="cannot encode record"):
        await w.write([object()])
    await w.close()


@pytest.mark.parametrize("prefix", ["", "a/b", ".hidden"])
def test_bad_prefix_is_a_config_error(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix"):
        ExactlyOnceFileSink(tmp_path, prefix=prefix)


async def test_a_write_cancelled_while_its_file_opens_leaks_no_file_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing job attempt cancels its sink mid-write; the file the worker thread opens
    meanwhile must be closed, not left for the garbage collector (a ResourceWarning, an
    error under this suite's filterwarnings)."""
    import asyncio
    import builtins
    import gc
    import threading

    from streamflow.connectors import file_sink

    opened, release = threading.Event(), threading.Event()

    def slow_open(path: str, mode: str) -> Any:
        f = builtins.open(path, mode)
        opened.set()
        release.wait(5)  # the caller is cancelled while the thread holds the new file
        return f

    monkeypatch.setattr(file_sink, "open", slow_open, raising=False)
    w = await writer(tmp_path)
    writing = asyncio.ensure_future(w.write(["a"]))
    assert await asyncio.to_thread(opened.wait, 5)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    release.set()
    for _ in range(20):
        await asyncio.sleep(0.005)  # the thread returns; the clean-up callback runs
    gc.collect()
    await w.close()
    assert pending_files(tmp_path) == []
