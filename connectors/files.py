"""A bounded source of the text lines of one or more files.

Delivery guarantee: exactly-once (replayable): a split state stores the byte offset and
number of the NEXT line to read, and a restore seeks straight to it.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import IO, Any, cast

from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.errors import ConfigError, ConnectorError, StateError

__all__ = ["FileSource", "FileSourceReader"]

_CHUNK = 1 << 20  # bytes per read; large reads run in a thread, never on the loop


@dataclass(frozen=True, slots=True)
class FileSource:
    """Emit each line of ``paths`` (without its ``\\n`` or ``\\r\\n``), file after file.

    File k goes to subtask ``k % parallelism`` on a fresh start. Each file is a split
    ``{"path": ..., "offset": <byte offset of the next line>, "line": <its 1-based
    number>}``; on restore, whatever splits a subtask gets are read from those offsets.
    A record's position is its 1-based line number, so errors say "events.jsonl @ 1234".
    ``encoding`` must keep ``\\n`` a single byte (utf-8, latin-1, ascii, ...).
    """

    paths: str | Path | Sequence[str | Path]
    _: KW_ONLY
    batch_size: int = 1000
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        raw = [self.paths] if isinstance(self.paths, (str, Path)) else self.paths
        try:
            paths = tuple(os.fspath(p) for p in raw)
        except TypeError as exc:
            raise ConfigError(
                f"FileSource paths must be a path or a sequence of paths, got {self.paths!r}",
                value=repr(self.paths),
            ) from exc
        if not paths:
            raise ConfigError("FileSource needs at least one path", value=repr(self.paths))
        object.__setattr__(self, "paths", paths)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(
                f"FileSource batch_size must be a positive int, got {self.batch_size!r}",
                value=self.batch_size,
            )
        try:
            newline = "\n".encode(self.encoding)
        except LookupError as exc:
            raise ConfigError(f"FileSource: unknown encoding {self.encoding!r}", value=self.encoding) from exc
        if newline != b"\n":
            raise ConfigError(
                f"FileSource encoding {self.encoding!r} does not encode newline as one byte; "
                "convert the file to utf-8 first",
                value=self.encoding,
            )

    def create_reader(self, ctx: SourceContext) -> FileSourceReader:
        if ctx.restored_splits is None:
            paths = cast(tuple[str, ...], self.paths)  # normalised in __post_init__
            mine = [p for k, p in enumerate(paths) if k % ctx.parallelism == ctx.subtask_index]
            splits = [_FileSplit(p, 0, 1) for p in mine]
        else:
            splits = [_FileSplit.restore(s) for s in ctx.restored_splits]
        return FileSourceReader(splits, self.batch_size, self.encoding)


class _FileSplit:
    """Read progress in one file. ``offset``/``line`` are those of the next line not yet
    emitted; ``lines`` holds complete lines read from disk but not emitted."""

    __slots__ = ("path", "offset", "line", "file", "lines", "partial", "eof", "unterminated")

    def __init__(self, path: str, offset: int, line: int) -> None:
        self.path = path
        self.offset = offset
        self.line = line
        self.file: IO[bytes] | None = None
        self.lines: deque[bytes] = deque()
        self.partial = b""
        self.eof = False
        self.unterminated = False  # lines[-1] is the file's last line, without a newline

    @classmethod
    def restore(cls, state: Any) -> _FileSplit:
        try:
            offset, line = int(state["offset"]), int(state["line"])
            split = cls(str(state["path"]), offset, line)
        except (TypeError, KeyError, ValueError) as exc:
            raise StateError(
                f"restored split {state!r} is not a FileSource split; was this source uid "
                "used by another source before?",
                split=repr(state),
            ) from exc
        if offset < 0 or line < 1:
            raise StateError(f"restored split {state!r} has a negative offset or line", split=repr(state))
        return split

    @property
    def done(self) -> bool:
        return self.eof and not self.lines and not self.partial

    def state(self) -> dict[str, Any]:
        return {"path": self.path, "offset": self.offset, "line": self.line}


def _open_at(path: str, offset: int) -> IO[bytes]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the reader
    except FileNotFoundError:
        raise ConnectorError(
            f"FileSource: file {path!r} does not exist; check the path (relative paths are "
            f"resolved against {os.getcwd()!r})",
            path=path,
        ) from None
    except IsADirectoryError:
        raise ConnectorError(
            f"FileSource: {path!r} is a directory; pass the files in it, e.g. "
            "sorted(Path(dir).glob('*.jsonl'))",
            path=path,
        ) from None
    except OSError as exc:
        raise ConnectorError(f"FileSource: cannot open {path!r}: {exc}", path=path) from exc
    size = os.fstat(f.fileno()).st_size
    if offset > size:
        f.close()
        raise ConnectorError(
            f"FileSource: restored offset {offset} is past the end of {path!r} ({size} bytes); "
            "the file was truncated or replaced since the checkpoint. Restore the original "
            "file or start the job without restoring.",
            path=path,
            position=offset,
        )
    f.seek(offset)
    return f


class FileSourceReader:
    """Reads its files in order, ~1 MiB at a time in a worker thread."""

    def __init__(self, splits: list[_FileSplit], batch_size: int, encoding: str) -> None:
        self._splits = splits
        self._batch_size = batch_size
        self._encoding = encoding

    async def open(self) -> None:
        # Fail fast on every missing file, but hold one file handle at a time.
        for split in self._splits:
            f = await asyncio.to_thread(_open_at, split.path, split.offset)
            f.close()

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        want = max(1, min(max_records, self._batch_size))
        while self._splits:
            split = self._splits[0]
            while not split.lines and not split.eof:
                await self._read_chunk(split)
            if split.lines:
                return self._emit(split, want)
            if split.partial:  # the last line has no trailing newline
                split.lines.append(split.partial)
                split.partial, split.unterminated = b"", True
                return self._emit(split, want)
            await asyncio.to_thread(self._close_split, split)
            self._splits.pop(0)
        return None

    async def _read_chunk(self, split: _FileSplit) -> None:
        if split.file is None:
            split.file = await asyncio.to_thread(_open_at, split.path, split.offset)
        try:
            chunk = await asyncio.to_thread(split.file.read, _CHUNK)
        except OSError as exc:
            raise ConnectorError(
                f"FileSource: reading {split.path!r} at line {split.line} failed: {exc}",
                path=split.path,
                position=split.line,
            ) from exc
        if not chunk:
            split.eof = True
            return
        parts = (split.partial + chunk).split(b"\n")
        split.partial = parts.pop()
        split.lines.extend(parts)

    def _emit(self, split: _FileSplit, want: int) -> SourceBatch:
        records: list[Any] = []
        first = split.line
        lines, encoding = split.lines, self._encoding
        for _ in range(min(want, len(lines))):
            raw = lines.popleft()
            # Count the newline, except after the unterminated last line of the file.
            split.offset += len(raw) + (0 if split.unterminated and not lines else 1)
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                records.append(raw.decode(encoding))
            except UnicodeDecodeError as exc:
                raise ConnectorError(
                    f"FileSource: {split.path} line {split.line} is not valid {encoding}: {exc}; "
                    "fix the file or pass the right encoding=",
                    path=split.path,
                    position=split.line,
                ) from exc
            split.line += 1
        return SourceBatch(records, list(range(first, split.line)), split.path)

    def active_splits(self) -> list[str]:
        """The files still to read (for per-split watermarks)."""
        return [split.path for split in self._splits]

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [s.state() for s in self._splits if not s.done]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        for split in self._splits:
            await asyncio.to_thread(self._close_split, split)

    @staticmethod
    def _close_split(split: _FileSplit) -> None:
        if split.file is not None:
            split.file.close()
            split.file = None
