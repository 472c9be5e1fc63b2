"""Serving a running job's Prometheus endpoint and dashboard, for as long as it runs.

Lifecycle (``JobClient`` drives it):

1. :meth:`JobWebService.bind`, when the job is started: the listening sockets are bound
   at once, so a port in use fails the start with a clear error and the addresses (with
   port 0: a free port the system picked) are known before the job runs;
2. ``async with service``: the HTTP servers start on the job's loop, and with the
   dashboard on, a sampler reads the metrics every ``sample_interval`` seconds into the
   chart history (the charts' ring buffer; the Prometheus endpoint alone samples nothing
   between scrapes);
3. leaving the block (the job ended, failed or was cancelled) stops both.

Both listen on 127.0.0.1 unless told otherwise: the dashboard can stop nothing, but it
shows the job's structure and numbers, and the job's own control socket is the way to
act on it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp import web as aiohttp_web

from streamflow.errors import ConfigError
from streamflow.metrics.history import ChartHistory
from streamflow.metrics.layout import JobLayout
from streamflow.metrics.registry import MetricsRegistry
from streamflow.web.endpoint import HttpEndpoint
from streamflow.web.server import dashboard_app, prometheus_app

if TYPE_CHECKING:
    from streamflow.runtime.executor import Execution

__all__ = ["HttpEndpoint", "JobWebService"]

log = logging.getLogger("streamflow.web")


class JobWebService:
    """The HTTP endpoints of one job (see the module docstring).

    Args:
        execution: the job's execution.
        metrics: where to serve Prometheus' ``/metrics`` alone, if anywhere.
        web: where to serve the dashboard (which serves ``/metrics`` too), if anywhere.
        sample_interval: seconds between the dashboard's samples.
        history_points: samples the charts keep (600 at 1 s: the last ten minutes).
    """

    def __init__(
        self,
        execution: Execution,
        *,
        metrics: HttpEndpoint | None = None,
        web: HttpEndpoint | None = None,
        sample_interval: float = 1.0,
        history_points: int = 600,
    ) -> None:
        if metrics is not None and web is not None and metrics.port != 0 and metrics.port == web.port:
            raise ConfigError(
                f"the metrics port and the dashboard port are both {web.port}: give them different ports, or "
                "serve only the dashboard (it serves Prometheus' /metrics too)"
            )
        self.registry = MetricsRegistry(execution)
        self.history = ChartHistory(JobLayout.from_plan(execution.plan), points=history_points)
        self.registry.add_listener(self.history.add)
        self._endpoints = {"metrics": metrics, "web": web}
        self._sockets: dict[str, socket.socket] = {}
        self._urls: dict[str, str] = {}
        self._runners: list[aiohttp_web.AppRunner] = []
        self._sample_interval = sample_interval
        self._sampler: asyncio.Task[None] | None = None

    @property
    def metrics_url(self) -> str | None:
        """``http://host:port/metrics`` once bound (the dashboard's when only it runs)."""
        if "metrics" in self._urls:
            return self._urls["metrics"] + "metrics"
        return self._urls["web"] + "metrics" if "web" in self._urls else None

    @property
    def web_url(self) -> str | None:
        """``http://host:port/`` of the dashboard once bound."""
        return self._urls.get("web")

    def bind(self) -> None:
        """Bind the listening sockets now (step 1). Raises ConfigError when an address
        cannot be used, naming it and what to do."""
        try:
            for role, endpoint in self._endpoints.items():
                if endpoint is not None:
                    sock = _listen(endpoint, "Prometheus metrics" if role == "metrics" else "the dashboard")
                    self._sockets[role] = sock
                    self._urls[role] = _url(endpoint.host, sock.getsockname()[1])
        except BaseException:
            self._close_sockets()
            raise

    async def __aenter__(self) -> JobWebService:
        if not self._sockets:
            self.bind()
        try:
            for role, sock in self._sockets.items():
                app = prometheus_app(self.registry) if role == "metrics" else dashboard_app(self.registry, self.history)
                runner = aiohttp_web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
                await runner.setup()
                self._runners.append(runner)
                await aiohttp_web.SockSite(runner, sock).start()
        except BaseException:
            await self._stop()
            raise
        if "web" in self._sockets:
            self._sampler = asyncio.get_running_loop().create_task(self._sample(), name="metrics-sampler")
            log.info("dashboard of job %r at %s", self.registry.job_name, self.web_url)
        if "metrics" in self._sockets or "web" in self._sockets:
            log.info("Prometheus metrics of job %r at %s", self.registry.job_name, self.metrics_url)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            await asyncio.wait({sampler})
        runners, self._runners = self._runners, []
        for runner in runners:
            try:
                await runner.cleanup()
            except Exception as exc:  # noqa: BLE001 - the job's own outcome must not be hidden
                log.warning("stopping an HTTP endpoint of job %r raised %r", self.registry.job_name, exc)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    async def _sample(self) -> None:
        """Step 2: a reading every interval, so the charts and rates stay current."""
        failing = False
        while True:
            started = time.perf_counter()
            try:
                self.registry.sample()
                failing = False
            except Exception:  # noqa: BLE001 - a metrics bug must not end the job; said once
                if not failing:
                    log.exception("reading the metrics of job %r failed; retrying every second", self.registry.job_name)
                failing = True
            await asyncio.sleep(max(0.0, self._sample_interval - (time.perf_counter() - started)))


def _listen(endpoint: HttpEndpoint, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    try:
        return socket.create_server((endpoint.host, endpoint.port), family=family)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve {what} on {endpoint.host}:{endpoint.port}: {exc.strerror or exc}; choose another port "
            "(0 picks a free one) or host"
        ) from exc


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
