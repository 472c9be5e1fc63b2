"""One process of the soak's job: started, watched through its log, killed with SIGKILL.

The job logs at INFO on stderr (its stdout goes the same way); a reader task stamps each
line with the soak's monotonic clock as it arrives and picks out the events the soak
measures:

* ``job 'soak' restores from checkpoint N``, before any retry: the process restored
  (a restart);
* ``checkpoint N complete``: the first one after start is the end of the restart time
  (state restored, the restored transactions committed, new output durable again);
* ``job 'soak' attempt N failed``: a restart inside the process (a database restart);
* ``calls again N input(s) held at its restored checkpoint``: an async operator's
  restore found calls that were in flight at the checkpoint (``--stages async``);
* ``N planned failures retried``: the async stage's lookup at a subtask's end.

Every line also goes to the round's log file (a finished job's JSON summary too), so a
failure can be read in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import IO

_RESTORED = re.compile(r"restores from checkpoint (\d+)")
_COMPLETED = re.compile(r"checkpoint (\d+) complete")
_ATTEMPT_FAILED = re.compile(r"attempt \d+ failed")
_ASYNC_CALLED_AGAIN = re.compile(r"calls again (\d+) input\(s\) held")
_LOOKUP_RETRIED = re.compile(r"(\d+) planned failures retried")

KILLED = -signal.SIGKILL  # asyncio's returncode of a process ended by SIGKILL


class JobProcess:
    """A started job process; ``await wait(timeout)`` or ``kill()`` ends it."""

    def __init__(self, process: asyncio.subprocess.Process, started: float, log: IO[str],
                 restart: bool) -> None:
        self.process = process
        self.started = started
        self._restart = restart
        self.restored_from: int | None = None  # the checkpoint the process started from
        self.restored_at: float | None = None  # when it said so
        self.first_checkpoint_at: float | None = None
        self.checkpoints_completed = 0
        self.in_process_restarts = 0
        self.async_inputs_called_again = 0  # held async inputs its restores called again
        self.lookup_retries = 0  # planned lookup failures its subtasks retried (logged at their end)
        self.tail: deque[str] = deque(maxlen=40)
        self._log = log
        self._checkpoint_seen = asyncio.Event()
        self._reading = asyncio.create_task(self._read_output())

    @classmethod
    async def start(cls, argv: list[str], log: IO[str], cwd: Path, *, restart: bool) -> JobProcess:
        """Start ``argv``; ``restart``: a completed checkpoint is there to restore."""
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the soak does not reach the job first
        )
        log.write(f"--- pid {process.pid}: {' '.join(argv)}\n")
        return cls(process, started, log, restart)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def restart(self) -> bool:
        """Whether this process restarts the job from a checkpoint (it said so, or one
        had completed before it started)."""
        return self._restart or self.restored_from is not None

    def describe(self) -> str:
        """Where the process had got to, for a kill's line."""
        if not self.restart:
            start = "first start"
        elif self.restored_from is None:
            return "restart, before its restore"
        else:
            start = f"restart from chk {self.restored_from}"
        if self.restart_seconds is None:
            return f"{start}, before its first checkpoint"
        return f"{start}, first checkpoint after {self.restart_seconds:.2f}s"

    @property
    def restart_seconds(self) -> float | None:
        """From process start to its first completed checkpoint (None: not reached)."""
        return None if self.first_checkpoint_at is None else self.first_checkpoint_at - self.started

    @property
    def restore_seconds(self) -> float | None:
        """From process start to its restore being logged (state read; sinks not yet
        recovered): the share of interpreter start-up and reading the checkpoint."""
        return None if self.restored_at is None else self.restored_at - self.started

    def age(self) -> float:
        return time.monotonic() - self.started

    async def _read_output(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            now = time.monotonic()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._log.write(line + "\n")
            self.tail.append(line)
            if (match := _COMPLETED.search(line)) is not None:
                self.checkpoints_completed += 1
                if self.first_checkpoint_at is None:
                    self.first_checkpoint_at = now
                self._checkpoint_seen.set()
            elif (match := _RESTORED.search(line)) is not None and self.restored_at is None:
                if self.in_process_restarts == 0:  # a restore of the process start, not a retry
                    self.restored_from = int(match.group(1))
                    self.restored_at = now
            elif _ATTEMPT_FAILED.search(line):
                self.in_process_restarts += 1
            elif (match := _ASYNC_CALLED_AGAIN.search(line)) is not None:
                self.async_inputs_called_again += int(match.group(1))
            elif (match := _LOOKUP_RETRIED.search(line)) is not None:
                self.lookup_retries += int(match.group(1))

    async def wait(self, timeout: float | None) -> int | None:
        """The exit code once the process ends, or None if it still runs after ``timeout``."""
        try:
            code = await asyncio.wait_for(asyncio.shield(self.process.wait()), timeout)
        except TimeoutError:
            return None
        await self._drain()
        return code

    async def next_checkpoint(self, timeout: float) -> bool:
        """Wait for a checkpoint completed after this call; False if the process ended
        without one (its whole log read) or ``timeout`` passed first."""
        before = self.checkpoints_completed
        self._checkpoint_seen.clear()
        seen = asyncio.create_task(self._checkpoint_seen.wait())
        ended = asyncio.create_task(self.process.wait())
        await asyncio.wait({seen, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in (seen, ended):
            task.cancel()
        if self.process.returncode is not None:
            await self._drain()  # the last lines may still be in the pipe
        return self.checkpoints_completed > before

    async def kill(self) -> int:
        """SIGKILL now (unless it has just ended on its own); the exit code."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        code = await self.process.wait()
        await self._drain()
        return code

    async def _drain(self) -> None:
        await self._reading
        self._log.flush()
