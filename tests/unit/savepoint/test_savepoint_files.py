"""Savepoint files on disk: publishing a checkpoint as a savepoint, finding and verifying
a snapshot by path, and what survives moving, retention and damage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

from streamflow.checkpoint import serde
from streamflow.checkpoint.metadata import (
    CheckpointMetadata,
    OperatorStateMeta,
    StateHandle,
    UnsupportedCheckpointVersionError,
)
from streamflow.checkpoint.storage import METADATA_FILE, CheckpointStorage
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointCorruptedError, CheckpointError, ConfigError
from streamflow.savepoint import locate_snapshot, write_savepoint


async def prepare(storage: CheckpointStorage, checkpoint_id: int) -> CheckpointMetadata:
    """State files of operators "count" (2 subtasks) and "src" (1) acked, no _metadata yet:
    the point at which the coordinator writes a savepoint."""
    operators: dict[str, dict[int, StateHandle]] = {"count": {}, "src": {}}
    for uid, subtask in (("count", 0), ("count", 1), ("src", 0)):
        data = serde.encode({"uid": uid, "subtask": subtask, "checkpoint": checkpoint_id})
        operators[uid][subtask] = await storage.write_state(checkpoint_id, f"{uid}-{subtask}", data)
    return CheckpointMetadata(
        job_name="wordcount",
        checkpoint_id=CheckpointId(checkpoint_id),
        timestamp=1.5,
        operators={
            uid: OperatorStateMeta(parallelism=len(subs), max_parallelism=128, subtasks=subs)
            for uid, subs in operators.items()
        },
    )


async def savepoint(tmp_path: Path, checkpoint_id: int = 7) -> tuple[CheckpointStorage, Path]:
    storage = CheckpointStorage(tmp_path / "checkpoints", retained=1)
    metadata = await prepare(storage, checkpoint_id)
    path = await write_savepoint(storage, checkpoint_id, metadata, tmp_path / "savepoints")
    await storage.write_metadata(checkpoint_id, metadata)
    return storage, path


async def test_a_savepoint_is_a_self_contained_copy_with_its_own_metadata(tmp_path: Path) -> None:
    storage, path = await savepoint(tmp_path)
    assert path.parent == tmp_path / "savepoints" and path.name.startswith("savepoint-wordcount-7-")
    assert sorted(p.name for p in path.iterdir()) == [METADATA_FILE, "count-0", "count-1", "src-0"]
    raw = (path / METADATA_FILE).read_bytes()
    metadata = orjson.loads(raw.partition(b"\n")[2])
    assert (metadata["format_version"], metadata["is_savepoint"], metadata["checkpoint_id"]) == (1, True, 7)
    assert str(tmp_path).encode() not in raw  # only file names, relative to the directory
    # the checkpoint itself stays an ordinary checkpoint of the job
    assert (await storage.verify(7)).metadata.is_savepoint is False


async def test_a_moved_and_renamed_savepoint_still_verifies_and_reads(tmp_path: Path) -> None:
    _storage, path = await savepoint(tmp_path)
    moved = tmp_path / "another" / "place"
    moved.parent.mkdir()
    shutil.move(str(path), moved)
    located = await locate_snapshot(moved)
    assert located.is_savepoint and located.path == moved
    handle = located.metadata.operators["count"].subtasks[1]
    assert serde.decode(await located.storage.read_state(7, handle)) == {"uid": "count", "subtask": 1, "checkpoint": 7}


async def test_deleting_the_checkpoint_leaves_the_savepoint_intact(tmp_path: Path) -> None:
    storage, path = await savepoint(tmp_path, 7)
    for n in (8, 9):
        await storage.write_metadata(n, await prepare(storage, n))
        await storage.enforce_retention()
    assert not storage.checkpoint_path(7).exists()  # retention took the checkpoint ...
    assert (await locate_snapshot(path)).completed.checkpoint_id == 7  # ... never the savepoint


async def test_a_savepoint_under_the_checkpoint_directory_is_not_retention_s_business(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path / "checkpoints", retained=1)
    metadata = await prepare(storage, 1)
    path = await write_savepoint(storage, 1, metadata, storage.directory)
    await storage.write_metadata(1, metadata)
    for n in (2, 3):
        await storage.write_metadata(n, await prepare(storage, n))
        assert await storage.enforce_retention() == (CheckpointId(n - 1),)
    await storage.discard_all()  # RetentionOnCancel.DELETE
    assert sorted(p.name for p in storage.directory.iterdir()) == [path.name]


async def test_a_failed_savepoint_leaves_no_directory_behind(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path / "checkpoints")
    metadata = await prepare(storage, 3)
    os.remove(storage.checkpoint_path(3) / "count-1")  # a state file vanished
    with pytest.raises(CheckpointError, match="savepoint of checkpoint 3 could not be written under"):
        await write_savepoint(storage, 3, metadata, tmp_path / "savepoints")
    assert list((tmp_path / "savepoints").iterdir()) == []


async def test_a_chk_directory_and_a_job_directory_are_restore_paths_too(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path / "checkpoints", retained=3)
    for n in (1, 2):
        await storage.write_metadata(n, await prepare(storage, n))
    assert (await locate_snapshot(storage.checkpoint_path(1))).completed.checkpoint_id == 1
    latest = await locate_snapshot(storage.directory)
    assert latest.completed.checkpoint_id == 2 and not latest.is_savepoint


async def test_damage_and_unknown_versions_are_named(tmp_path: Path) -> None:
    _storage, path = await savepoint(tmp_path)
    state = path / "count-0"
    raw = bytearray(state.read_bytes())
    raw[-1] ^= 1
    state.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorruptedError, match="count-0.*do not match its sha256"):
        await locate_snapshot(path)

    _storage, newer = await savepoint(tmp_path / "v2")
    header, _, payload = (newer / METADATA_FILE).read_bytes().partition(b"\n")
    (newer / METADATA_FILE).write_bytes(header + b"\n" + payload.replace(b'"format_version":1', b'"format_version":4'))
    with pytest.raises(UnsupportedCheckpointVersionError, match="format_version 4, but this streamflow only reads"):
        await locate_snapshot(newer)

    (newer / METADATA_FILE).write_bytes(b"SFMD1 nonsense\n{")
    with pytest.raises(CheckpointCorruptedError, match="is damaged"):
        await locate_snapshot(newer)


async def test_paths_without_a_snapshot_say_what_would_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="it is not a directory; pass a savepoint directory, a checkpoint"):
        await locate_snapshot(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="neither a savepoint, nor a checkpoint"):
        await locate_snapshot(tmp_path)
    storage = CheckpointStorage(tmp_path / "checkpoints")
    await prepare(storage, 1)  # chk-1 without _metadata: incomplete
    with pytest.raises(CheckpointCorruptedError, match="holds no complete, intact checkpoint"):
        await locate_snapshot(storage.directory)
