"""Reaching running jobs from the command line: a registry of jobs, a control socket.

- :mod:`~streamflow.control.registry`: ``<home>/jobs/*.json``, one per running job.
- :mod:`~streamflow.control.server`: the job's Unix socket (status, savepoint, stop, cancel).
- :mod:`~streamflow.control.client`: one command, one reply.
- :mod:`~streamflow.control.protocol`: the JSON-lines wire format.
"""

from __future__ import annotations

from streamflow.control.client import send_command
from streamflow.control.protocol import ControlError, JobUnreachableError
from streamflow.control.registry import HOME_ENV, JobEntry, JobRegistry, streamflow_home
from streamflow.control.server import ControlServer

__all__ = [
    "HOME_ENV",
    "ControlError",
    "ControlServer",
    "JobEntry",
    "JobRegistry",
    "JobUnreachableError",
    "send_command",
    "streamflow_home",
]
