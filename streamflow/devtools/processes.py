"""Process and port helpers shared by the development servers (Kafka, MariaDB)."""

from __future__ import annotations

import abc
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["ServerProcess", "die_with_parent", "free_port", "port_open", "stop_process"]


class ServerProcess(abc.ABC):
    """A server child process with a data directory: stop, kill, and use as a context.

    Without a ``data_dir`` of the caller's, the directory is temporary and removed on
    :meth:`stop`; a caller's directory keeps the data across restarts.
    """

    def __init__(self, data_dir: Path | None, temp_prefix: str) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix=temp_prefix))
        self._process: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def start(self, timeout: float = 60.0) -> str:
        """Start the server; return how clients reach it."""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM: a clean shutdown; SIGKILL after ``timeout``); remove
        the data directory if it was a temporary one."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout)
        if self._own_dir and process is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), keeping its data: a crash, for tests."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def free_port(avoid: int | None = None) -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != avoid:
            return port


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to kill the server when its parent dies, so a
    killed test run leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
