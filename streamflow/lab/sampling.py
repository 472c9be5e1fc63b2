"""Turning a running lab job into time series: one :class:`Sample` per sampling interval.

Each sample reads the job's metrics registry (``client.metrics_registry.sample()``, the
same readings the dashboard and Prometheus get) and drains the latency probe: sink
throughput and latency percentiles over the interval, the highest backpressure of each
job vertex (ms per second, as Flink's web UI colours it), the mean fill of each edge
(all channels from one vertex to the next) and the checkpoints finished so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from streamflow.metrics.definitions import Scope
from streamflow.metrics.registry import Reading

__all__ = ["CheckpointRow", "ModeRun", "Sample", "checkpoint_rows", "percentile", "sample_from"]


@dataclass(frozen=True, slots=True)
class Sample:
    """The job over one sampling interval ending ``elapsed`` seconds after it started."""

    elapsed: float
    throughput: float  # records per second reaching the sink
    latency_p50: float | None  # seconds, end to end (None: no record arrived)
    latency_p99: float | None
    backpressure: dict[str, float] = field(default_factory=dict)  # vertex -> ms/s (highest subtask)
    fill: dict[str, float] = field(default_factory=dict)  # "up -> down" -> mean channel usage (0..1)


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """One finished checkpoint: when it was triggered (seconds after the job started)."""

    checkpoint_id: int
    status: str
    triggered: float
    duration: float | None
    size: int
    persisted_bytes: int
    unaligned_subtasks: int


@dataclass(slots=True)
class ModeRun:
    """What one checkpointing mode's job did: its samples and its finished checkpoints."""

    mode: str
    samples: list[Sample] = field(default_factory=list)
    checkpoints: list[CheckpointRow] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def sample_from(reading: Reading, elapsed: float, interval: float, count: int, latencies: list[float]) -> Sample:
    """A sample from one registry reading and what the probe saw over ``interval`` s."""
    backpressure: dict[str, float] = {}
    for labels, values in reading.values(Scope.TASK).items():
        vertex = labels[1]
        value = values.get("backPressuredTimeMsPerSecond", 0.0)
        backpressure[vertex] = max(backpressure.get(vertex, 0.0), value)
    usage: dict[str, list[float]] = {}
    for labels, values in reading.values(Scope.CHANNEL).items():
        edge = f"{_vertex(labels[2])} -> {_vertex(labels[3])}"
        usage.setdefault(edge, []).append(values.get("usage", 0.0))
    return Sample(
        elapsed=elapsed,
        throughput=count / interval,
        latency_p50=percentile(latencies, 0.5),
        latency_p99=percentile(latencies, 0.99),
        backpressure=dict(sorted(backpressure.items())),
        fill={edge: sum(v) / len(v) for edge, v in sorted(usage.items())},
    )


def checkpoint_rows(raw: dict[str, Any], started_at: float) -> list[CheckpointRow]:
    """The finished checkpoints of a raw metrics read (``Reading.raw``)."""
    rows = []
    for entry in raw.get("checkpoints", {}).get("history", []):
        if entry["status"] not in ("completed", "aborted"):
            continue
        subtasks = entry.get("subtasks", {}).values()
        rows.append(
            CheckpointRow(
                checkpoint_id=int(entry["id"]),
                status=entry["status"],
                triggered=float(entry["triggered_at"]) - started_at,
                duration=entry.get("duration"),
                size=int(entry.get("size") or 0),
                persisted_bytes=sum(int(s.get("persisted_bytes") or 0) for s in subtasks),
                unaligned_subtasks=sum(1 for s in subtasks if s.get("unaligned")),
            )
        )
    return rows


def _vertex(task: str) -> str:
    """``uid[3]`` -> ``uid``."""
    return task.rsplit("[", 1)[0] if task.endswith("]") else task
