"""A large heap snapshot pickled by a forked child, so the barrier costs a fork, not a pickle.

The heap backend's snapshot shares its live dicts and is exact only because it is pickled
in the synchronous step, before any state changes (values may be mutated in place, which
nothing can detect). At a million keys that pickle takes about a second of the task's
loop. A forked child sees the process memory exactly as it was at the fork, whatever the
parent writes afterwards (the kernel copies each page the parent touches), so the child
can build and pickle the snapshot while the task goes on, on another core:

1. at the barrier, :func:`fork_snapshot` makes an anonymous in-memory file (memfd) and
   forks: the child closes every other descriptor, builds the snapshot (``take()``, with
   TTL cleanup and user serializers, as it would run in the task), encodes it with
   :func:`~streamflow.checkpoint.serde.encode`, writes ``b"K"``, the length and the bytes
   (or ``b"E"`` and the pickled error) into the file, and exits;
2. in the background, :meth:`ForkedSnapshot.ready` waits for the child's exit on its
   pidfd (in the event loop: no thread, and the task is not slowed down to make room for
   one); :meth:`ForkedSnapshot.finish` then reaps the child, reads the file in one call
   and hands the bytes over as a :class:`~streamflow.checkpoint.serde.PickledPart`;
   the state file embeds them as they are (pickling one costs a copy of its bytes, not a
   walk over the state), and decoding the state file gives the snapshot dict back, the
   same as an inline snapshot's;
3. :meth:`ForkedSnapshot.discard` kills and reaps a child whose result was not taken
   (the checkpoint was declined first); a child whose job process dies (SIGKILL
   included) is killed by the kernel (``PR_SET_PDEATHSIG``).

The parent pays the fork (page tables: about 12 ms for 400 MB of state) and a copy of
each page it writes while a child runs. Linux only: elsewhere, and below the backend's
threshold, snapshots stay inline.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import os
import pickle
import signal
import warnings
from typing import Any, Callable, Final

from streamflow.checkpoint.serde import PickledPart, encode
from streamflow.checkpoint.shared_files import SharedFileStore
from streamflow.checkpoint.snapshot import FinishedKeyedState
from streamflow.errors import StateSerializationError

__all__ = ["ForkedSnapshot", "fork_snapshot"]

_OK = b"K"
_FAILED = b"E"
_HEADER = 9  # the tag, then the length of what follows (8 bytes): a child killed midway is seen


class ForkedSnapshot:
    """The background part of a snapshot taken by a forked child (module docstring)."""

    def __init__(self, pid: int, output_fd: int, *, operator: str, subtask: int) -> None:
        self.pid = pid
        self.operator = operator
        self.subtask = subtask
        self._output_fd = output_fd
        self._exit: asyncio.Future[None] | None = None
        self._reaped = False

    def _exited(self) -> asyncio.Future[None]:
        """Done when the child exited: its pidfd becomes readable (no thread, no GIL)."""
        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = exit_ = loop.create_future()
            try:
                pidfd = os.pidfd_open(self.pid)  # a zombie's too: readable at once
            except ProcessLookupError:  # already reaped by someone waiting for any child
                self._reaped = True
                exit_.set_result(None)
                return exit_

            def on_exit() -> None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                if not exit_.done():
                    exit_.set_result(None)

            loop.add_reader(pidfd, on_exit)
        return self._exit

    def _reap(self) -> None:
        if not self._reaped:
            self._reaped = True
            try:
                os.waitpid(self.pid, 0)  # it exited: returns at once
            except ChildProcessError:  # reaped by someone waiting for any child; the length tells
                pass

    async def ready(self) -> None:
        """Wait until the child exited; the task goes on meanwhile (nothing of this
        process's runs for it, so no need to make room for it: see ``core.offload``)."""
        await asyncio.shield(self._exited())

    async def finish(self, store: SharedFileStore) -> FinishedKeyedState:
        """The child's encoded snapshot, once it exited.

        Raises:
            StateSerializationError: the child could not encode the snapshot (the error
                it met, naming operator, subtask and value), or it died before writing.
        """
        await self.ready()
        self._reap()
        body = await asyncio.to_thread(_read_all, self._output_fd)
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
        """Kill the child if it still runs, reap it, drop what it wrote."""
        exited = self._exited()
        if not exited.done():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.shield(exited)
        self._reap()
        if self._output_fd >= 0:
            os.close(self._output_fd)
            self._output_fd = -1


def fork_snapshot(take: Callable[[], dict[str, Any]], *, operator: str, subtask: int) -> ForkedSnapshot:
    """Fork a child that encodes ``take()`` into an anonymous in-memory file; the parent
    returns at once. ``take`` runs in the child only, on the memory as it was at the fork.

    Raises:
        OSError: no child could be made (no memory, too many processes).
    """
    die_with_parent = _parent_death_signal()
    parent = os.getpid()
    output_fd = os.memfd_create("streamflow-snapshot", os.MFD_CLOEXEC)
    with warnings.catch_warnings():
        # Python 3.12 warns about fork in a process with threads: a child could block on
        # a lock another thread held. This child takes no lock: it pickles objects in
        # memory and writes to a file, then leaves with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            pid = os.fork()
        except OSError:
            os.close(output_fd)
            raise
    if pid == 0:  # pragma: no cover - the child; coverage does not follow it
        if die_with_parent is not None and (die_with_parent() != 0 or os.getppid() != parent):
            os._exit(0)  # the job is gone (killed between the fork and here): nobody will read the snapshot
        _child(take, output_fd, operator=operator, subtask=subtask)
    return ForkedSnapshot(pid, output_fd, operator=operator, subtask=subtask)


_PR_SET_PDEATHSIG: Final = 1


@functools.cache
def _parent_death_signal() -> Callable[[], int] | None:
    """A call that makes the calling process get SIGKILL when its parent dies (Linux's
    ``prctl(PR_SET_PDEATHSIG)``), or None where there is none. A job killed while a child
    pickles its state then does not leave the child running on for a snapshot nobody
    will read (a second or more of a core at a million keys, beside the restarted job).
    (Strictly, the signal comes when the thread that forked ends: the event loop's thread,
    which outlives the job.) Resolved once, in the parent: the child only calls it."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    return functools.partial(prctl, _PR_SET_PDEATHSIG, signal.SIGKILL)


def _child(take: Callable[[], dict[str, Any]], output_fd: int, *, operator: str, subtask: int) -> None:
    """Encode ``take()`` into ``output_fd`` and exit; never returns."""
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
        os.closerange(3, output_fd)
        os.closerange(output_fd + 1, os.sysconf("SC_OPEN_MAX"))
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
                view = view[os.write(output_fd, view) :]
    finally:
        os._exit(0)


def _read_all(fd: int) -> bytes:
    """What the child wrote into ``fd`` (runs in a thread: one read, without the GIL)."""
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
