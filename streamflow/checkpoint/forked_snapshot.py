"""A large heap snapshot pickled by a forked child, so the barrier costs a fork, not a pickle.

The heap backend's snapshot shares its live dicts and is exact only because it is pickled
in the synchronous step, before any state changes (values may be mutated in place, which
nothing can detect). At a million keys that pickle takes about a second of the task's
loop. A forked child sees the process memory exactly as it was at the fork, whatever the
parent writes afterwards (the kernel copies each page the parent touches), so the child
can build and pickle the snapshot while the task goes on, on another core:

1. at the barrier, :func:`fork_snapshot` forks: the child closes every descriptor but its
   pipe, builds the snapshot (``take()``, with TTL cleanup and user serializers, as it
   would run in the task), encodes it with :func:`~streamflow.checkpoint.serde.encode` and
   writes ``b"K"``, their length and the bytes (or ``b"E"`` and the pickled error) to the
   pipe, then exits;
2. in the background, :meth:`ForkedSnapshot.finish` reads the pipe in a thread, reaps the
   child and hands the bytes over as a :class:`~streamflow.checkpoint.serde.PickledPart`;
   the state file embeds them as they are (pickling one costs a copy of its bytes, not a
   walk over the state), and decoding the state file gives the snapshot dict back, the
   same as an inline snapshot's;
3. :meth:`ForkedSnapshot.discard` kills and reaps a child whose result was not taken
   (the checkpoint was declined first).

The parent pays the fork (page tables: about 12 ms for 400 MB of state) and a copy of
each page it writes while a child runs. Linux only: elsewhere, and below the backend's
threshold, snapshots stay inline.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal
import warnings
from typing import Any, Callable

from streamflow.checkpoint.serde import PickledPart, encode
from streamflow.checkpoint.shared_files import SharedFileStore
from streamflow.checkpoint.snapshot import FinishedKeyedState
from streamflow.errors import StateSerializationError

__all__ = ["ForkedSnapshot", "fork_snapshot"]

_OK = b"K"
_FAILED = b"E"
_HEADER = 9  # the tag, then the length of what follows (8 bytes): a child killed midway is seen
_CHUNK = 1 << 20


class ForkedSnapshot:
    """The background part of a snapshot taken by a forked child (module docstring)."""

    def __init__(self, pid: int, read_fd: int, *, operator: str, subtask: int) -> None:
        self.pid = pid
        self.operator = operator
        self.subtask = subtask
        self._read_fd = read_fd
        self._collecting: asyncio.Future[bytes] | None = None

    def _collect(self) -> asyncio.Future[bytes]:
        if self._collecting is None:
            self._collecting = asyncio.ensure_future(asyncio.to_thread(_read_and_reap, self.pid, self._read_fd))
        return self._collecting

    async def finish(self, store: SharedFileStore) -> FinishedKeyedState:
        """The child's encoded snapshot, once it exited.

        Raises:
            StateSerializationError: the child could not encode the snapshot (the error
                it met, naming operator, subtask and value), or it died before writing.
        """
        body = await asyncio.shield(self._collect())
        tag, size, payload = body[:1], int.from_bytes(body[1:_HEADER], "big"), body[_HEADER:]
        if tag == _OK and size == len(payload):
            return FinishedKeyedState(PickledPart(payload), ())
        if tag == _FAILED and size == len(payload):
            raise pickle.loads(payload)
        raise StateSerializationError(
            f"the child process {self.pid} that pickles the keyed snapshot ended without writing all of it "
            f"({len(body):,} bytes came); was it killed (out of memory)?",
        ).in_operator(self.operator, self.subtask)

    async def discard(self) -> None:
        """Kill the child if its result was not taken, and reap it."""
        collecting = self._collecting
        if collecting is None or not collecting.done():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            await asyncio.shield(self._collect())
        except Exception:  # noqa: BLE001 - reaping only; finish reported any failure
            pass


def fork_snapshot(take: Callable[[], dict[str, Any]], *, operator: str, subtask: int) -> ForkedSnapshot:
    """Fork a child that encodes ``take()``; the parent returns at once.

    ``take`` runs in the child only, on the memory as it was at the fork.
    """
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns about fork in a process with threads: a child could block on
        # a lock another thread held. This child takes no lock: it pickles objects in
        # memory and writes to a pipe, then leaves with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
    if pid == 0:  # pragma: no cover - the child; coverage does not follow it
        _child(take, write_fd, operator=operator, subtask=subtask)
    os.close(write_fd)
    return ForkedSnapshot(pid, read_fd, operator=operator, subtask=subtask)


def _child(take: Callable[[], dict[str, Any]], write_fd: int, *, operator: str, subtask: int) -> None:
    """Encode ``take()`` into ``write_fd`` and exit; never returns."""
    try:
        gc.disable()  # a collection would only copy pages the child does not need
        signal.set_wakeup_fd(-1)  # signals to the child must not wake the parent's loop
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        # Sockets, locks, files and the standard streams stay the parent's alone (a
        # process waiting for the parent's stdout to close must not wait for the child).
        null = os.open(os.devnull, os.O_RDWR)
        for standard in (0, 1, 2):
            os.dup2(null, standard)
        os.closerange(3, write_fd)
        os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
        try:
            keyed = take()
            try:
                tag, body = _OK, encode(keyed, operator=operator, subtask=subtask)
            except StateSerializationError:
                # again inside an operator snapshot, so that the error names the keyed state
                # and the key, as when the task encodes the snapshot itself
                encode({"keyed": keyed}, operator=operator, subtask=subtask)
                raise
        except StateSerializationError as exc:
            tag, body = _FAILED, pickle.dumps(exc.in_operator(operator, subtask))
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the parent
            failure = StateSerializationError(f"the keyed snapshot failed: {type(exc).__name__}: {exc}")
            tag, body = _FAILED, pickle.dumps(failure.in_operator(operator, subtask))
        for part in (tag + len(body).to_bytes(_HEADER - 1, "big"), body):
            view = memoryview(part)
            while view:
                view = view[os.write(write_fd, view) :]
    finally:
        os._exit(0)


def _read_and_reap(pid: int, read_fd: int) -> bytes:
    """Everything the child wrote, once it exited (runs in a thread)."""
    chunks = []
    try:
        while chunk := os.read(read_fd, _CHUNK):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by someone waiting for any child; the length tells
            pass
    return b"".join(chunks)
