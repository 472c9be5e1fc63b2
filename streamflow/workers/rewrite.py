"""The job graph of one worker of several: redistributing edges become exchanges.

A pure function over the inert :class:`~streamflow.graph.spec.JobGraph`. With one worker
the graph is returned as it is (nothing changes, nothing costs more). With several,
every edge that redistributes records is cut in two::

    up --HASH/REBALANCE--> down      becomes   up --FORWARD--> exchange sink (topic)
                                               exchange source (topic) --FORWARD--> down

    up --BROADCAST--> down           becomes   up --FORWARD--> exchange sink (topic)
                                               exchange source (topic, parallelism 1)
                                                   --BROADCAST--> down

The exchange sink runs at the upstream's parallelism (so it chains onto it), the exchange
source at the downstream's (so the downstream chains onto it: exchange reader subtask
``g`` reads exactly the partitions whose key groups keyed subtask ``g`` owns, see
:mod:`streamflow.partitioning.workers`). A broadcast exchange has one reader per worker that
reads every partition and broadcasts in memory to the worker's subtasks. FORWARD edges
stay in memory, and so do dead-letter edges: a worker's dead letters go to that worker's
dead-letter sink.

Before cutting, the graph is checked for what several workers cannot run: a source that
declares ``splittable = False`` (it reads one input that only one reader may read, such
as a socket) is refused, as is an exchange partition count the workers cannot share.
"""

from __future__ import annotations

from dataclasses import replace

from streamflow.api.exchange import ExchangeFactory, ExchangeKind, ExchangeSpec, exchange_topic_name, exchange_uids
from streamflow.errors import ConfigError
from streamflow.graph.spec import EdgeSpec, JobGraph, OperatorKind, OperatorSpec, Partitioning
from streamflow.partitioning.workers import WorkerLayout, check_exchange_partitions

__all__ = [
    "broadcast_reader_uids",
    "check_sources_split",
    "exchange_specs",
    "exchanged_edges",
    "rewrite_for_workers",
]

_KINDS = {
    Partitioning.HASH: ExchangeKind.HASH,
    Partitioning.REBALANCE: ExchangeKind.REBALANCE,
    Partitioning.BROADCAST: ExchangeKind.BROADCAST,
}


def rewrite_for_workers(
    graph: JobGraph,
    *,
    layout: WorkerLayout,
    job_name: str,
    default_parallelism: int,
    max_parallelism: int,
    exchanges: ExchangeFactory,
    generation: str,
    keep_exchanges: bool = False,
) -> JobGraph:
    """``graph`` as worker ``layout.index`` runs it; see the module docstring.

    Every worker computes the same graph (the same program, the same settings): node ids
    and uids of the exchange nodes depend on the graph alone. ``keep_exchanges`` cuts the
    graph for one worker too: a job restored from the savepoint set of several workers
    must read what their exchange topics still hold.

    Raises:
        ConfigError: a source cannot be split across workers, or the exchange partition
            count does not fit the workers and max parallelism.
    """
    if not layout.is_distributed and not keep_exchanges:
        return graph
    check_sources_split(graph, layout.workers)
    check_exchange_partitions(exchanges.partitions, max_parallelism, layout.workers)
    specs = exchange_specs(
        graph, layout=layout, job_name=job_name, default_parallelism=default_parallelism,
        max_parallelism=max_parallelism, partitions=exchanges.partitions, generation=generation,
    )
    next_id = max((node.node_id for node in graph.nodes), default=0) + 1
    readers: list[OperatorSpec] = []
    writers: list[OperatorSpec] = []
    edges: list[EdgeSpec] = []
    pending = iter(specs)  # in the order of exchanged_edges
    for edge in graph.edges:
        if not _is_exchanged(edge):
            edges.append(edge)
            continue
        spec = next(pending)
        up, down = graph.node(edge.upstream), graph.node(edge.downstream)
        writer = OperatorSpec(
            node_id=next_id, kind=OperatorKind.SINK, name=f"exchange to {down.name}", function=exchanges.sink(spec),
            uid=spec.writer_uid, parallelism=_parallelism(up, default_parallelism),
        )
        broadcast = edge.partitioning is Partitioning.BROADCAST
        reader = OperatorSpec(
            node_id=next_id + 1, kind=OperatorKind.SOURCE, name=f"exchange from {up.name}",
            function=exchanges.source(spec), uid=spec.reader_uid,
            parallelism=1 if broadcast else _parallelism(down, default_parallelism),
        )
        next_id += 2
        writers.append(writer)
        readers.append(reader)
        edges.append(EdgeSpec(upstream=up.node_id, downstream=writer.node_id, partitioning=Partitioning.FORWARD))
        edges.append(
            replace(
                edge,
                upstream=reader.node_id,
                partitioning=Partitioning.BROADCAST if broadcast else Partitioning.FORWARD,
                key_selector=None,
            )
        )
    # Nodes stay in topological order: a reader has no input and precedes its downstream,
    # a writer follows its upstream.
    return JobGraph(nodes=(*readers, *graph.nodes, *writers), edges=tuple(edges))


def exchange_specs(
    graph: JobGraph,
    *,
    layout: WorkerLayout,
    job_name: str,
    default_parallelism: int,
    max_parallelism: int,
    partitions: int,
    generation: str,
) -> list[ExchangeSpec]:
    """The exchanges of ``graph`` run by ``layout.workers`` workers, in edge order."""
    specs = []
    for edge in exchanged_edges(graph):
        up, down = graph.node(edge.upstream), graph.node(edge.downstream)
        writer_uid, reader_uid = exchange_uids(up.effective_uid, down.effective_uid, edge.input_index)
        specs.append(
            ExchangeSpec(
                topic=exchange_topic_name(job_name, up.effective_uid, down.effective_uid, edge.input_index),
                kind=_KINDS[edge.partitioning],
                key_selector=edge.key_selector,
                partitions=partitions,
                max_parallelism=max_parallelism,
                writer_uid=writer_uid,
                reader_uid=reader_uid,
                writer_parallelism=layout.global_parallelism(_parallelism(up, default_parallelism)),
                generation=generation,
                upstream_uid=up.effective_uid,
                downstream_uid=down.effective_uid,
                input_index=edge.input_index,
            )
        )
    return specs


def check_sources_split(graph: JobGraph, workers: int) -> None:
    """Refuse sources that cannot share their input among ``workers`` workers' readers."""
    if workers < 2:
        return
    for node in graph.nodes:
        if node.kind is OperatorKind.SOURCE and getattr(node.function, "splittable", True) is False:
            raise ConfigError(
                f"source {node.effective_uid!r} ({type(node.function).__name__}) cannot be split across "
                f"{workers} workers: it reads one input that only one reader may read (it declares "
                "splittable = False), and every worker runs its own readers of every source. Run this job "
                "with one worker, or bring the input in through a source that splits (e.g. a Kafka topic).",
                operator=node.effective_uid,
            )


def exchanged_edges(graph: JobGraph) -> list[EdgeSpec]:
    """The edges of ``graph`` that become exchanges when it runs on several workers."""
    return [e for e in graph.edges if _is_exchanged(e)]


def broadcast_reader_uids(graph: JobGraph) -> set[str]:
    """The uids of the readers of ``graph``'s broadcast exchanges (their offsets, like
    broadcast state, are restored from one old worker: see the savepoint sets)."""
    uid_of = {node.node_id: node.effective_uid for node in graph.nodes}
    return {
        exchange_uids(uid_of[edge.upstream], uid_of[edge.downstream], edge.input_index)[1]
        for edge in exchanged_edges(graph)
        if edge.partitioning is Partitioning.BROADCAST
    }


def _is_exchanged(edge: EdgeSpec) -> bool:
    return not edge.dead_letter and edge.partitioning in _KINDS


def _parallelism(node: OperatorSpec, default_parallelism: int) -> int:
    return node.parallelism if node.parallelism is not None else default_parallelism
