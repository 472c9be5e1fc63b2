"""The command line's side of the control socket: send one command, read one reply."""

from __future__ import annotations

import asyncio
from typing import Any

from streamflow.control.protocol import MAX_LINE, ControlError, JobUnreachableError, close_quietly, decode, encode
from streamflow.control.registry import JobEntry

__all__ = ["send_command"]


async def send_command(entry: JobEntry, command: str, *, timeout: float, **arguments: Any) -> Any:
    """Send ``command`` to the job of ``entry`` and return the ``result`` of its reply.

    Raises:
        JobUnreachableError: nothing answers on the socket (the caller may drop the entry).
        ControlError: the job answered with an error (its message and class name), the
            reply did not come within ``timeout`` seconds, or it was malformed.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(entry.socket, limit=MAX_LINE)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise JobUnreachableError(
            f"job {entry.job_id} (pid {entry.pid}) does not answer on {entry.socket!r}: {exc.strerror or exc}; "
            "the process has ended or hangs",
            command=command,
            remote_type=None,
        ) from exc
    try:
        writer.write(encode({"command": command, **arguments}))
        await writer.drain()
        try:
            async with asyncio.timeout(timeout):
                line = await reader.readline()
        except TimeoutError:
            raise ControlError(
                f"job {entry.job_id} did not answer {command!r} within {timeout:g}s; it may still complete it "
                "(see `streamflow status`), or pass a longer --timeout",
                command=command,
                remote_type=None,
            ) from None
    finally:
        await close_quietly(writer)
    if not line:
        raise JobUnreachableError(
            f"job {entry.job_id} closed the connection without answering {command!r}; it has probably ended",
            command=command,
            remote_type=None,
        )
    try:
        reply = decode(line)
    except ValueError as exc:
        raise ControlError(f"job {entry.job_id} sent a malformed reply: {exc}", command=command, remote_type=None) from exc
    if reply.get("ok") is True:
        return reply.get("result")
    remote = reply.get("type")
    raise ControlError(f"{remote}: {reply.get('error')}", command=command, remote_type=remote)
