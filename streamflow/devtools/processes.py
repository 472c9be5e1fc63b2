"""Process and port helpers shared by the development servers (Kafka, MariaDB)."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess

__all__ = ["die_with_parent", "free_port", "port_open", "stop_process"]


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
