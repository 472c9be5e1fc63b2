"""FileSource driven through the SourceReader protocol directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import streamflow.connectors.files as files_module
from streamflow.api.connector import SourceContext
from streamflow.connectors import FileSource
from streamflow.connectors.files import FileSourceReader
from streamflow.errors import ConfigError, ConnectorError


def ctx(subtask: int = 0, parallelism: int = 1, restored: list[Any] | None = None) -> SourceContext:
    return SourceContext(job_name="j", operator_uid="src", subtask_index=subtask,
                         parallelism=parallelism, restored_splits=restored)


async def drain(reader: FileSourceReader, max_records: int = 1000) -> list[tuple[str, str, int]]:
    out = []
    while (batch := await reader.poll(max_records, 0.01)) is not None:
        out += [(batch.split, r, p) for r, p in zip(batch.records, batch.positions or [], strict=True)]
    return out


@pytest.fixture
def two_files(tmp_path: Path) -> list[Path]:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"one\ntwo\r\nthree\n")
    b.write_bytes("é1\n\nlast-without-newline".encode())
    return [a, b]


async def test_reads_lines_of_all_files_with_line_number_positions(two_files: list[Path]) -> None:
    reader = FileSource(two_files).create_reader(ctx())
    await reader.open()
    a, b = map(str, two_files)
    assert await drain(reader) == [
        (a, "one", 1), (a, "two", 2), (a, "three", 3),
        (b, "é1", 1), (b, "", 2), (b, "last-without-newline", 3),
    ]
    assert reader.snapshot_splits(1) == []
    await reader.close()


async def test_files_are_distributed_round_robin(two_files: list[Path], tmp_path: Path) -> None:
    c = tmp_path / "c.txt"
    c.write_text("c\n")
    source = FileSource([*two_files, c])
    got = [{s for s, _, _ in await drain(source.create_reader(ctx(i, 2)))} for i in range(2)]
    assert got == [{str(two_files[0]), str(c)}, {str(two_files[1])}]


@pytest.mark.parametrize("cut", range(0, 7))
async def test_restore_resumes_exactly_at_the_next_line(two_files: list[Path], cut: int) -> None:
    source = FileSource(two_files, batch_size=1)
    full = await drain(source.create_reader(ctx()))
    reader = source.create_reader(ctx())
    await reader.open()
    head = []
    for _ in range(cut):
        batch = await reader.poll(1, 0.01)
        assert batch is not None
        head += [(batch.split, r, p) for r, p in zip(batch.records, batch.positions or [], strict=True)]
    state = reader.snapshot_splits(1)
    await reader.close()
    resumed = source.create_reader(ctx(restored=state))
    await resumed.open()
    assert head + await drain(resumed) == full  # no duplicate, no gap


async def test_split_state_is_byte_offset_and_number_of_the_next_line(two_files: list[Path]) -> None:
    reader = FileSource(two_files[0], batch_size=2).create_reader(ctx())
    await reader.poll(10, 0.01)
    assert reader.snapshot_splits(1) == [
        {"path": str(two_files[0]), "offset": len(b"one\ntwo\r\n"), "line": 3},
    ]
    await reader.close()


async def test_large_file_read_in_small_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_module, "_CHUNK", 7)  # lines straddle chunk boundaries
    path = tmp_path / "big.txt"
    lines = [f"line-{i}" * (i % 4) for i in range(500)]
    path.write_text("\n".join(lines) + "\n")
    reader = FileSource(path, batch_size=33).create_reader(ctx())
    got = await drain(reader)
    assert [r for _, r, _ in got] == lines
    assert [p for _, _, p in got] == list(range(1, 501))


async def test_missing_file_fails_at_open_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    reader = FileSource([missing]).create_reader(ctx())
    with pytest.raises(ConnectorError, match="nope.jsonl.*does not exist"):
        await reader.open()


async def test_truncated_file_on_restore_is_a_connector_error(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("short\n")
    reader = FileSource(path).create_reader(ctx(restored=[{"path": str(path), "offset": 999, "line": 50}]))
    with pytest.raises(ConnectorError, match="past the end"):
        await reader.open()


async def test_undecodable_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\n\xff\xfe\n")
    reader = FileSource(path).create_reader(ctx())
    with pytest.raises(ConnectorError, match="bad.txt line 2"):
        await drain(reader)
    await reader.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"paths": []}, "at least one path"), ({"paths": "x", "batch_size": 0}, "batch_size"),
     ({"paths": "x", "encoding": "utf-16"}, "one byte"), ({"paths": "x", "encoding": "nope"}, "unknown")],
)
def test_bad_config_is_a_config_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FileSource(**kwargs)
