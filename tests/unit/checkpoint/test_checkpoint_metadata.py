from __future__ import annotations

import orjson
import pytest

from streamflow.checkpoint.metadata import (
    FORMAT_VERSION,
    CheckpointMetadata,
    OperatorStateMeta,
    StateHandle,
    UnsupportedCheckpointVersionError,
)
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointError


def make_metadata(checkpoint_id: int = 3) -> CheckpointMetadata:
    return CheckpointMetadata(
        job_name="job",
        checkpoint_id=CheckpointId(checkpoint_id),
        timestamp=1700000000.5,
        operators={
            "count": OperatorStateMeta(
                parallelism=2,
                max_parallelism=128,
                subtasks={
                    0: StateHandle(file="count-0", size=10, sha256="a" * 64),
                    1: StateHandle(file="count-1", size=0, sha256="b" * 64),
                },
            ),
            "src": OperatorStateMeta(parallelism=1, max_parallelism=128, subtasks={}),
        },
    )


def test_round_trip() -> None:
    meta = make_metadata()
    restored = CheckpointMetadata.from_json(meta.to_json())
    assert restored == meta
    assert restored.format_version == 1 and FORMAT_VERSION == 3  # no shared files or channel state: version 1
    assert list(restored.operators["count"].subtasks) == [0, 1]
    assert [(uid, sub) for uid, sub, _ in restored.handles()] == [("count", 0), ("count", 1)]


def test_json_layout_is_plain() -> None:
    raw = orjson.loads(make_metadata().to_json())
    assert raw["format_version"] == 1
    assert raw["operators"]["count"]["subtasks"]["0"] == {"file": "count-0", "size": 10, "sha256": "a" * 64}


@pytest.mark.parametrize("version", [4, 0, "1", None, True])
def test_unknown_version_rejected_by_name(version: object) -> None:
    raw = orjson.loads(make_metadata().to_json())
    raw["format_version"] = version
    with pytest.raises(
        UnsupportedCheckpointVersionError, match=rf"format_version {version!r}.*only reads format_version 1, 2, 3"
    ) as info:
        CheckpointMetadata.from_json(orjson.dumps(raw))
    assert info.value.found == version
    assert info.value.supported == 3
    assert not info.value.retriable


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1]", b'{"format_version": 1}', b'{"format_version": 1, "job_name": "j", "checkpoint_id": 1, '
     b'"timestamp": 0, "operators": {"x": {"parallelism": 1, "max_parallelism": 1, "subtasks": {"0": {"file": 3, '
     b'"size": 1, "sha256": "a"}}}}}'],
)
def test_malformed_metadata_rejected(data: bytes) -> None:
    with pytest.raises(CheckpointError, match="metadata|state handle"):
        CheckpointMetadata.from_json(data)


def test_an_unaligned_handle_is_written_as_version_3_with_its_persisted_bytes() -> None:
    """An earlier streamflow would restore it without the records in flight: it must refuse it."""
    meta = make_metadata()
    handle = meta.operators["count"].subtasks[0].with_channel_state(5120)
    unaligned = CheckpointMetadata(
        job_name=meta.job_name, checkpoint_id=meta.checkpoint_id, timestamp=meta.timestamp,
        operators={"count": OperatorStateMeta(parallelism=2, max_parallelism=128, subtasks={0: handle})},
    )
    raw = orjson.loads(unaligned.to_json())
    assert raw["format_version"] == 3
    assert raw["operators"]["count"]["subtasks"]["0"]["unaligned"] is True
    assert raw["operators"]["count"]["subtasks"]["0"]["persisted_bytes"] == 5120
    restored = CheckpointMetadata.from_json(unaligned.to_json())
    assert restored == unaligned and restored.format_version == 3
    assert restored.operators["count"].subtasks[0].persisted_bytes == 5120
    raw["operators"]["count"]["subtasks"]["0"]["persisted_bytes"] = "5k"
    with pytest.raises(CheckpointError, match="invalid unaligned or persisted_bytes"):
        CheckpointMetadata.from_json(orjson.dumps(raw))
