"""The wire format of the control socket: one JSON object per line, each way.

Request: ``{"command": "<name>", ...arguments}``. Reply: ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": "<message>", "type": "<error class name>"}``. One request
per connection. Commands (all answered by :class:`~streamflow.control.server.ControlServer`):

=============  ========================  ==============================================
command        arguments                 result
=============  ========================  ==============================================
``ping``       -                         ``{"job_id", "name", "status"}``
``status``     -                         ``{"job_id", "name", "pid", "started_at",
                                         "web_url", "metrics_url", "metrics"}``
                                         (``JobClient.metrics()``)
``savepoint``  ``directory`` (or null)   ``{"path"}`` once the savepoint is complete
``stop``       ``directory`` (or null)   ``{"path", "status"}`` once the job has ended
``cancel``     -                         ``{"status"}`` once the job has ended
=============  ========================  ==============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from streamflow.errors import StreamflowError

__all__ = ["COMMANDS", "MAX_LINE", "ControlError", "JobUnreachableError", "close_quietly", "decode", "encode"]

COMMANDS = frozenset({"ping", "status", "savepoint", "stop", "cancel"})
MAX_LINE = 1 << 20  # a status reply of a large job stays far below this


class ControlError(StreamflowError):
    """A control command failed in the job, or its reply was malformed.

    Fields: ``command`` and ``remote_type`` (the error class name in the job process).
    """


class JobUnreachableError(ControlError):
    """The job's control socket does not answer: the process is gone or hung."""


def encode(message: dict[str, Any]) -> bytes:
    """One line of JSON; values JSON cannot hold (paths) are written as strings."""
    return json.dumps(message, default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line; raises ValueError unless it is a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"a control message is a JSON object, got {type(message).__name__}")
    return message


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close one end of a control connection; the other end having gone already is fine."""
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
