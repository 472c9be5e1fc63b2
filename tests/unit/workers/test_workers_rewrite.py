"""A worker's job graph: redistributing edges cut into exchanges (pure, no event loop)."""

from __future__ import annotations


import pytest

from streamflow import ErrorPolicy, StreamEnvironment
from streamflow.api.exchange import ExchangeKind, ExchangeSpec, exchange_topic_name
from streamflow.connectors import CollectSink, SocketTextSource
from streamflow.errors import ConfigError
from streamflow.graph.plan import build_plan
from streamflow.graph.spec import JobGraph, OperatorKind, Partitioning
from streamflow.partitioning.workers import WorkerLayout
from streamflow.state import MapStateDescriptor
from streamflow.workers.rewrite import rewrite_for_workers

from workers_kit import FakeEnd, FakeExchanges, Match

RULES = MapStateDescriptor[str, int]("rules")


def rewrite(env: StreamEnvironment, workers: int, index: int = 0, factory: FakeExchanges | None = None) -> JobGraph:
    return rewrite_for_workers(
        env.job_graph(), layout=WorkerLayout(workers=workers, index=index), job_name="orders",
        default_parallelism=env.parallelism, max_parallelism=env.max_parallelism,
        exchanges=factory or FakeExchanges(), generation="g1",
    )


def keyed_job(parallelism: int = 2) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism, max_parallelism=128)
    (
        env.from_collection(list(range(10))).uid("src")
        .map(lambda x: x).uid("parse")
        .key_by(lambda x: x % 3).reduce(lambda a, b: a + b).uid("count")
        .sink_to(CollectSink("rewrite-unit")).uid("out")
    )
    return env


def uids(graph: JobGraph) -> list[str]:
    return [n.effective_uid for n in graph.nodes]


def chains(graph: JobGraph, parallelism: int) -> list[list[str]]:
    plan = build_plan(graph, parallelism, 128)
    return [[op.effective_uid for op in chain.operators] for chain in plan.chains]


def test_one_worker_runs_the_graph_as_it_is() -> None:
    env = keyed_job()
    graph = env.job_graph()
    assert rewrite_for_workers(
        graph, layout=WorkerLayout(workers=1, index=0), job_name="orders", default_parallelism=2,
        max_parallelism=128, exchanges=FakeExchanges(), generation="g1",
    ) is graph


def test_one_worker_keeps_the_exchanges_of_a_set_it_restores() -> None:
    factory = FakeExchanges()
    graph = rewrite_for_workers(
        keyed_job().job_graph(), layout=WorkerLayout(workers=1, index=0), job_name="orders", default_parallelism=2,
        max_parallelism=128, exchanges=factory, generation="g1", keep_exchanges=True,
    )
    assert [s.writer_parallelism for s in factory.made] == [2]
    assert "parse->count.0.exchange-reader" in uids(graph)


def test_key_by_becomes_an_exchange_that_both_sides_chain_onto() -> None:
    factory = FakeExchanges(partitions=8)
    graph = rewrite(keyed_job(parallelism=2), workers=3, factory=factory)
    (spec,) = factory.made
    assert spec.kind is ExchangeKind.HASH and spec.key_selector is not None
    assert spec.topic == "streamflow.orders.parse.count.0"
    assert (spec.writer_uid, spec.reader_uid) == ("parse->count.0.exchange-writer", "parse->count.0.exchange-reader")
    assert spec.writer_parallelism == 6 and spec.partitions == 8 and spec.generation == "g1"
    # the worker runs two pipelines joined by nothing in memory: writer side, reader side
    assert chains(graph, 2) == [
        ["parse->count.0.exchange-reader", "count", "out"],
        ["src", "parse", "parse->count.0.exchange-writer"],
    ]
    assert all(e.partitioning is Partitioning.FORWARD for e in graph.edges)
    reader = graph.node(next(e.upstream for e in graph.edges if graph.node(e.downstream).effective_uid == "count"))
    assert reader.kind is OperatorKind.SOURCE and reader.parallelism == 2 and isinstance(reader.function, FakeEnd)
    # the operators of the program keep their node ids (auto uids follow them)
    assert [n.node_id for n in graph.nodes if not isinstance(n.function, FakeEnd)] == [
        n.node_id for n in keyed_job().job_graph().nodes
    ]


def test_every_worker_cuts_the_graph_alike() -> None:
    first, second = rewrite(keyed_job(), workers=2, index=0), rewrite(keyed_job(), workers=2, index=1)
    assert uids(first) == uids(second)
    assert [(e.upstream, e.downstream) for e in first.edges] == [(e.upstream, e.downstream) for e in second.edges]


def test_rebalance_becomes_an_exchange_without_keys() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection([1]).uid("src").rebalance().map(str).uid("fmt").sink_to(CollectSink("rw")).uid("out")
    factory = FakeExchanges()
    rewrite(env, workers=2, factory=factory)
    (spec,) = factory.made
    assert spec.kind is ExchangeKind.REBALANCE and spec.key_selector is None


def test_a_broadcast_input_is_read_whole_by_one_reader_per_worker() -> None:
    env = StreamEnvironment(parallelism=2)
    rules = env.from_collection([("web", 1)]).uid("rules").set_parallelism(1).broadcast(RULES)
    (
        env.from_collection([("u", "web")]).uid("actions")
        .key_by(lambda a: a[0]).connect(rules).process(Match()).uid("match")
        .sink_to(CollectSink("rw-broadcast")).uid("out")
    )
    factory = FakeExchanges()
    graph = rewrite(env, workers=2, factory=factory)
    kinds = {s.upstream_uid: s.kind for s in factory.made}
    assert kinds == {"actions": ExchangeKind.HASH, "rules": ExchangeKind.BROADCAST}
    match = next(n for n in graph.nodes if n.effective_uid == "match")
    inputs = {e.input_index: (graph.node(e.upstream), e.partitioning) for e in graph.edges
              if e.downstream == match.node_id}
    assert inputs[0][0].effective_uid == "actions->match.0.exchange-reader" and inputs[0][1] is Partitioning.FORWARD
    assert inputs[1][0].effective_uid == "rules->match.1.exchange-reader" and inputs[1][1] is Partitioning.BROADCAST
    assert inputs[1][0].parallelism == 1  # one reader per worker, broadcast in memory
    writer = next(s for s in factory.made if s.upstream_uid == "rules")
    assert writer.writer_parallelism == 2  # the rules source runs once per worker
    build_plan(graph, 2, 128)  # a valid graph


def test_dead_letter_edges_stay_within_the_worker() -> None:
    env = StreamEnvironment(parallelism=2)
    (
        env.from_collection([1]).uid("src")
        .map(lambda x: x).uid("m").with_error_policy(ErrorPolicy.dead_letter(CollectSink("dlq-rw")))
        .sink_to(CollectSink("rw-dlq")).uid("out")
    )
    factory = FakeExchanges()
    graph = rewrite(env, workers=2, factory=factory)
    assert factory.made == []
    assert [e.dead_letter for e in graph.edges].count(True) == 1


def test_a_source_that_cannot_be_split_is_refused_for_several_workers() -> None:
    env = StreamEnvironment(parallelism=1)
    env.from_source(SocketTextSource("127.0.0.1", 9999)).uid("lines").sink_to(CollectSink("rw-sock")).uid("out")
    with pytest.raises(ConfigError, match=r"'lines' \(SocketTextSource\) cannot be split across 2 workers"):
        rewrite(env, workers=2)
    assert rewrite(env, workers=1) is not None


def test_more_workers_than_exchange_partitions_are_refused() -> None:
    with pytest.raises(ConfigError, match="at most 4 workers"):
        rewrite(keyed_job(), workers=5, factory=FakeExchanges(partitions=4))


def test_topic_names_are_legal_distinct_and_bounded() -> None:
    assert exchange_topic_name("orders", "parse", "count", 0) == "streamflow.orders.parse.count.0"
    odd = exchange_topic_name("my job", "a/b", "c", 0)
    alike = exchange_topic_name("my_job", "a_b", "c", 0)
    assert odd.startswith("streamflow.my_job.a_b.c.0-") and odd != alike
    assert set(odd) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    long = exchange_topic_name("j" * 300, "a", "b", 1)
    assert len(long) == 249 and long != exchange_topic_name("j" * 301, "a", "b", 1)


def test_an_exchange_spec_refuses_a_key_selector_it_cannot_use_and_a_kind_it_does_not_know() -> None:
    with pytest.raises(ConfigError, match="HASH exchange needs"):
        ExchangeSpec(
            topic="t", kind=ExchangeKind.REBALANCE, key_selector=len, partitions=2, max_parallelism=8,
            writer_uid="w", reader_uid="r", writer_parallelism=1, generation="g", upstream_uid="a",
            downstream_uid="b",
        )
    with pytest.raises(ConfigError, match="kind is an ExchangeKind"):
        ExchangeSpec(
            topic="t", kind="forward", key_selector=None, partitions=2, max_parallelism=8,  # type: ignore[arg-type]
            writer_uid="w", reader_uid="r", writer_parallelism=1, generation="g", upstream_uid="a",
            downstream_uid="b",
        )
