from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamflow.checkpoint import serde
from streamflow.checkpoint.metadata import (
    CheckpointMetadata,
    OperatorStateMeta,
    StateHandle,
    UnsupportedCheckpointVersionError,
)
from streamflow.checkpoint.storage import CheckpointStorage, state_file_name
from streamflow.core.faults import FaultInjector, InjectedFault
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointCorruptedError, CheckpointError, ConfigError

faults = FaultInjector()  # the faults these tests arm; the storages made here get it

LOGGER = "streamflow.checkpoint.storage"


async def take_checkpoint(storage: CheckpointStorage, checkpoint_id: int, *, complete: bool = True) -> CheckpointMetadata:
    """Write state of operator "count" (2 subtasks) and "src" (1), then the metadata."""
    operators: dict[str, dict[int, StateHandle]] = {"count": {}, "src": {}}
    for uid, subtask in (("count", 0), ("count", 1), ("src", 0)):
        data = serde.encode({"checkpoint": checkpoint_id, "uid": uid, "subtask": subtask})
        operators[uid][subtask] = await storage.write_state(checkpoint_id, f"{uid}-{subtask}", data)
    metadata = CheckpointMetadata(
        job_name="job",
        checkpoint_id=CheckpointId(checkpoint_id),
        timestamp=float(checkpoint_id),
        operators={
            uid: OperatorStateMeta(parallelism=len(subs), max_parallelism=128, subtasks=subs)
            for uid, subs in operators.items()
        },
    )
    if complete:
        await storage.write_metadata(checkpoint_id, metadata)
    return metadata


def flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture
def storage(tmp_path: Path) -> CheckpointStorage:
    return CheckpointStorage(tmp_path / "job", retained=2, faults=faults)


@pytest.fixture
def armed_metadata_fault() -> Iterator[None]:
    faults.arm("metadata_write", 3, action="raise")
    yield
    faults.disarm()


async def test_write_read_round_trip(storage: CheckpointStorage) -> None:
    payload = serde.encode({"a": 1, "b": [1, 2]})
    handle = await storage.write_state(1, "count-0", payload)
    assert handle == StateHandle(file="count-0", size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    raw = (storage.checkpoint_path(1) / "count-0").read_bytes()
    assert raw.startswith(b"SFST1 " + handle.sha256.encode() + b"\n")
    assert await storage.read_state(1, handle) == payload
    assert serde.decode(await storage.read_state(1, handle)) == {"a": 1, "b": [1, 2]}


async def test_empty_state_round_trip(storage: CheckpointStorage) -> None:
    handle = await storage.write_state(1, "x-0", b"")
    assert await storage.read_state(1, handle) == b""


async def test_flipped_byte_detected(storage: CheckpointStorage) -> None:
    handle = await storage.write_state(4, "count-0", b"some state bytes")
    path = storage.checkpoint_path(4) / "count-0"
    flip_last_byte(path)
    with pytest.raises(CheckpointCorruptedError, match=r"checkpoint 4 is damaged: .*count-0.*sha256") as info:
        await storage.read_state(4, handle)
    assert info.value.checkpoint_id == 4
    assert info.value.file == str(path)


async def test_missing_and_mismatched_state_file(storage: CheckpointStorage) -> None:
    handle = await storage.write_state(1, "count-0", b"abc")
    with pytest.raises(CheckpointCorruptedError, match="state file is missing"):
        await storage.read_state(1, StateHandle(file="nope-0", size=3, sha256=handle.sha256))
    with pytest.raises(CheckpointCorruptedError, match="holds 3 bytes, the metadata says 4"):
        await storage.read_state(1, StateHandle(file="count-0", size=4, sha256=handle.sha256))
    with pytest.raises(CheckpointCorruptedError, match="differs from the one recorded"):
        await storage.read_state(1, StateHandle(file="count-0", size=3, sha256="0" * 64))
    with pytest.raises(CheckpointCorruptedError, match="invalid state file name"):
        await storage.read_state(1, StateHandle(file="../escape", size=3, sha256=handle.sha256))


async def test_truncated_state_file(storage: CheckpointStorage) -> None:
    handle = await storage.write_state(1, "count-0", b"abc")
    (storage.checkpoint_path(1) / "count-0").write_bytes(b"SFST1 ab")
    with pytest.raises(CheckpointCorruptedError, match="truncated"):
        await storage.read_state(1, handle)


def test_state_file_names_are_safe_and_distinct() -> None:
    assert state_file_name("count-0") == "count-0"
    unsafe = ["a/b-0", "a_b-0", "../x-1", "_metadata", ".hidden", "ü-0", "a\\b", "", "x" * 300]
    names = [state_file_name(n) for n in unsafe]
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name
        assert name[0] not in "._"
        assert len(name) < 200


async def test_second_write_of_same_name_refused(storage: CheckpointStorage) -> None:
    await storage.write_state(1, "count-0", b"first")
    with pytest.raises(CheckpointError, match="already has state file 'count-0'"):
        await storage.write_state(1, "count-0", b"second")


async def test_latest_complete_returns_newest(storage: CheckpointStorage) -> None:
    assert await storage.latest_complete() is None
    await take_checkpoint(storage, 1)
    meta = await take_checkpoint(storage, 2)
    latest = await storage.latest_complete()
    assert latest is not None
    assert latest.checkpoint_id == 2
    assert latest.path == storage.checkpoint_path(2)
    assert latest.metadata == meta
    handle = latest.metadata.operators["count"].subtasks[1]
    assert serde.decode(await storage.read_state(2, handle)) == {"checkpoint": 2, "uid": "count", "subtask": 1}


def _corrupt_state(chk: Path) -> str:
    flip_last_byte(chk / "count-1")
    return "do not match its sha256"


def _truncate_metadata(chk: Path) -> str:
    raw = (chk / "_metadata").read_bytes()
    (chk / "_metadata").write_bytes(raw[: len(raw) // 2])
    return "_metadata"


def _flip_metadata(chk: Path) -> str:
    flip_last_byte(chk / "_metadata")
    return "_metadata"


def _remove_state(chk: Path) -> str:
    (chk / "src-0").unlink()
    return "state file is missing"


def _remove_metadata(chk: Path) -> str:
    (chk / "_metadata").unlink()
    return "incomplete"


@pytest.mark.parametrize(
    "damage", [_corrupt_state, _truncate_metadata, _flip_metadata, _remove_state, _remove_metadata]
)
async def test_latest_complete_skips_damaged_newest(
    storage: CheckpointStorage, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    await take_checkpoint(storage, 1)
    await take_checkpoint(storage, 2)
    problem = damage(storage.checkpoint_path(2))  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        latest = await storage.latest_complete()
    assert latest is not None and latest.checkpoint_id == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "checkpoint 2 is" in warnings[0]
    assert problem in warnings[0]
    assert "falling back to the previous checkpoint" in warnings[0]


@pytest.mark.parametrize(
    ("damage", "completed"),
    [(_corrupt_state, True), (_truncate_metadata, True), (_remove_state, True), (_remove_metadata, False)],
)
async def test_scan_for_restore_reports_skipped_checkpoints_and_whether_they_completed(
    storage: CheckpointStorage, caplog: pytest.LogCaptureFixture, damage: object, completed: bool
) -> None:
    await take_checkpoint(storage, 1)
    await take_checkpoint(storage, 2)
    await take_checkpoint(storage, 3, complete=False)  # in flight when the process died
    problem = damage(storage.checkpoint_path(2))  # type: ignore[operator]
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        scan = await storage.scan_for_restore()
    assert scan.latest is not None and scan.latest.checkpoint_id == 1
    assert [(s.checkpoint_id, s.completed) for s in scan.skipped] == [(3, False), (2, completed)]
    assert "checkpoint 3 is incomplete" in scan.skipped[0].problem
    assert problem in scan.skipped[1].problem
    assert not caplog.records  # the caller decides how loud a skip is


async def test_in_progress_dir_without_metadata_is_skipped(
    storage: CheckpointStorage, caplog: pytest.LogCaptureFixture
) -> None:
    await take_checkpoint(storage, 1)
    await take_checkpoint(storage, 2, complete=False)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        latest = await storage.latest_complete()
    assert latest is not None and latest.checkpoint_id == 1
    assert "checkpoint 2 is incomplete" in caplog.text


async def test_metadata_of_another_checkpoint_is_damage(
    storage: CheckpointStorage, caplog: pytest.LogCaptureFixture
) -> None:
    await take_checkpoint(storage, 1)
    await take_checkpoint(storage, 2)
    (storage.checkpoint_path(2) / "_metadata").write_bytes((storage.checkpoint_path(1) / "_metadata").read_bytes())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        latest = await storage.latest_complete()
    assert latest is not None and latest.checkpoint_id == 1
    assert "describes checkpoint 1" in caplog.text


async def test_all_damaged_returns_none(storage: CheckpointStorage, caplog: pytest.LogCaptureFixture) -> None:
    await take_checkpoint(storage, 1)
    flip_last_byte(storage.checkpoint_path(1) / "count-0")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await storage.latest_complete() is None
    assert "no usable checkpoint" in caplog.text


async def test_unknown_metadata_version_is_raised_not_skipped(storage: CheckpointStorage) -> None:
    await take_checkpoint(storage, 1)
    await take_checkpoint(storage, 2)
    payload = (storage.checkpoint_path(2) / "_metadata").read_bytes()[71:].replace(
        b'"format_version":1', b'"format_version":9'
    )
    framed = b"SFMD1 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    (storage.checkpoint_path(2) / "_metadata").write_bytes(framed)
    with pytest.raises(UnsupportedCheckpointVersionError, match="format_version 9"):
        await storage.latest_complete()


async def test_metadata_write_is_atomic(storage: CheckpointStorage, armed_metadata_fault: None) -> None:
    await take_checkpoint(storage, 2)
    with pytest.raises(InjectedFault):
        await take_checkpoint(storage, 3)
    chk = storage.checkpoint_path(3)
    assert not (chk / "_metadata").exists()
    assert (chk / "_metadata.tmp").exists()  # the "crash" left the temp file behind
    latest = await storage.latest_complete()
    assert latest is not None and latest.checkpoint_id == 2
    assert await storage.highest_checkpoint_id() == 3


async def test_write_metadata_checks_id(storage: CheckpointStorage) -> None:
    meta = await take_checkpoint(storage, 1, complete=False)
    with pytest.raises(CheckpointError, match="metadata for checkpoint 1 cannot be written as checkpoint 2"):
        await storage.write_metadata(2, meta)


async def test_metadata_file_has_checksum_header(storage: CheckpointStorage) -> None:
    meta = await take_checkpoint(storage, 1)
    raw = (storage.checkpoint_path(1) / "_metadata").read_bytes()
    header, _, payload = raw.partition(b"\n")
    assert header == b"SFMD1 " + hashlib.sha256(payload).hexdigest().encode()
    assert CheckpointMetadata.from_json(payload) == meta
    assert await storage.read_metadata(1) == meta


async def test_discard(storage: CheckpointStorage) -> None:
    await take_checkpoint(storage, 1)
    await take_checkpoint(storage, 2, complete=False)
    await storage.discard(2)
    assert dirs(storage.directory) == ["chk-1"]
    await storage.discard(2)  # already gone: fine
    await storage.discard(99)


async def test_retention(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path, retained=2)
    for n in (1, 3, 4, 6):
        await take_checkpoint(storage, n)
    for n in (2, 5, 7, 8):  # 2 and 5: aborted/crashed leftovers; 7, 8: in flight
        await take_checkpoint(storage, n, complete=False)
    (tmp_path / "unrelated.txt").write_text("keep me")
    removed = await storage.enforce_retention()
    assert removed == (1, 2, 3, 5)
    assert dirs(tmp_path) == ["chk-4", "chk-6", "chk-7", "chk-8", "unrelated.txt"]
    assert await storage.enforce_retention() == ()


async def test_retention_without_complete_checkpoint_keeps_everything(storage: CheckpointStorage) -> None:
    await take_checkpoint(storage, 1, complete=False)
    assert await storage.enforce_retention() == ()
    assert dirs(storage.directory) == ["chk-1"]


async def test_discard_all(storage: CheckpointStorage) -> None:
    await take_checkpoint(storage, 1)
    await take_checkpoint(storage, 2, complete=False)
    await storage.discard_all()
    assert not storage.directory.exists()
    await storage.discard_all()  # nothing there: fine


async def test_highest_checkpoint_id(storage: CheckpointStorage) -> None:
    assert await storage.highest_checkpoint_id() == 0
    await take_checkpoint(storage, 3)
    await take_checkpoint(storage, 10, complete=False)
    (storage.directory / "chk-0042").mkdir()  # not a name storage writes
    (storage.directory / "chk-x").mkdir()
    (storage.directory / "chk-99").write_text("a file, not a checkpoint")
    assert await storage.highest_checkpoint_id() == 10


def test_retained_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="retained must be an int >= 1"):
        CheckpointStorage(tmp_path, retained=0)
