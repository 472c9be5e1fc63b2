"""The graph of ``connect(broadcast_stream).process(fn)``: one two-input node (no event loop)."""

from __future__ import annotations

from typing import Any

from streamflow import BroadcastStream, KeyedBroadcastProcessFunction, StreamEnvironment
from streamflow.connectors import CollectSink
from streamflow.graph.spec import OperatorKind, Partitioning
from streamflow.state import MapStateDescriptor

RULES = MapStateDescriptor[str, int]("rules")
LIMITS = MapStateDescriptor[str, int]("limits")


class Noop(KeyedBroadcastProcessFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(value)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        return None


def test_connect_adds_one_node_with_its_records_on_input_0_and_the_broadcast_on_input_1() -> None:
    env = StreamEnvironment(parallelism=2)
    rules = env.from_collection([("web", 1)]).uid("rules").set_parallelism(1).broadcast(RULES, LIMITS)
    assert isinstance(rules, BroadcastStream) and [d.name for d in rules.descriptors] == ["rules", "limits"]
    (
        env.from_collection([("u", "web")]).uid("actions")
        .key_by(lambda a: a[0])
        .connect(rules)
        .process(Noop()).uid("match")
        .map(str).uid("format")
        .sink_to(CollectSink("graph-broadcast")).uid("out")
    )
    plan = env.plan()
    match = next(op for chain in plan.chains for op in chain.operators if op.effective_uid == "match")
    assert match.kind is OperatorKind.BROADCAST_PROCESS and match.holds_state
    assert match.broadcast_states == (RULES, LIMITS) and match.key_selector is not None
    inputs = sorted((e.input_index, e.partitioning, e.key_selector is not None) for e in plan.edges
                    if e.downstream == match.node_id)
    assert inputs == [(0, Partitioning.HASH, True), (1, Partitioning.BROADCAST, False)]
    # a two-input operator heads its chain; what follows it chains on as usual
    chain = plan.chain_of(match.node_id)
    assert [op.effective_uid for op in chain.operators] == ["match", "format", "out"]
    assert plan.parallelism[match.node_id] == 2


def test_plain_broadcast_stays_a_data_stream_of_broadcast_partitioning() -> None:
    env = StreamEnvironment(parallelism=2)
    (
        env.from_collection([1, 2]).uid("src").set_parallelism(1)
        .broadcast().map(str).uid("m")
        .sink_to(CollectSink("graph-broadcast")).uid("out")
    )
    edges = env.plan().edges
    assert [(e.partitioning, e.input_index) for e in edges] == [(Partitioning.BROADCAST, 0)]
