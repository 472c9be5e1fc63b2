"""An exactly-once sink of text lines into part files, published by atomic rename.

Delivery guarantee: EXACTLY-ONCE with checkpointing (two-phase commit, see
docs/architecture.md); without checkpointing the files are published at end of input.

Each subtask writes each transaction to ``<directory>/.pending/<name>.inprogress``; at
barrier n the file is flushed and fsync'ed (pre-commit); when checkpoint n completes it
is renamed to ``<directory>/<name>.txt`` (commit), with
``<name> = <prefix>-<uid>-<subtask>-<epoch:08d>``. Readers must ignore ``.pending/``.
The epoch counts the writer's transactions and continues past every existing file of the
subtask on restart, so names never collide and sort in write order per subtask.
Transactions without records publish nothing (no empty part files).
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson

from streamflow.api.connector import SinkContext
from streamflow.api.delivery import DeliveryGuarantee
from streamflow.errors import ConfigError, ConnectorError, DataLossError
from streamflow.transactions.two_phase import TwoPhaseCommitSinkWriter

__all__ = ["ExactlyOnceFileSink", "FileSinkWriter", "read_committed_lines"]

PENDING_DIR = ".pending"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class ExactlyOnceFileSink:
    """Write str records as lines, other records as one orjson document per line.

    A str record must not contain a newline (it would read back as two lines).
    """

    # Declared for the job: restoring past a damaged completed checkpoint would duplicate
    # this sink's committed output, so it is refused unless allowed.
    delivery_guarantee: ClassVar[DeliveryGuarantee] = DeliveryGuarantee.EXACTLY_ONCE

    directory: str | Path
    _: KW_ONLY
    prefix: str = "part"

    def __post_init__(self) -> None:
        try:
            directory = os.fspath(self.directory)
        except TypeError as exc:
            raise ConfigError(
                f"ExactlyOnceFileSink directory must be a path, got {self.directory!r}",
                value=repr(self.directory),
            ) from exc
        object.__setattr__(self, "directory", directory)
        if not isinstance(self.prefix, str) or not self.prefix or _UNSAFE.search(self.prefix) or self.prefix[0] == ".":
            raise ConfigError(
                f"ExactlyOnceFileSink prefix must be a non-empty name of letters, digits, "
                f"'_', '-', '.' not starting with '.', got {self.prefix!r}",
                value=self.prefix,
            )

    def create_writer(self, ctx: SinkContext) -> FileSinkWriter:
        return FileSinkWriter(ctx, str(self.directory), self.prefix)


@dataclass(slots=True)
class _FileTxn:
    epoch: int
    pending: str
    final: str
    records: int = 0
    file: IO[bytes] | None = field(default=None, repr=False)


class FileSinkWriter(TwoPhaseCommitSinkWriter[_FileTxn]):
    """One subtask's writer; handle ``{"pending", "final", "epoch", "records"}``."""

    def __init__(self, ctx: SinkContext, directory: str, prefix: str) -> None:
        super().__init__(ctx)
        self._dir = os.path.abspath(directory)  # handles must not depend on the cwd
        self._pending_dir = os.path.join(self._dir, PENDING_DIR)
        self._stem = f"{prefix}-{_UNSAFE.sub('_', ctx.operator_uid)}"
        self._names = re.compile(rf"^{re.escape(self._stem)}-(\d+)-(\d+)\.(inprogress|txt)$")
        self._epoch = 0  # of the last transaction begun

    async def open(self) -> None:
        self._epoch = await asyncio.to_thread(self._prepare_directories)
        await super().open()

    # -- the transaction steps -----------------------------------------------------------

    async def begin(self) -> _FileTxn:
        self._epoch += 1
        name = f"{self._stem}-{self.ctx.subtask_index}-{self._epoch:08d}"
        return _FileTxn(
            self._epoch,
            os.path.join(self._pending_dir, name + ".inprogress"),
            os.path.join(self._dir, name + ".txt"),
        )

    async def write_to(self, txn: _FileTxn, records: list[Any]) -> None:
        data = _encode(records)
        if txn.file is None:
            txn.file = await _open_new(txn.pending)
        await asyncio.to_thread(txn.file.write, data)
        txn.records += len(records)

    async def pre_commit(self, txn: _FileTxn, checkpoint_id: int) -> Any:
        if txn.file is not None:
            await asyncio.to_thread(_sync_and_close, txn.file, self._pending_dir)
            txn.file = None
        return {"pending": txn.pending, "final": txn.final, "epoch": txn.epoch, "records": txn.records}

    async def commit(self, handle: Any) -> None:
        try:
            pending, final, records = str(handle["pending"]), str(handle["final"]), int(handle["records"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ConnectorError(f"not a file sink transaction handle: {handle!r}", handle=repr(handle)) from exc
        if records:
            await asyncio.to_thread(_publish, pending, final)

    async def abort(self, txn: _FileTxn) -> None:
        await asyncio.to_thread(_discard, txn)

    async def abort_lingering(self) -> None:
        live = {h["pending"] for h in self.pending_handles()}
        if self.current is not None:
            live.add(self.current.pending)
        await asyncio.to_thread(self._delete_lingering, live)

    # -- blocking helpers (run in a thread) ----------------------------------------------

    def _prepare_directories(self) -> int:
        """Create the directories; return the highest epoch any file of this subtask has."""
        try:
            os.makedirs(self._pending_dir, exist_ok=True)
        except OSError as exc:
            raise ConnectorError(
                f"ExactlyOnceFileSink cannot create {self._pending_dir!r}: {exc}; check the "
                "directory path and its permissions",
                path=self._pending_dir,
            ) from exc
        # List .pending before the final directory: another subtask may be renaming one
        # of this subtask's files (a rescaled restore); this order sees it at least once.
        highest = 0
        for directory in (self._pending_dir, self._dir):
            for name in os.listdir(directory):
                m = self._names.match(name)
                if m and int(m.group(1)) == self.ctx.subtask_index:
                    highest = max(highest, int(m.group(2)))
        return highest

    def _delete_lingering(self, live: set[str]) -> None:
        mine, p = self.ctx.subtask_index, self.ctx.parallelism
        for name in os.listdir(self._pending_dir):
            m = self._names.match(name)
            if not m or m.group(3) != "inprogress":
                continue
            subtask = int(m.group(1))
            path = os.path.join(self._pending_dir, name)
            if (subtask == mine or (mine == 0 and subtask >= p)) and path not in live:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


async def _open_new(path: str) -> IO[bytes]:
    """``open(path, "xb")`` in a worker thread, safe to cancel.

    Cancelling ``to_thread`` does not stop the thread: the file it still opens would be
    dropped unclosed (a ResourceWarning when collected, and a handle held until then). A
    job attempt that fails cancels its sinks mid-write, so the open is shielded and a
    cancelled caller closes what it opened; the pending file itself is removed by the
    transaction's abort, or as lingering on the next start.
    """
    opening = asyncio.ensure_future(asyncio.to_thread(_open_exclusive, path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _open_exclusive(path: str) -> IO[bytes]:
    return open(path, "xb")


def _close_opened(opening: asyncio.Future[IO[bytes]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _encode(records: list[Any]) -> bytes:
    parts: list[bytes] = []
    for record in records:
        try:
            if isinstance(record, str):
                parts.append(record.encode("utf-8") + b"\n")
            else:
                parts.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        except (UnicodeEncodeError, TypeError) as exc:  # orjson.JSONEncodeError is a TypeError
            raise ConnectorError(
                f"ExactlyOnceFileSink cannot encode record {record!r:.200}: {exc}; map records "
                "to str or to JSON-compatible values before the sink",
                record=repr(record)[:200],
            ) from exc
    return b"".join(parts)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # platforms that cannot open directories: rename durability is best effort
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sync_and_close(f: IO[bytes], directory: str) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    _fsync_dir(directory)  # the pending file's name must survive a power loss too


def _publish(pending: str, final: str) -> None:
    """Rename ``pending`` to ``final``; a no-op if that already happened."""
    if os.path.exists(final):
        if os.path.exists(pending):
            raise ConnectorError(
                f"cannot publish {pending!r}: {final!r} already exists and would be overwritten; "
                "two sinks share a directory, prefix and uid. Give each sink its own.",
                path=final,
            )
        return  # committed before (e.g. again after a restore): idempotent
    try:
        os.replace(pending, final)
    except FileNotFoundError:
        if os.path.exists(final):
            return
        raise DataLossError(
            f"the prepared file {pending!r} is gone and {final!r} was never published: data "
            "of a completed checkpoint may be lost. Something deleted files under .pending/; "
            "re-run the job from its source if the output must be complete.",
            path=pending,
        ) from None
    _fsync_dir(os.path.dirname(final) or ".")


def _discard(txn: _FileTxn) -> None:
    if txn.file is not None:
        txn.file.close()
        txn.file = None
    try:
        os.unlink(txn.pending)
    except FileNotFoundError:
        pass


def read_committed_lines(directory: str | Path) -> list[str]:
    """Every line of every published part file in ``directory``, files in name order.

    Blocking; for tests and examples. In-progress files (under ``.pending/``) are skipped.
    """
    lines: list[str] = []
    files = sorted(p for p in Path(directory).iterdir() if p.suffix == ".txt" and p.is_file())
    for path in files:
        text = path.read_text(encoding="utf-8")
        if text:  # split on "\n" only: JSON lines may contain other line separators
            lines.extend(text.removesuffix("\n").split("\n"))
    return lines
