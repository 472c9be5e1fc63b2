"""The metric declarations: Flink's names, one declaration each, valid Prometheus names."""

from __future__ import annotations

import re

from streamflow.metrics.definitions import ALL, BY_NAME, MetricKind, Scope, connector_metric

FLINK_NAMES = {
    (Scope.TASK, "busyTimeMsPerSecond"), (Scope.TASK, "backPressuredTimeMsPerSecond"),
    (Scope.TASK, "idleTimeMsPerSecond"), (Scope.TASK, "currentInputWatermark"),
    (Scope.TASK, "currentOutputWatermark"), (Scope.TASK, "checkpointAlignmentTime"),
    (Scope.TASK, "checkpointStartDelayNanos"), (Scope.OPERATOR, "numRecordsIn"),
    (Scope.OPERATOR, "numRecordsOut"), (Scope.OPERATOR, "numRecordsInPerSecond"),
    (Scope.OPERATOR, "numRecordsOutPerSecond"), (Scope.OPERATOR, "numLateRecordsDropped"),
    (Scope.OPERATOR, "pendingRecords"), (Scope.JOB, "lastCheckpointDuration"), (Scope.JOB, "lastCheckpointSize"),
    (Scope.JOB, "lastCheckpointPersistedData"), (Scope.JOB, "numRestarts"),
}


def test_each_metric_is_declared_once_with_flinks_names() -> None:
    assert len(BY_NAME) == len(ALL)
    assert FLINK_NAMES <= set(BY_NAME)


def test_prometheus_names_and_labels_are_valid_and_follow_the_scope() -> None:
    valid = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    for definition in ALL:
        assert valid.match(definition.prometheus_name), definition
        assert definition.prometheus_name == f"streamflow_{definition.scope.value}_{definition.name}"
        assert definition.labels[0] == "job" and definition.help.endswith(".")
    assert BY_NAME[(Scope.CHANNEL, "usage")].labels == ("job", "channel", "upstream", "downstream")
    assert BY_NAME[(Scope.OPERATOR, "numRecordsIn")].kind is MetricKind.COUNTER


def test_connector_metrics_are_the_declared_ones_or_made_valid() -> None:
    assert connector_metric("pendingRecords") is BY_NAME[(Scope.OPERATOR, "pendingRecords")]
    made = connector_metric("records-lag max")
    assert (made.name, made.scope, made.kind) == ("records_lag_max", Scope.OPERATOR, MetricKind.GAUGE)
    assert "'records-lag max'" in made.help
