"""Every metric a job reports, declared once: name, scope (hence labels), kind, unit, help.

Names are Flink's where Flink has the metric, so dashboards and habits carry over
(``busyTimeMsPerSecond``, ``numRecordsInPerSecond``, ``lastCheckpointDuration``, ...),
with Flink's units: durations of checkpoints in milliseconds, alignment and start delay
in nanoseconds. Watermarks are the exception: event time in streamflow is float seconds
since the epoch, and so are its watermark metrics.

A scope says what a metric describes and which labels tell its series apart:

========  =====================================  ========================================
scope     labels                                 one series per
========  =====================================  ========================================
job       job                                    job
task      job, task, subtask                     task (a chain of operators) and subtask
operator  job, task, operator, subtask           operator uid and subtask
channel   job, channel, upstream, downstream     channel (upstream subtask -> downstream)
========  =====================================  ========================================

``task`` is the job vertex (the uid of its chain's first operator), ``upstream`` and
``downstream`` are task names (``uid[i]``).

Connector metrics: a source reader or sink writer may report more through a ``metrics()``
method (see :class:`ReportsMetrics`); they become operator-scope series. The ones the
bundled connectors report are declared here; any other name is reported as is (made a
valid Prometheus name), with a generic help text.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "ALL",
    "BY_NAME",
    "MetricDef",
    "MetricKind",
    "ReportsMetrics",
    "Scope",
    "connector_metric",
]


class Scope(enum.Enum):
    """What a metric describes; fixes its labels (see the module docstring)."""

    JOB = "job"
    TASK = "task"
    OPERATOR = "operator"
    CHANNEL = "channel"

    @property
    def labels(self) -> tuple[str, ...]:
        return _LABELS[self]


_LABELS = {
    Scope.JOB: ("job",),
    Scope.TASK: ("job", "task", "subtask"),
    Scope.OPERATOR: ("job", "task", "operator", "subtask"),
    Scope.CHANNEL: ("job", "channel", "upstream", "downstream"),
}


class MetricKind(enum.Enum):
    """GAUGE: a value now. COUNTER: counts up from 0 within one attempt of the job (a
    restart rebuilds the tasks, and counting starts again: rate() in Prometheus and the
    per-second metrics here handle the reset)."""

    GAUGE = "gauge"
    COUNTER = "counter"


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric. ``prometheus_name`` is ``streamflow_<scope>_<name>``, as Flink's
    reporter prefixes its scope (``flink_taskmanager_job_task_<name>``)."""

    name: str
    scope: Scope
    kind: MetricKind
    unit: str
    help: str

    @property
    def prometheus_name(self) -> str:
        return f"streamflow_{self.scope.value}_{self.name}"

    @property
    def labels(self) -> tuple[str, ...]:
        return self.scope.labels


@runtime_checkable
class ReportsMetrics(Protocol):
    """What a source reader or sink writer implements to add its own numbers.

    ``metrics()`` is called on the job's event loop when metrics are read (a scrape, the
    dashboard's sampler, ``JobClient.metrics()``), never on the record path, so it must
    be cheap and must not block: return what is known now, and refresh anything dear in
    the background. Keys are metric names (Flink's where one fits, e.g.
    ``pendingRecords`` for a source's backlog); values are numbers. Leave out what is
    unknown rather than reporting 0.
    """

    def metrics(self) -> Mapping[str, float]: ...


_m = MetricDef
G, C = MetricKind.GAUGE, MetricKind.COUNTER
J, T, O, CH = Scope.JOB, Scope.TASK, Scope.OPERATOR, Scope.CHANNEL

ALL: tuple[MetricDef, ...] = (
    # -- job --------------------------------------------------------------------------
    _m("uptime", J, G, "ms", "Time since the job started (all attempts)."),
    _m("numRestarts", J, G, "1", "Restarts after a failed attempt so far."),
    _m("numberOfCompletedCheckpoints", J, G, "1", "Checkpoints completed since the job started."),
    _m("numberOfFailedCheckpoints", J, G, "1", "Checkpoints aborted (timed out, declined) since the job started."),
    _m("numberOfInProgressCheckpoints", J, G, "1", "Checkpoints triggered and not yet completed or aborted."),
    _m("lastCheckpointDuration", J, G, "ms", "Trigger to completion of the last completed checkpoint."),
    _m("lastCheckpointSize", J, G, "bytes", "State bytes written by the last completed checkpoint."),
    _m("lastCheckpointPersistedData", J, G, "bytes",
       "In-flight records persisted as channel state by the last completed checkpoint (unaligned "
       "checkpoints; 0 when aligned)."),
    # -- task -------------------------------------------------------------------------
    _m("busyTimeMsPerSecond", T, G, "ms/s", "Milliseconds per second spent processing (neither idle nor "
       "backpressured), over the last seconds."),
    _m("backPressuredTimeMsPerSecond", T, G, "ms/s",
       "Milliseconds per second blocked writing to a full output channel, over the last seconds."),
    _m("idleTimeMsPerSecond", T, G, "ms/s", "Milliseconds per second waiting for input, over the last seconds."),
    _m("accumulatedBusyTime", T, C, "ms", "Milliseconds busy since the task started."),
    _m("accumulatedBackPressuredTime", T, C, "ms", "Milliseconds backpressured since the task started."),
    _m("accumulatedIdleTime", T, C, "ms", "Milliseconds idle since the task started."),
    _m("currentInputWatermark", T, G, "s", "Lowest watermark over the task's inputs, event time in seconds "
       "since the epoch (absent before the first watermark)."),
    _m("currentOutputWatermark", T, G, "s", "Last watermark the task forwarded, event time in seconds "
       "since the epoch (absent before the first watermark)."),
    _m("checkpointAlignmentTime", T, G, "ns",
       "First to last barrier of the task's last checkpoint (0 for one input and for sources)."),
    _m("checkpointStartDelayNanos", T, G, "ns",
       "Trigger of the task's last checkpoint to its first barrier reaching the task."),
    _m("lastCheckpointSyncDuration", T, G, "ms", "Synchronous part (state copy) of the task's last checkpoint."),
    _m("lastCheckpointAsyncDuration", T, G, "ms", "Asynchronous part (state writes) of the task's last checkpoint."),
    # -- operator ---------------------------------------------------------------------
    _m("numRecordsIn", O, C, "records", "Records the operator received (a source: records its reader produced)."),
    _m("numRecordsOut", O, C, "records", "Records the operator emitted."),
    _m("numRecordsInPerSecond", O, G, "records/s", "Records received per second, over the last seconds."),
    _m("numRecordsOutPerSecond", O, G, "records/s", "Records emitted per second, over the last seconds."),
    _m("numRecordsSkipped", O, C, "records", "Bad records the error policy skipped."),
    _m("numRecordsDeadLettered", O, C, "records", "Bad records the error policy sent to the dead-letter sink."),
    _m("numLateRecordsDropped", O, C, "records", "Event-time records dropped for arriving behind the watermark."),
    # -- operator: async I/O (map_async, flat_map_async) --------------------------------
    _m("asyncCallsInFlight", O, G, "calls", "Async operator: calls running now (at most its capacity)."),
    _m("asyncRecordsHeld", O, G, "records",
       "Async operator: records held (call running, waiting, or done and not yet emitted)."),
    _m("asyncCalls", O, C, "calls", "Async operator: calls ended (each attempt counts)."),
    _m("asyncCallsPerSecond", O, G, "calls/s", "Async operator: calls ended per second, over the last seconds."),
    _m("asyncCallTimeouts", O, C, "calls", "Async operator: calls that ran past the timeout."),
    _m("asyncCallRetries", O, C, "calls", "Async operator: calls made again by the retry strategy."),
    _m("asyncCallFailures", O, C, "records",
       "Async operator: records whose last attempt failed (handed to the error policy)."),
    _m("asyncCallLatencyP50", O, G, "ms", "Async operator: median call latency over the last calls."),
    _m("asyncCallLatencyP99", O, G, "ms", "Async operator: 99th percentile call latency over the last calls."),
    _m("asyncCapacityWaitTime", O, C, "ms", "Async operator: time spent waiting for a free call slot "
       "(backpressure from the service)."),
    # -- operator, reported by connectors ---------------------------------------------
    _m("pendingRecords", O, G, "records",
       "Source backlog: records in the source's partitions not yet read (Kafka consumer lag)."),
    _m("numTransactionsCommitted", O, C, "transactions", "Two-phase-commit sink: transactions committed."),
    _m("numTransactionsAborted", O, C, "transactions", "Two-phase-commit sink: transactions aborted."),
    _m("numTransactionsOpen", O, G, "transactions", "Two-phase-commit sink: transactions open now (0 or 1)."),
    _m("numTransactionsPrepared", O, G, "transactions",
       "Two-phase-commit sink: transactions prepared and waiting for their checkpoint to complete."),
    # -- channel ----------------------------------------------------------------------
    _m("usage", CH, G, "ratio", "Fill of the channel: batches queued / capacity (1 = full: its writer blocks)."),
    _m("queueLength", CH, G, "batches", "Batches queued in the channel."),
    _m("capacity", CH, G, "batches", "Batches the channel holds before its writer blocks."),
    _m("backPressuredTimeMsPerSecond", CH, G, "ms/s",
       "Milliseconds per second the channel's writer waited for space, over the last seconds."),
)

del _m, G, C, J, T, O, CH  # shorthands of the table above

BY_NAME: Mapping[tuple[Scope, str], MetricDef] = {(d.scope, d.name): d for d in ALL}

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def connector_metric(name: str) -> MetricDef:
    """The operator-scope definition of a connector-reported metric ``name``: the
    declared one, or a gauge with a generic help text and a valid Prometheus name."""
    declared = BY_NAME.get((Scope.OPERATOR, name))
    if declared is not None:
        return declared
    cleaned = _INVALID.sub("_", name) or "_"
    return MetricDef(cleaned, Scope.OPERATOR, MetricKind.GAUGE, "", f"Reported by the connector as {name!r}.")
