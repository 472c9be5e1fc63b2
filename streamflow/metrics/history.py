"""The dashboard's charts over the last minutes: one compact point per reading, per vertex.

Kept in a ring buffer on the job's side, so a page opened late shows the minutes before
it was opened. A point holds, per job vertex (see :mod:`~streamflow.metrics.layout`):

- ``in`` / ``out``: records per second into its first and out of its last operator,
  summed over its subtasks (a source's ``in`` counts what its readers produced);
- ``busy`` / ``backpressured`` / ``idle``: ms per second, the highest over its subtasks
  for busy and backpressured (one stuck subtask is what matters), the lowest for idle;
- ``watermark_lag``: seconds from the lowest output watermark of its subtasks to the
  reading's wall-clock time (absent until every subtask has a finite watermark).

Restarts are noted as events with the failure that caused them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from streamflow.metrics.definitions import Scope
from streamflow.metrics.layout import JobLayout
from streamflow.metrics.registry import Reading

__all__ = ["ChartHistory"]


class ChartHistory:
    """Add every reading (``registry.add_listener(history.add)``); read ``since(t)``."""

    def __init__(self, layout: JobLayout, *, points: int = 600) -> None:
        self.layout = layout
        self._points: deque[dict[str, Any]] = deque(maxlen=points)
        self.events: list[dict[str, Any]] = []
        self._attempt = 0

    def add(self, reading: Reading) -> None:
        self._note_restart(reading)
        tasks = reading.values(Scope.TASK)
        operators = reading.values(Scope.OPERATOR)
        job = reading.job
        vertices: dict[str, dict[str, float | None]] = {}
        for vertex in self.layout.vertices:
            subtasks = [str(i) for i in range(vertex.parallelism)]
            per_task = [tasks.get((job, vertex.id, s), {}) for s in subtasks]
            head, tail = vertex.operators[0].uid, vertex.operators[-1].uid
            watermarks = [t.get("currentOutputWatermark") for t in per_task]
            lowest = min(w for w in watermarks if w is not None) if None not in watermarks else None
            vertices[vertex.id] = {
                "in": _round(sum(operators.get((job, vertex.id, head, s), {}).get("numRecordsInPerSecond", 0.0)
                                 for s in subtasks)),
                "out": _round(sum(operators.get((job, vertex.id, tail, s), {}).get("numRecordsOutPerSecond", 0.0)
                                  for s in subtasks)),
                "busy": _round(max((t.get("busyTimeMsPerSecond", 0.0) for t in per_task), default=0.0)),
                "backpressured": _round(
                    max((t.get("backPressuredTimeMsPerSecond", 0.0) for t in per_task), default=0.0)
                ),
                "idle": _round(min((t.get("idleTimeMsPerSecond", 0.0) for t in per_task), default=0.0)),
                "watermark_lag": None if lowest is None else _round(max(0.0, reading.time - lowest)),
            }
        self._points.append({"t": round(reading.time, 3), "attempt": reading.attempt, "vertices": vertices})

    def since(self, t: float) -> list[dict[str, Any]]:
        """Points newer than wall-clock time ``t``, oldest first."""
        return [p for p in self._points if p["t"] > t]

    def _note_restart(self, reading: Reading) -> None:
        if reading.attempt > self._attempt:
            if self._attempt:  # not the first attempt seen: a restart
                failures = reading.raw["failures"]
                failure = failures[-1] if failures else None
                self.events.append({"t": round(reading.time, 3), "attempt": reading.attempt, "failure": failure})
            self._attempt = reading.attempt


def _round(value: float) -> float:
    return round(value, 3)
