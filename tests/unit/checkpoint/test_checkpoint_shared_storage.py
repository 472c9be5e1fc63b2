"""Checkpoint storage with shared files (incremental checkpoints), on real files: the
metadata lists them (format 2), verification checks them, discard and retention release
them by reference count, the newest checkpoint with shared files is kept, orphans are
swept when an attempt starts, ids continue after them, savepoints refuse them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamflow.checkpoint import serde
from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta, StateHandle
from streamflow.checkpoint.shared_files import SharedFile
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointCorruptedError, CheckpointError
from streamflow.savepoint.writer import write_savepoint


async def take(storage: CheckpointStorage, n: int, new: dict[str, bytes], reused: tuple[SharedFile, ...] = (),
               local: Path | None = None) -> CheckpointMetadata:  # fmt: skip
    """Checkpoint n of one subtask: ``new`` files uploaded for it, ``reused`` ones of
    earlier checkpoints referenced; acknowledged (references counted) and completed."""
    local = local or storage.directory.parent / "local"
    local.mkdir(parents=True, exist_ok=True)
    shared = list(reused)
    for name, data in new.items():
        (local / name).write_bytes(data)
        shared.append(await storage.shared.upload(n, f"{n}-op-0-{name}", local / name, link=name.endswith(".sst")))
    handle = await storage.write_state(n, "op-0", serde.encode({"keyed": {"n": n}}), tuple(shared))
    storage.shared.references.add(n, [f.name for f in handle.shared])  # what the coordinator does on the ack
    metadata = CheckpointMetadata(
        job_name="job", checkpoint_id=CheckpointId(n), timestamp=float(n),
        operators={"op": OperatorStateMeta(parallelism=1, max_parallelism=8, subtasks={0: handle})},
    )  # fmt: skip
    await storage.write_metadata(n, metadata)
    return metadata


def names(storage: CheckpointStorage) -> set[str]:
    directory = storage.shared.directory
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


@pytest.fixture
def storage(tmp_path: Path) -> CheckpointStorage:
    return CheckpointStorage(tmp_path / "job", retained=2)


async def test_the_metadata_lists_shared_files_as_format_2_and_reads_back(storage: CheckpointStorage) -> None:
    first = await take(storage, 1, {"000001.sst": b"a" * 100, "MANIFEST-1": b"m"})
    raw = orjson.loads((storage.checkpoint_path(1) / "_metadata").read_bytes().partition(b"\n")[2])
    assert raw["format_version"] == 2
    assert [f["name"] for f in raw["operators"]["op"]["subtasks"]["0"]["shared"]] == ["1-op-0-000001.sst",
                                                                                      "1-op-0-MANIFEST-1"]
    read = await storage.verify(1)
    assert read.metadata == first and read.metadata.format_version == 2
    assert read.metadata.shared_files()[0] == SharedFile(
        name="1-op-0-000001.sst", size=100, sha256=first.shared_files()[0].sha256
    )


@pytest.mark.parametrize("damage", ["missing", "flipped", "truncated"])
async def test_a_damaged_shared_file_fails_verification_and_the_restore_scan_skips_it(
    storage: CheckpointStorage, tmp_path: Path, damage: str
) -> None:
    await take(storage, 1, {"000001.sst": b"a" * 100})
    second = await take(storage, 2, {"000002.sst": b"b" * 100}, reused=(await storage.verify(1)).metadata.shared_files())
    path = storage.shared.directory / "2-op-0-000002.sst"
    path.unlink()  # hard-linked to the local file: replace, never write into it
    if damage == "flipped":
        path.write_bytes(b"b" * 99 + b"c")
    elif damage == "truncated":
        path.write_bytes(b"b" * 99)
    with pytest.raises(CheckpointCorruptedError, match=r"checkpoint 2 is damaged: the shared file .*2-op-0-000002.sst"):
        await storage.verify(2)
    scan = await storage.scan_for_restore()
    assert scan.latest is not None and scan.latest.checkpoint_id == 1
    assert [(s.checkpoint_id, s.completed) for s in scan.skipped] == [(2, True)]
    assert "2-op-0-000002.sst" in scan.skipped[0].problem and second.shared_files()


async def test_retention_deletes_what_no_retained_checkpoint_references(storage: CheckpointStorage) -> None:
    await take(storage, 1, {"000001.sst": b"1", "MANIFEST": b"m1"})
    base = [f for f in (await storage.verify(1)).metadata.shared_files() if f.name.endswith(".sst")]
    await take(storage, 2, {"000002.sst": b"2", "MANIFEST": b"m2"}, reused=tuple(base))
    await take(storage, 3, {"MANIFEST": b"m3"}, reused=tuple(base))
    assert await storage.enforce_retention() == (1,)
    # checkpoint 1's own MANIFEST went with it; its SST file lives on, reused by 2 and 3
    assert names(storage) == {"1-op-0-000001.sst", "2-op-0-000002.sst", "2-op-0-MANIFEST", "3-op-0-MANIFEST"}
    await storage.discard(2)  # an abort (or retention) of 2 releases its files too
    assert names(storage) == {"1-op-0-000001.sst", "3-op-0-MANIFEST"}


async def test_the_newest_checkpoint_with_shared_files_is_kept_while_savepoints_follow(
    storage: CheckpointStorage,
) -> None:
    await take(storage, 1, {"000001.sst": b"1"})
    for n in (2, 3, 4):  # canonical checkpoints (savepoints) reference no shared file
        await take(storage, n, {})
    assert await storage.enforce_retention() == (2,)
    assert sorted(p.name for p in storage.directory.glob("chk-*")) == ["chk-1", "chk-3", "chk-4"]
    assert names(storage) == {"1-op-0-000001.sst"}  # the subtasks may go on reusing it


async def test_an_attempt_start_recounts_references_and_sweeps_orphans(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path / "job", retained=2)
    await take(storage, 1, {"000001.sst": b"1"})
    await take(storage, 2, {"000002.sst": b"2"})
    local = tmp_path / "local"
    (local / "x.sst").write_bytes(b"x")
    await storage.shared.upload(2, "2-op-0-x.sst", local / "x.sst", link=True)  # uploaded, never acknowledged
    await storage.shared.upload(5, "5-op-0-x.sst", local / "x.sst", link=True)  # a checkpoint maybe in flight
    restarted = CheckpointStorage(tmp_path / "job", retained=2)  # a new attempt knows nothing yet
    await restarted.load_shared_references()
    assert restarted.shared.references.referenced() == {"1-op-0-000001.sst", "2-op-0-000002.sst"}
    assert names(restarted) == {"1-op-0-000001.sst", "2-op-0-000002.sst", "5-op-0-x.sst"}
    assert await restarted.highest_checkpoint_id() == 5  # ids go on after the files' too


async def test_discard_all_removes_the_shared_files(storage: CheckpointStorage) -> None:
    await take(storage, 1, {"000001.sst": b"1"})
    await storage.discard_all()
    assert not storage.directory.exists()


async def test_a_savepoint_refuses_state_that_lives_in_shared_files(storage: CheckpointStorage, tmp_path: Path) -> None:
    metadata = await take(storage, 1, {"000001.sst": b"1"})
    with pytest.raises(CheckpointError, match=r"the state of op\[0\] lives partly in the job's shared files"):
        await write_savepoint(storage, 1, metadata, tmp_path / "savepoints")
    assert not (tmp_path / "savepoints").exists()


def test_a_handle_without_shared_files_is_written_as_version_1() -> None:
    handle = StateHandle(file="op-0", size=3, sha256="a" * 64)
    metadata = CheckpointMetadata(
        job_name="job", checkpoint_id=CheckpointId(1), timestamp=0.0,
        operators={"op": OperatorStateMeta(parallelism=1, max_parallelism=8, subtasks={0: handle})},
    )  # fmt: skip
    raw = orjson.loads(metadata.to_json())
    assert raw["format_version"] == 1 and "shared" not in raw["operators"]["op"]["subtasks"]["0"]
    with pytest.raises(CheckpointError, match="lists its shared files as a str"):
        StateHandle.from_dict({"file": "op-0", "size": 3, "sha256": "a" * 64, "shared": "x"})
