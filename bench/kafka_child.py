"""A contender's child process, as the Kafka benchmark's harness sees it: started with a
report pipe of its own (kafka_work.report), its output and logs in a file, its events
awaited by name, and stopped with SIGTERM (SIGKILL if it lingers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kafka_work import REPORT_FD_VARIABLE

STOP_GRACE = 20.0


class ChildFailed(RuntimeError):
    """A contender's process failed, or its output was wrong; the message shows its log."""


class Child:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.started = time.time()
        self.events: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def run(cls, argv: list[str], log: Path) -> AsyncIterator[Child]:
        """Start ``argv``; stop it when the block ends."""
        read_end, write_end = os.pipe()
        with open(log, "wb") as sink:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                    pass_fds=(write_end,), env={**os.environ, REPORT_FD_VARIABLE: str(write_end)},
                )
            finally:
                os.close(write_end)
            child = cls(process, log)
            reading = asyncio.create_task(child._read(read_end))
            try:
                yield child
            finally:
                await child.stop()
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading

    async def _read(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        try:
            while line := await reader.readline():
                message = json.loads(line)
                self.events[message["event"]] = message
                self._changed.set()
        finally:
            transport.close()
            self._changed.set()

    def exited(self) -> bool:
        return self.process.returncode is not None

    def raise_if_exited(self) -> None:
        if self.exited():
            raise ChildFailed(f"exited with {self.process.returncode}: {self.tail()}")

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        return f"log {self.log}:\n    " + "\n    ".join(text)

    async def event(self, name: str, timeout: float) -> dict[str, Any]:
        """The ``name`` report, once it has come; ChildFailed if the process ends first."""
        deadline = time.monotonic() + timeout
        while name not in self.events:
            if self.exited():
                await asyncio.sleep(0.2)  # the last lines may still be in the pipe
                if name not in self.events:
                    self.raise_if_exited()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no '{name}' from the child in {timeout:.0f} s; {self.tail()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await self._changed.wait()
        return self.events[name]

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE seconds. A child that reported ``done`` is
        on its way out: let it finish (and clean up after itself) first."""
        if "done" in self.events:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE):
                    await self.process.wait()
        if self.exited():
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
