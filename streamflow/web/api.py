"""The JSON the dashboard polls, built from the job's registry, chart history and status.

Each function returns plain data for one endpoint (see the README's table of them);
:mod:`streamflow.web.server` only routes and encodes. Infinite values (a watermark of
-inf before the first one) become JSON ``null`` when encoded.
"""

from __future__ import annotations

import time
from typing import Any

from streamflow.metrics.definitions import Scope
from streamflow.metrics.history import ChartHistory
from streamflow.metrics.registry import MetricsRegistry, Reading

__all__ = ["checkpoints_view", "history_view", "job_view", "metrics_view"]


def job_view(registry: MetricsRegistry, history: ChartHistory | None, reading: Reading) -> dict[str, Any]:
    """``/api/job``: who, status, uptime, restarts and failures, checkpoint settings."""
    raw = reading.raw
    settings = registry.execution.settings
    checkpoint = settings.checkpoint
    return {
        "job": raw["job"],
        "status": raw["status"],
        "attempt": raw["attempt"],
        "restarts": max(0, raw["attempt"] - 1),
        "started_at": raw["started_at"],
        "uptime": raw["uptime_seconds"],
        "now": time.time(),
        "failures": raw["failures"],
        "restart_events": [] if history is None else history.events,
        "checkpointing": None
        if checkpoint is None
        else {"interval": checkpoint.interval, "mode": checkpoint.mode.value, "timeout": checkpoint.timeout},
        "rate_window": registry.rate_window,
    }


def metrics_view(reading: Reading) -> dict[str, Any]:
    """``/api/metrics``: the latest reading, every metric by Flink name, per job, task
    (``uid[i]``), operator (``uid[i]``) and channel."""
    job = reading.job
    tasks = {
        f"{vertex}[{subtask}]": {"vertex": vertex, "subtask": int(subtask), **values}
        for (_, vertex, subtask), values in reading.values(Scope.TASK).items()
    }
    operators = {
        f"{uid}[{subtask}]": {"vertex": vertex, "uid": uid, "subtask": int(subtask), **values}
        for (_, vertex, uid, subtask), values in reading.values(Scope.OPERATOR).items()
    }
    channels = {
        name: {"upstream": upstream, "downstream": downstream, **values}
        for (_, name, upstream, downstream), values in reading.values(Scope.CHANNEL).items()
    }
    return {
        "time": reading.time,
        "attempt": reading.attempt,
        "job": reading.values(Scope.JOB).get((job,), {}),
        "tasks": tasks,
        "operators": operators,
        "channels": channels,
    }


def checkpoints_view(reading: Reading) -> dict[str, Any]:
    """``/api/checkpoints``: counts, checkpoints in progress, and the recent history with
    each subtask's start delay, alignment, sync and async durations (seconds) and sizes."""
    return dict(reading.raw["checkpoints"])


def history_view(history: ChartHistory, since: float) -> dict[str, Any]:
    """``/api/history?since=T``: chart points newer than ``T`` (wall-clock seconds)."""
    return {"points": history.since(since), "events": history.events}
