"""Which operators hold state, hence need a uid (``OperatorSpec.holds_state``), and the
missing-uid warning of a savepoint that names only those. Plans are built, never run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from streamflow import CheckpointedFunction, KeyedProcessFunction, ProcessFunction, StreamEnvironment
from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta, StateHandle
from streamflow.connectors import CollectionSource, ExactlyOnceFileSink, PrintSink, SocketTextSource
from streamflow.connectors.debug import CollectSink
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.connectors.mysql import MySqlSink
from streamflow.core.ids import CheckpointId
from streamflow.graph.spec import OperatorSpec
from streamflow.savepoint import operators_without_uid
from streamflow.savepoint.restore import check_snapshot_against_plan
from streamflow.state import MapStateDescriptor


class Passing(ProcessFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(value)


class KeyedPassing(KeyedProcessFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(value)


class Buffering:
    """Operator state without subclassing CheckpointedFunction (both methods defined)."""

    def __call__(self, value: Any) -> Any:
        return value

    def snapshot_state(self, ctx: Any) -> None:
        return None

    def initialize_state(self, ctx: Any) -> None:
        return None


class Subclassed(ProcessFunction, CheckpointedFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(value)

    def snapshot_state(self, ctx: Any) -> None:
        return None

    def initialize_state(self, ctx: Any) -> None:
        return None


class DeclaredStateless:
    """A user's sink that says it keeps nothing."""

    stateful = False

    def create_writer(self, ctx: Any) -> Any:
        raise AssertionError("never run")


class Undeclared:
    """A user's sink that says nothing: it may keep state."""

    def create_writer(self, ctx: Any) -> Any:
        raise AssertionError("never run")


def specs(env: StreamEnvironment) -> dict[str, OperatorSpec]:
    return {op.name: op for chain in env.plan().chains for op in chain.operators}


def test_keyed_broadcast_and_checkpointed_operators_hold_state_plain_functions_do_not() -> None:
    env = StreamEnvironment()
    words = env.from_source(CollectionSource(["a"]), name="collection")
    rules = env.from_source(CollectionSource([("r", 1)]), name="rules").broadcast(MapStateDescriptor("rules"))
    (words.map(str.upper).name("map").filter(bool).name("filter").flat_map(list).name("flat_map")
        .process(Passing()).name("process").map(Buffering()).name("checkpointed-map")
        .process(Subclassed()).name("checkpointed-process")
        .key_by(lambda w: w).process(KeyedPassing()).name("keyed-process")
        .key_by(lambda w: w).reduce(lambda a, b: a).name("reduce")
        .connect(rules).process(_NoopBroadcast()).name("broadcast-process")
        .key_by(lambda w: w).sink_to(PrintSink(), name="print"))  # a sink has no keyed state
    holds = {name: spec.holds_state for name, spec in specs(env).items()}
    assert holds == {
        "collection": True, "rules": True,  # replayable sources keep their positions
        "map": False, "filter": False, "flat_map": False, "process": False,
        "checkpointed-map": True, "checkpointed-process": True,
        "keyed-process": True, "reduce": True, "broadcast-process": True,
        "print": False,
    }


def test_sources_and_sinks_hold_state_unless_they_declare_stateful_false(tmp_path: Path) -> None:
    env = StreamEnvironment()
    stream = env.from_source(SocketTextSource("127.0.0.1", 9999), name="socket")
    stream = stream.union(env.from_source(KafkaSource("h:1", topics="t"), name="kafka-source"))
    stream.sink_to(PrintSink(), name="print")
    stream.sink_to(CollectSink("holds-state"), name="collect")
    stream.sink_to(DeclaredStateless(), name="declared-stateless")
    stream.sink_to(Undeclared(), name="undeclared")
    stream.sink_to(ExactlyOnceFileSink(tmp_path), name="file")
    stream.sink_to(KafkaSink("h:1", "t"), name="kafka-at-least-once")
    stream.sink_to(KafkaSink("h:1", "t", delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                             transactional_id_prefix="p"), name="kafka-exactly-once")
    stream.sink_to(MySqlSink("mysql://u@h/db", table="t", statement="INSERT INTO t VALUES (%s)",
                             row_fn=lambda r: (r,)), name="mysql-at-least-once")
    stream.sink_to(MySqlSink("mysql://u@h/db", table="t", statement="INSERT INTO t VALUES (%s)",
                             row_fn=lambda r: (r,), delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE),
                   name="mysql-exactly-once")
    holds = {name: spec.holds_state for name, spec in specs(env).items()}
    assert holds == {
        "socket": False, "kafka-source": True,
        "print": False, "collect": False, "declared-stateless": False, "undeclared": True,
        "file": True, "kafka-at-least-once": False, "kafka-exactly-once": True,
        "mysql-at-least-once": False, "mysql-exactly-once": True,
    }


def test_missing_uids_are_reported_only_for_operators_that_hold_state(caplog: pytest.LogCaptureFixture) -> None:
    """The socket word count of the README without a single uid: only the counter (keyed
    state) is named, not the socket source and PrintSink, which ``inspect`` shows empty;
    restoring their (empty) snapshots by auto uid does not warn either."""
    env = StreamEnvironment()
    (env.from_source(SocketTextSource("127.0.0.1", 9999), name="lines")
        .flat_map(str.split).key_by(lambda w: w).process(KeyedPassing()).sink_to(PrintSink()))
    plan = env.plan()
    assert [op.effective_uid for op in operators_without_uid(plan)] == ["KeyedPassing#3"]

    handle = StateHandle(file="f", size=1, sha256="0" * 64)
    saved = CheckpointMetadata(
        job_name="wordcount", checkpoint_id=CheckpointId(3), timestamp=0.0, is_savepoint=True,
        operators={uid: OperatorStateMeta(parallelism=1, max_parallelism=128, subtasks={0: handle})
                   for uid in ("lines#1", "KeyedPassing#3", "PrintSink#4")},
    )
    with caplog.at_level(logging.WARNING, logger="streamflow.savepoint"):
        check_snapshot_against_plan(saved, plan, allow_non_restored_state=False, path=Path("/sp"))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "auto-generated uid 'KeyedPassing#3'" in warned[0]


class _NoopBroadcast:
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(value)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        return None
