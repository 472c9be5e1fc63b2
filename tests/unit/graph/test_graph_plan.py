"""Logical graph -> physical plan: validation and operator chaining (no event loop)."""

from __future__ import annotations

import pytest

from streamflow import ErrorPolicy, StreamEnvironment
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.errors import ConfigError, GraphError
from streamflow.graph.plan import PhysicalPlan, build_plan
from streamflow.graph.spec import EdgeSpec, JobGraph, OperatorKind, OperatorSpec, Partitioning


def chain_names(plan: PhysicalPlan) -> list[list[str]]:
    return [[op.effective_uid for op in chain.operators] for chain in plan.chains]


def source(items: list[int] | None = None) -> CollectionSource:
    return CollectionSource(items if items is not None else [1, 2, 3])


def test_forward_operators_of_equal_parallelism_form_one_chain() -> None:
    env = StreamEnvironment(parallelism=2)
    (
        env.from_source(source()).uid("src")
        .map(lambda x: x).uid("m")
        .filter(bool).uid("f")
        .sink_to(CollectSink("graph-unit")).uid("sink")
    )
    plan = env.plan()
    assert chain_names(plan) == [["src", "m", "f", "sink"]]
    assert plan.chains[0].parallelism == 2
    assert plan.edges == ()


def test_key_by_breaks_the_chain_at_parallelism_above_one() -> None:
    env = StreamEnvironment(parallelism=2)
    (
        env.from_source(source()).uid("src")
        .map(lambda x: x).uid("m")
        .key_by(lambda x: x).reduce(lambda a, b: a + b).uid("r")
        .sink_to(CollectSink("graph-unit")).uid("sink")
    )
    plan = env.plan()
    assert chain_names(plan) == [["src", "m"], ["r", "sink"]]
    (edge,) = plan.edges
    assert edge.partitioning is Partitioning.HASH
    assert plan.chain_of(edge.upstream).head.effective_uid == "src"


def test_key_by_chains_when_both_sides_have_parallelism_one() -> None:
    env = StreamEnvironment(parallelism=1)
    (
        env.from_source(source()).uid("src")
        .key_by(lambda x: x).reduce(lambda a, b: a + b).uid("r")
        .sink_to(CollectSink("graph-unit")).uid("sink")
    )
    assert chain_names(env.plan()) == [["src", "r", "sink"]]


def test_key_by_between_parallelism_one_and_two_is_not_chained() -> None:
    env = StreamEnvironment(parallelism=2)
    (
        env.from_source(source()).uid("src").set_parallelism(1)
        .key_by(lambda x: x).reduce(lambda a, b: a + b).uid("r")
        .sink_to(CollectSink("graph-unit")).uid("sink")
    )
    assert chain_names(env.plan()) == [["src"], ["r", "sink"]]


def test_default_edge_between_unequal_parallelism_becomes_rebalance() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_source(source()).uid("src").set_parallelism(1).map(lambda x: x).uid("m").sink_to(
        CollectSink("graph-unit")
    ).uid("sink")
    plan = env.plan()
    assert chain_names(plan) == [["src"], ["m", "sink"]]
    assert [e.partitioning for e in plan.edges] == [Partitioning.REBALANCE]


def test_union_input_is_not_chained() -> None:
    env = StreamEnvironment(parallelism=1)
    a = env.from_source(source()).uid("a")
    b = env.from_source(source()).uid("b")
    a.union(b).map(lambda x: x).uid("m").sink_to(CollectSink("graph-unit")).uid("sink")
    plan = env.plan()
    assert chain_names(plan) == [["a"], ["b"], ["m", "sink"]]
    assert sorted(plan.chain_of(e.upstream).head.effective_uid for e in plan.edges) == ["a", "b"]


def test_operator_with_two_outputs_ends_its_chain() -> None:
    env = StreamEnvironment(parallelism=1)
    s = env.from_source(source()).uid("src")
    s.map(lambda x: x).uid("m1").sink_to(CollectSink("graph-unit")).uid("sink1")
    s.map(lambda x: -x).uid("m2").sink_to(CollectSink("graph-unit")).uid("sink2")
    assert chain_names(env.plan()) == [["src"], ["m1", "sink1"], ["m2", "sink2"]]


def test_start_new_chain_and_disabled_chaining() -> None:
    env = StreamEnvironment(parallelism=2)
    (
        env.from_source(source()).uid("src")
        .map(lambda x: x).uid("m")
        .sink_to(CollectSink("graph-unit")).uid("sink").start_new_chain()
    )
    assert chain_names(env.plan()) == [["src", "m"], ["sink"]]
    env.disable_operator_chaining()
    assert chain_names(env.plan()) == [["src"], ["m"], ["sink"]]


def test_dead_letter_sink_is_its_own_chain_behind_a_dead_letter_edge() -> None:
    env = StreamEnvironment(parallelism=1)
    (
        env.from_source(source()).uid("src")
        .map(lambda x: x).uid("m").with_error_policy(ErrorPolicy.dead_letter(CollectSink("dlq-unit")))
        .sink_to(CollectSink("graph-unit")).uid("sink")
    )
    plan = env.plan()
    names = chain_names(plan)
    assert names[0] == ["src", "m", "sink"]
    assert len(names) == 2 and len(names[1]) == 1
    (edge,) = plan.edges
    assert edge.dead_letter
    assert plan.chain_of(edge.downstream).head.kind is OperatorKind.SINK


def test_building_a_pipeline_touches_no_event_loop() -> None:
    # executed outside any loop: building and planning must not need one
    env = StreamEnvironment(parallelism=3)
    env.from_collection([1, 2]).map(str).sink_to(CollectSink("graph-unit"))
    assert len(env.plan().chains) == 1


# -- validation --------------------------------------------------------------------


def test_job_without_a_source_is_refused() -> None:
    sink = OperatorSpec(node_id=1, kind=OperatorKind.SINK, name="sink", function=CollectSink("x"))
    with pytest.raises(GraphError, match="the job has no source"):
        build_plan(JobGraph(nodes=(sink,), edges=()), 1, 128)


def test_job_without_a_sink_is_refused() -> None:
    env = StreamEnvironment()
    env.from_collection([1, 2]).map(lambda x: x)
    with pytest.raises(GraphError, match="the job has no sink"):
        env.plan()


def test_duplicate_uid_is_refused() -> None:
    env = StreamEnvironment()
    env.from_collection([1]).uid("same").map(lambda x: x).uid("same").sink_to(CollectSink("graph-unit"))
    with pytest.raises(GraphError, match="uid 'same' is used by both"):
        env.plan()


def test_forward_edge_between_unequal_parallelism_is_refused() -> None:
    src = OperatorSpec(node_id=1, kind=OperatorKind.SOURCE, name="src", function=source(), parallelism=1)
    sink = OperatorSpec(node_id=2, kind=OperatorKind.SINK, name="out", function=CollectSink("x"), parallelism=2)
    edge = EdgeSpec(upstream=1, downstream=2, partitioning=Partitioning.FORWARD)
    with pytest.raises(GraphError, match=r"forward edge 'src' \(parallelism 1\) -> 'out' \(parallelism 2\) needs equal"):
        build_plan(JobGraph(nodes=(src, sink), edges=(edge,)), 2, 128)


def test_parallelism_above_max_parallelism_is_refused() -> None:
    env = StreamEnvironment(parallelism=1, max_parallelism=4)
    env.from_collection([1]).map(lambda x: x).set_parallelism(5).sink_to(CollectSink("graph-unit"))
    with pytest.raises(ConfigError, match="exceeds max_parallelism 4"):
        env.plan()


def test_nothing_can_follow_a_sink() -> None:
    env = StreamEnvironment()
    out = env.from_collection([1]).sink_to(CollectSink("graph-unit"))
    with pytest.raises(GraphError, match="is a sink; nothing can follow it"):
        out.map(lambda x: x)
