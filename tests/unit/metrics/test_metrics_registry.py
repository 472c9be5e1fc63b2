"""The registry's readings from scripted raw reads: Flink names and labels, per-second
rates over the window, restarts, connector metrics; no job runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from streamflow.metrics.definitions import Scope
from streamflow.metrics.registry import MetricsRegistry

from metrics_kit import raw_read


class Script:
    """Raw reads and clock readings handed out in order."""

    def __init__(self) -> None:
        self.raw: dict[str, Any] = raw_read()
        self.now = 100.0

    def registry(self, window: float = 5.0) -> MetricsRegistry:
        execution: Any = SimpleNamespace(settings=SimpleNamespace(job_name="unit"))
        return MetricsRegistry(execution, rate_window=window, read=lambda _: self.raw, monotonic=lambda: self.now)


def test_names_labels_and_the_first_read_averages_since_the_task_started() -> None:
    script = Script()
    script.raw = raw_read(busy=1.0, idle=0.5, blocked=2.5, records=4000, channel_blocked=2.5)
    reading = script.registry().sample()
    task = ("src", "0")
    assert reading.value(Scope.TASK, "busyTimeMsPerSecond", *task) == pytest.approx(250.0)  # 1 s of 4 s
    assert reading.value(Scope.TASK, "idleTimeMsPerSecond", *task) == pytest.approx(125.0)
    assert reading.value(Scope.TASK, "backPressuredTimeMsPerSecond", *task) == pytest.approx(625.0)
    assert reading.value(Scope.TASK, "accumulatedBackPressuredTime", *task) == pytest.approx(2500.0)
    assert reading.value(Scope.OPERATOR, "numRecordsOut", "src", "src", "0") == 4000
    assert reading.value(Scope.OPERATOR, "numRecordsOutPerSecond", "src", "src", "0") == pytest.approx(1000.0)
    channel = ("src[0] -> sink[0]", "src[0]", "sink[0]")
    assert reading.value(Scope.CHANNEL, "usage", *channel) == 0.5
    assert reading.value(Scope.CHANNEL, "backPressuredTimeMsPerSecond", *channel) == pytest.approx(625.0)
    assert reading.value(Scope.JOB, "uptime") == pytest.approx(12_500.0)
    # no watermark yet: absent, not -inf; no checkpoint yet: no last-checkpoint metrics
    names = {s.definition.name for s in reading.series}
    assert "currentInputWatermark" not in names and "lastCheckpointDuration" not in names
    series = next(s for s in reading.series if s.definition.name == "numRecordsIn")
    assert series.label_map == {"job": "unit", "task": "src", "operator": "src", "subtask": "0"}


def test_rates_are_over_the_last_window_not_since_the_start() -> None:
    script = Script()
    registry = script.registry(window=5.0)
    script.raw = raw_read(busy=10.0, records=100_000)  # a fast first minute ...
    registry.sample()
    for second in range(1, 8):  # ... then 1 s per second, all of it backpressured, 50 records/s
        script.now += 1.0
        script.raw = raw_read(busy=10.0, blocked=float(second), records=100_000 + 50 * second,
                              channel_blocked=float(second))
        reading = registry.sample()
    task = ("src", "0")
    assert reading.value(Scope.TASK, "backPressuredTimeMsPerSecond", *task) == pytest.approx(1000.0)
    assert reading.value(Scope.TASK, "busyTimeMsPerSecond", *task) == pytest.approx(0.0)
    assert reading.value(Scope.OPERATOR, "numRecordsOutPerSecond", "src", "src", "0") == pytest.approx(50.0)
    channel = ("src[0] -> sink[0]", "src[0]", "sink[0]")
    assert reading.value(Scope.CHANNEL, "backPressuredTimeMsPerSecond", *channel) == pytest.approx(1000.0)


def test_a_restart_starts_the_rates_again_from_the_new_attempts_counters() -> None:
    script = Script()
    registry = script.registry()
    script.raw = raw_read(busy=50.0, records=1_000_000)
    registry.sample()
    script.now += 1.0
    script.raw = raw_read(attempt=2, idle=2.0, records=10)  # counters restarted with the attempt
    reading = registry.sample()
    assert reading.value(Scope.OPERATOR, "numRecordsOutPerSecond", "src", "src", "0") == pytest.approx(5.0)
    assert reading.value(Scope.TASK, "idleTimeMsPerSecond", "src", "0") == pytest.approx(1000.0)
    assert reading.value(Scope.JOB, "numRestarts") == 1


def test_latest_shares_a_fresh_reading_and_listeners_see_each_new_one() -> None:
    script = Script()
    registry = script.registry()
    seen: list[float] = []
    registry.add_listener(lambda reading: seen.append(reading.monotonic))
    first = registry.latest(max_age=1.0)
    script.now += 0.5
    assert registry.latest(max_age=1.0) is first
    script.now += 1.0
    assert registry.latest(max_age=1.0) is not first
    assert seen == [100.0, 101.5]


def test_watermarks_checkpoints_and_connector_metrics_become_series() -> None:
    script = Script()
    subtasks = {"src[0]": {"start_delay": 0.2, "alignment": 0.0, "sync": 0.001, "async": 0.01, "size": 10,
                           "persisted_bytes": 0, "unaligned": False, "checkpoint_id": 3}}
    script.raw = raw_read(
        watermark=1_700_000_000.5,
        connector={"pendingRecords": 42, "my metric!": 7},
        history=[{"id": 3, "status": "completed", "duration": 0.25, "size": 2048, "subtasks": subtasks}],
    )
    script.raw["tasks"]["src[0]"]["checkpoint"] = subtasks["src[0]"]
    reading = script.registry().sample()
    assert reading.value(Scope.TASK, "currentOutputWatermark", "src", "0") == 1_700_000_000.5
    assert reading.value(Scope.TASK, "checkpointStartDelayNanos", "src", "0") == pytest.approx(2e8)
    assert reading.value(Scope.TASK, "lastCheckpointAsyncDuration", "src", "0") == pytest.approx(10.0)
    assert reading.value(Scope.JOB, "lastCheckpointDuration") == pytest.approx(250.0)
    assert reading.value(Scope.JOB, "lastCheckpointSize") == 2048
    assert reading.value(Scope.JOB, "lastCheckpointPersistedData") == 0
    assert reading.value(Scope.OPERATOR, "pendingRecords", "src", "src", "0") == 42
    custom = next(s for s in reading.series if s.definition.name == "my_metric_")
    assert custom.value == 7 and custom.definition.prometheus_name == "streamflow_operator_my_metric_"


def test_an_async_operator_reports_its_calls() -> None:
    script = Script()
    script.raw["operators"]["src[0]"]["async"] = {
        "capacity": 100, "in_flight": 37, "held": 40, "calls": 5000, "calls_per_second": 4812.0, "timeouts": 3,
        "retries": 12, "failures": 1, "restored_inputs": 0, "capacity_wait_seconds": 0.25,
        "latency_p50": 0.021, "latency_p99": None,
    }
    reading = script.registry().sample()
    op = ("src", "src", "0")
    assert reading.value(Scope.OPERATOR, "asyncCallsInFlight", *op) == 37
    assert reading.value(Scope.OPERATOR, "asyncCallsPerSecond", *op) == 4812.0
    assert reading.value(Scope.OPERATOR, "asyncCallTimeouts", *op) == 3
    assert reading.value(Scope.OPERATOR, "asyncCallRetries", *op) == 12
    assert reading.value(Scope.OPERATOR, "asyncCallLatencyP50", *op) == pytest.approx(21.0)
    assert reading.value(Scope.OPERATOR, "asyncCallLatencyP99", *op) is None  # unknown: absent, not 0
    assert reading.value(Scope.OPERATOR, "asyncCapacityWaitTime", *op) == pytest.approx(250.0)
