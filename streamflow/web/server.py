"""The HTTP side: one aiohttp application for the dashboard, one for Prometheus alone.

Both run on the job's event loop, so a request reads the job's state between two steps
of its tasks, never concurrently with them. The page itself is static (HTML, JavaScript
and CSS shipped in the package, read once); it polls the JSON endpoints of
:mod:`streamflow.web.api` every second.

Routes of the dashboard application::

    GET /                     the page
    GET /static/<file>        its script and style sheet
    GET /api/job              status, uptime, restarts, failures
    GET /api/graph            vertices and edges
    GET /api/metrics          the latest reading (every metric, by Flink name)
    GET /api/checkpoints      counts, in progress, history per subtask
    GET /api/history?since=T  chart points newer than T
    GET /metrics              Prometheus exposition

The Prometheus application serves ``/metrics`` only.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from streamflow.metrics.history import ChartHistory
from streamflow.metrics.prometheus import collector_registry, exposition
from streamflow.metrics.registry import MetricsRegistry
from streamflow.web.api import checkpoints_view, history_view, job_view, metrics_view

__all__ = ["dashboard_app", "prometheus_app"]

_STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_NO_STORE = {"Cache-Control": "no-store"}
_READING_MAX_AGE = 1.0  # seconds a reading is shared by the requests that ask for one


def _json(data: Any) -> web.Response:
    # orjson writes non-finite floats as null, which is what JSON readers expect
    return web.Response(body=orjson.dumps(data), content_type="application/json", headers=_NO_STORE)


def _static(name: str) -> bytes:
    return (resources.files("streamflow.web") / "static" / name).read_bytes()


def _add_prometheus(app: web.Application, registry: MetricsRegistry) -> None:
    target = collector_registry(registry)

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = exposition(target, request.headers.get("Accept"))
        response = web.Response(body=body, headers=_NO_STORE)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get("/metrics", scrape)


def prometheus_app(registry: MetricsRegistry) -> web.Application:
    """``/metrics`` alone, and a pointer to it at ``/``."""
    app = web.Application()
    _add_prometheus(app, registry)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=f"streamflow job {registry.job_name!r}: Prometheus metrics at /metrics\n")

    app.router.add_get("/", index)
    return app


def dashboard_app(registry: MetricsRegistry, history: ChartHistory) -> web.Application:
    """The dashboard page, its JSON endpoints, and ``/metrics``."""
    app = web.Application()
    page = _static("index.html")
    assets = {name: (_static(name), kind) for name, kind in _STATIC.items()}
    graph = {"job": registry.job_name, **history.layout.to_dict()}

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_NO_STORE)

    async def static(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, kind = found
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=_NO_STORE)

    async def job(request: web.Request) -> web.Response:
        return _json(job_view(registry, history, registry.latest(_READING_MAX_AGE)))

    async def graph_view(request: web.Request) -> web.Response:
        return _json(graph)

    async def metrics(request: web.Request) -> web.Response:
        return _json(metrics_view(registry.latest(_READING_MAX_AGE)))

    async def checkpoints(request: web.Request) -> web.Response:
        return _json(checkpoints_view(registry.latest(_READING_MAX_AGE)))

    async def chart_history(request: web.Request) -> web.Response:
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="since must be a number (wall-clock seconds)") from None
        return _json(history_view(history, since))

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/job", job)
    app.router.add_get("/api/graph", graph_view)
    app.router.add_get("/api/metrics", metrics)
    app.router.add_get("/api/checkpoints", checkpoints)
    app.router.add_get("/api/history", chart_history)
    _add_prometheus(app, registry)
    return app
