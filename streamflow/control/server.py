"""The control endpoint of one running job: a Unix socket the command line talks to.

A Unix socket rather than HTTP on 127.0.0.1: only the user who owns the registry
directory (mode 0700) can connect, so no token or port is needed, and nothing listens
on the network. ``streamflow run`` serves one for its job; a program that runs jobs
itself can do the same::

    client = env.execute_async("orders")
    async with ControlServer(client):      # registered: `streamflow list` shows it
        result = await client.wait()

The wire format is in :mod:`streamflow.control.protocol`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from streamflow.control.protocol import COMMANDS, MAX_LINE, close_quietly, decode, encode
from streamflow.control.registry import JobEntry, JobRegistry, WorkerRef
from streamflow.errors import ConfigError

if TYPE_CHECKING:
    from streamflow.datastream.client import JobClient

__all__ = ["ControlServer"]

log = logging.getLogger("streamflow.control")

_READ_TIMEOUT = 10.0  # seconds a connection may take to send its request line


class ControlServer:
    """Serves ``client``'s job on a Unix socket and registers it while it runs.

    Lifecycle: :meth:`start` (wait until the job passed its start checks, listen, then
    register: a job that fails to start is never listed), requests served concurrently,
    :meth:`close` (unregister, stop listening, let requests in progress - such as a
    ``stop`` waiting for the job to end - send their reply). Also an async context
    manager. Runs on the job's event loop.
    """

    def __init__(self, client: JobClient, registry: JobRegistry | None = None) -> None:
        self._client = client
        self._registry = registry if registry is not None else JobRegistry()
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.entry: JobEntry | None = None

    async def start(self) -> JobEntry:
        """Once the job has started, listen on a fresh socket and register the job;
        returns its registry entry.

        Raises:
            whatever kept the job from starting (see ``JobClient.started``); nothing is
            registered then.
            OSError: the socket could not be made.
        """
        await self._client.started()
        worker = self._client.worker
        ref = None if worker is None else WorkerRef(group=worker.generation, workers=worker.workers, index=worker.index)
        entry = dataclasses.replace(
            self._registry.new_entry(self._client.job_name, ref),
            web_url=self._client.web_url,
            metrics_url=self._client.metrics_url,
        )
        self._server = await asyncio.start_unix_server(self._serve, path=entry.socket, limit=MAX_LINE)
        os.chmod(entry.socket, 0o600)
        self._registry.register(entry)
        self.entry = entry
        log.info(
            "job %s is reachable at %s: streamflow status %s | savepoint | stop | cancel",
            entry.job_id, entry.socket, entry.job_id,
        )
        return entry

    async def close(self, grace: float = 30.0) -> None:
        """Unregister, stop listening, and give requests in progress ``grace`` seconds."""
        if self.entry is not None:
            self._registry.unregister(self.entry)
        if self._server is not None:
            self._server.close()
        if self._handlers:
            _done, late = await asyncio.wait(set(self._handlers), timeout=grace)
            for handler in late:
                handler.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- requests ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            try:
                async with asyncio.timeout(_READ_TIMEOUT):
                    line = await reader.readline()
                request = decode(line)
                reply = {"ok": True, "result": await self._dispatch(request)}
            except Exception as exc:  # every failure goes back to the caller, named
                reply = {"ok": False, "error": str(exc) or repr(exc), "type": type(exc).__name__}
            writer.write(encode(reply))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the caller went away; the command itself went through
        finally:
            await close_quietly(writer)
            if handler is not None:
                self._handlers.discard(handler)

    async def _dispatch(self, request: dict[str, Any]) -> Any:
        command = request.get("command")
        client = self._client
        if command not in COMMANDS:
            raise ConfigError(f"unknown control command {command!r}; known: {', '.join(sorted(COMMANDS))}")
        entry = self.entry
        identity = {
            "job_id": entry.job_id if entry else None,
            "name": client.job_name,
            "pid": os.getpid(),
            "started_at": entry.started_at if entry else None,
            "worker": None if client.worker is None else client.worker.to_dict(),
        }
        if command == "ping":
            savepoints = client.savepoint_dir
            return {**identity, "status": client.status, "savepoint_dir": None if savepoints is None else str(savepoints)}
        if command == "status":
            urls = {"web_url": client.web_url, "metrics_url": client.metrics_url}
            return {**identity, **urls, "metrics": client.metrics()}
        directory = request.get("directory")
        if directory is not None and not isinstance(directory, str):
            raise ConfigError(f"savepoint directory must be a path string, got {directory!r}")
        if command == "savepoint":
            log.info("savepoint requested through the control socket")
            return {**identity, "path": str(await client.trigger_savepoint(directory))}
        if command == "stop":
            log.info("stop with savepoint requested through the control socket")
            path = await client.stop_with_savepoint(directory)
            return {**identity, "path": str(path), "status": await client.ended()}
        log.info("cancel requested through the control socket")  # cancel
        await client.cancel()
        return {"status": client.status}
