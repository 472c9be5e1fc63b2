"""The metrics registry of one job: readings of every declared metric, rates over time.

A :class:`Reading` is every metric of :mod:`~streamflow.metrics.definitions` at one
moment, as labelled series. :meth:`MetricsRegistry.sample` makes one from a fresh
:func:`~streamflow.metrics.snapshot.job_metrics` read; the per-second metrics are the
change of a cumulative value (busy, idle and blocked time, record counts) since an
earlier sample, divided by the time between: over the last ``rate_window`` seconds when
samples are that frequent (the dashboard samples every second), else since the previous
sample (a Prometheus scrape alone: the scrape interval), and for the first sample of an
attempt since its tasks started. Counters restart with each attempt, so an earlier
attempt's samples are never a base.

Nothing runs between reads: a reader (the Prometheus collector, the dashboard's sampler,
an experiment that records time series) calls :meth:`~MetricsRegistry.sample` or
:meth:`~MetricsRegistry.latest` when it wants values. Listeners added with
:meth:`~MetricsRegistry.add_listener` see every new reading (the dashboard's chart
history keeps its ring buffer that way).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamflow.metrics.definitions import BY_NAME, MetricDef, Scope, connector_metric
from streamflow.metrics.snapshot import job_metrics

if TYPE_CHECKING:
    from streamflow.runtime.executor import Execution

__all__ = ["MetricsRegistry", "Reading", "Series"]

_MS = 1000.0
_NS = 1e9


@dataclass(frozen=True, slots=True)
class Series:
    """One labelled value: ``labels`` in the order of ``definition.labels``."""

    definition: MetricDef
    labels: tuple[str, ...]
    value: float

    @property
    def label_map(self) -> dict[str, str]:
        return dict(zip(self.definition.labels, self.labels))


@dataclass(frozen=True, slots=True)
class Reading:
    """Every metric of one job at one moment.

    ``time`` is wall-clock seconds since the epoch; ``raw`` is the
    :func:`~streamflow.metrics.snapshot.job_metrics` read it was made from (status,
    failures, checkpoint history).
    """

    job: str
    attempt: int
    time: float
    monotonic: float
    series: tuple[Series, ...]
    raw: dict[str, Any] = field(repr=False)

    def values(self, scope: Scope) -> dict[tuple[str, ...], dict[str, float]]:
        """Per label tuple of ``scope`` (job name first), metric name -> value."""
        table: dict[tuple[str, ...], dict[str, float]] = {}
        for s in self.series:
            if s.definition.scope is scope:
                table.setdefault(s.labels, {})[s.definition.name] = s.value
        return table

    def value(self, scope: Scope, name: str, *labels: str) -> float | None:
        """The value of metric ``name`` for ``labels`` (after the job name), or None."""
        wanted = (self.job, *labels)
        for s in self.series:
            if s.definition.name == name and s.definition.scope is scope and s.labels == wanted:
                return s.value
        return None

    def grouped(self) -> Iterator[tuple[MetricDef, list[Series]]]:
        """Series by metric, in declaration order (the Prometheus exposition's order)."""
        by_def: dict[MetricDef, list[Series]] = {}
        for s in self.series:
            by_def.setdefault(s.definition, []).append(s)
        return iter(by_def.items())


@dataclass(frozen=True, slots=True)
class _Counters:
    """The cumulative values of one sample that rates are derived from."""

    attempt: int
    monotonic: float
    task_seconds: dict[str, tuple[float, float, float]]  # task -> (busy, idle, backpressured)
    records: dict[str, tuple[int, int]]  # operator key -> (in, out)
    blocked: dict[str, float]  # channel -> seconds its writer waited


class MetricsRegistry:
    """Readings of one job's metrics (see the module docstring).

    Args:
        execution: the job's execution (``JobClient`` holds it).
        rate_window: seconds the per-second metrics average over when samples are at
            least that frequent.
        read: what reads the raw metrics, and ``monotonic`` the time between reads
            (tests give scripted ones).
    """

    def __init__(
        self,
        execution: Execution,
        *,
        rate_window: float = 5.0,
        read: Callable[[Execution], dict[str, Any]] = job_metrics,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._execution = execution
        self._read = read
        self._monotonic = monotonic
        self.rate_window = rate_window
        self._recent: deque[_Counters] = deque()
        self._latest: Reading | None = None
        self._listeners: list[Callable[[Reading], None]] = []

    @property
    def job_name(self) -> str:
        return self._execution.settings.job_name

    @property
    def execution(self) -> Execution:
        return self._execution

    def add_listener(self, listener: Callable[[Reading], None]) -> None:
        """Call ``listener(reading)`` with every reading from now on."""
        self._listeners.append(listener)

    def latest(self, max_age: float = 1.0) -> Reading:
        """The last reading if it is at most ``max_age`` seconds old, else a new one:
        several readers in one second (scrapes, dashboard requests) share a reading."""
        latest = self._latest
        if latest is not None and self._monotonic() - latest.monotonic <= max_age:
            return latest
        return self.sample()

    def sample(self) -> Reading:
        """Read every metric now."""
        raw = self._read(self._execution)
        now = self._monotonic()
        counters = _counters(raw, now)
        base = self._base(counters)
        series = list(self._series(raw, counters, base))
        reading = Reading(self.job_name, raw["attempt"], time.time(), now, tuple(series), raw)
        self._remember(counters)
        self._latest = reading
        for listener in self._listeners:
            listener(reading)
        return reading

    # -- rates ------------------------------------------------------------------------

    def _base(self, now: _Counters) -> _Counters | None:
        """The newest sample at least ``rate_window`` old, else the oldest there is, of
        the same attempt; None: rates since the tasks started."""
        base = None
        for old in self._recent:
            if old.attempt != now.attempt:
                continue
            if base is None or now.monotonic - old.monotonic >= self.rate_window:
                base = old
        return base

    def _remember(self, counters: _Counters) -> None:
        recent = self._recent
        recent.append(counters)
        # keep the newest sample older than the window (the next base) and all after it
        while len(recent) > 1 and (
            recent[0].attempt != counters.attempt or counters.monotonic - recent[1].monotonic >= self.rate_window
        ):
            recent.popleft()

    # -- the series -------------------------------------------------------------------

    def _series(self, raw: dict[str, Any], now: _Counters, base: _Counters | None) -> Iterator[Series]:
        job = self.job_name
        yield from _job_series(job, raw)
        for name, task in raw["tasks"].items():
            task_labels = (job, task["vertex"], str(task["subtask"]))
            yield from _task_series(task_labels, task, now.task_seconds[name], _base_of(base, "task_seconds", name))
        for key, op in raw["operators"].items():
            op_labels = (job, op["vertex"], op["uid"], str(op["subtask"]))
            task_now = now.task_seconds.get(op["task"])
            task_base = _base_of(base, "task_seconds", op["task"])
            elapsed = _elapsed(task_now, task_base)
            yield from _operator_series(op_labels, op, now.records[key], _base_of(base, "records", key), elapsed)
        for name, channel in raw["channels"].items():
            channel_labels = (job, name, channel["upstream"], channel["downstream"])
            if base is not None and name in base.blocked:
                elapsed, before = now.monotonic - base.monotonic, base.blocked[name]
            else:
                elapsed, before = _elapsed(now.task_seconds.get(channel["upstream"]), None), 0.0
            yield from _channel_series(channel_labels, channel, _per_second(now.blocked[name] - before, elapsed) * _MS)


def _counters(raw: dict[str, Any], now: float) -> _Counters:
    return _Counters(
        attempt=raw["attempt"],
        monotonic=now,
        task_seconds={
            name: (t["busy_seconds"], t["idle_seconds"], t["backpressured_seconds"]) for name, t in raw["tasks"].items()
        },
        records={key: (op["records_in"], op["records_out"]) for key, op in raw["operators"].items()},
        blocked={name: c["blocked_seconds"] for name, c in raw["channels"].items()},
    )


def _base_of(base: _Counters | None, table: str, key: str) -> Any:
    return None if base is None else getattr(base, table).get(key)


def _elapsed(now: tuple[float, float, float] | None, before: tuple[float, float, float] | None) -> float:
    """Wall seconds a task ran between two samples (busy + idle + backpressured)."""
    if now is None:
        return 0.0
    return sum(now) - (sum(before) if before is not None else 0.0)


def _per_second(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 1e-9 and amount > 0 else 0.0


def _def(scope: Scope, name: str) -> MetricDef:
    return BY_NAME[(scope, name)]


def _job_series(job: str, raw: dict[str, Any]) -> Iterator[Series]:
    checkpoints = raw["checkpoints"]
    completed = [r for r in checkpoints["history"] if r["status"] == "completed"]
    values: dict[str, float] = {
        "uptime": raw["uptime_seconds"] * _MS,
        "numRestarts": max(0, raw["attempt"] - 1),
        "numberOfCompletedCheckpoints": checkpoints["completed"],
        "numberOfFailedCheckpoints": checkpoints["failed"],
        "numberOfInProgressCheckpoints": len(checkpoints["in_progress"]),
    }
    if completed:
        last = completed[-1]
        values["lastCheckpointDuration"] = (last["duration"] or 0.0) * _MS
        values["lastCheckpointSize"] = last["size"]
        values["lastCheckpointPersistedData"] = sum(s["persisted_bytes"] for s in last["subtasks"].values())
    for name, value in values.items():
        yield Series(_def(Scope.JOB, name), (job,), float(value))


def _task_series(
    labels: tuple[str, ...],
    task: dict[str, Any],
    now: tuple[float, float, float],
    before: tuple[float, float, float] | None,
) -> Iterator[Series]:
    elapsed = _elapsed(now, before)
    previous = before if before is not None else (0.0, 0.0, 0.0)
    busy, idle, blocked = (_per_second(n - b, elapsed) * _MS for n, b in zip(now, previous))
    values: dict[str, float] = {
        "busyTimeMsPerSecond": busy,
        "idleTimeMsPerSecond": idle,
        "backPressuredTimeMsPerSecond": blocked,
        "accumulatedBusyTime": now[0] * _MS,
        "accumulatedIdleTime": now[1] * _MS,
        "accumulatedBackPressuredTime": now[2] * _MS,
    }
    for key, name in (("input_watermark", "currentInputWatermark"), ("output_watermark", "currentOutputWatermark")):
        watermark = task[key]
        if watermark is not None and math.isfinite(watermark):
            values[name] = watermark
    last = task["checkpoint"]
    if last is not None:
        values["checkpointAlignmentTime"] = last["alignment"] * _NS
        values["checkpointStartDelayNanos"] = last["start_delay"] * _NS
        if last["sync"] is not None:
            values["lastCheckpointSyncDuration"] = last["sync"] * _MS
        if last["async"] is not None:
            values["lastCheckpointAsyncDuration"] = last["async"] * _MS
    for name, value in values.items():
        yield Series(_def(Scope.TASK, name), labels, float(value))


def _operator_series(
    labels: tuple[str, ...],
    op: dict[str, Any],
    now: tuple[int, int],
    before: tuple[int, int] | None,
    elapsed: float,
) -> Iterator[Series]:
    previous = before if before is not None else (0, 0)
    values: dict[str, float] = {
        "numRecordsIn": now[0],
        "numRecordsOut": now[1],
        "numRecordsInPerSecond": _per_second(now[0] - previous[0], elapsed),
        "numRecordsOutPerSecond": _per_second(now[1] - previous[1], elapsed),
        "numRecordsSkipped": op["records_skipped"],
        "numRecordsDeadLettered": op["records_dead_lettered"],
        "numLateRecordsDropped": op["records_late_dropped"],
    }
    calls = op.get("async")  # an async operator's calls (map_async)
    if calls is not None:
        values.update({
            "asyncCallsInFlight": calls["in_flight"],
            "asyncRecordsHeld": calls["held"],
            "asyncCalls": calls["calls"],
            "asyncCallsPerSecond": calls["calls_per_second"],
            "asyncCallTimeouts": calls["timeouts"],
            "asyncCallRetries": calls["retries"],
            "asyncCallFailures": calls["failures"],
            "asyncCapacityWaitTime": calls["capacity_wait_seconds"] * 1000.0,
        })
        for name, key in (("asyncCallLatencyP50", "latency_p50"), ("asyncCallLatencyP99", "latency_p99")):
            if calls[key] is not None:  # none before the first call ends
                values[name] = calls[key] * 1000.0
    for name, value in values.items():
        yield Series(_def(Scope.OPERATOR, name), labels, float(value))
    for name, value in op["connector"].items():
        yield Series(connector_metric(name), labels, float(value))


def _channel_series(labels: tuple[str, ...], channel: dict[str, Any], blocked_ms_per_second: float) -> Iterator[Series]:
    values: dict[str, float] = {
        "usage": channel["fill"],
        "queueLength": channel["queued"],
        "capacity": channel["capacity"],
        "backPressuredTimeMsPerSecond": min(_MS, blocked_ms_per_second),
    }
    for name, value in values.items():
        yield Series(_def(Scope.CHANNEL, name), labels, float(value))
