"""Logical graph -> physical plan: parallelism resolved, validated, operators chained.

A chain is a run of operators that one task executes by direct calls: each link is a
forward edge between operators of equal parallelism, where the upstream has exactly one
main output and the downstream exactly one input. Dead-letter and side-output edges
never chain: they always go through channels. Any edge between two operators of
parallelism 1 is chainable too (every partitioner degenerates to forward). Chaining
changes speed, never results.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamflow.errors import GraphError
from streamflow.graph.spec import EdgeSpec, JobGraph, OperatorKind, OperatorSpec, Partitioning
from streamflow.partitioning.keygroups import validate_parallelism


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """Operators run by one task per parallel instance, head first."""

    chain_id: int
    operators: tuple[OperatorSpec, ...]
    parallelism: int

    @property
    def head(self) -> OperatorSpec:
        return self.operators[0]

    @property
    def tail(self) -> OperatorSpec:
        return self.operators[-1]

    @property
    def name(self) -> str:
        return " -> ".join(op.name for op in self.operators)


@dataclass(frozen=True, slots=True)
class PhysicalPlan:
    chains: tuple[ChainSpec, ...]
    edges: tuple[EdgeSpec, ...]  # only edges between chains
    parallelism: dict[int, int]  # node id -> parallelism
    max_parallelism: int

    def chain_of(self, node_id: int) -> ChainSpec:
        for chain in self.chains:
            if any(op.node_id == node_id for op in chain.operators):
                return chain
        raise KeyError(node_id)


def validate(graph: JobGraph, default_parallelism: int, max_parallelism: int) -> dict[int, int]:
    """Check the graph; return each node's parallelism. Raises GraphError/ConfigError."""
    if not any(n.kind is OperatorKind.SOURCE for n in graph.nodes):
        raise GraphError("the job has no source; add one with env.from_source(...) or env.from_collection(...)")
    if not any(n.kind is OperatorKind.SINK for n in graph.nodes):
        raise GraphError("the job has no sink, so it would compute nothing visible; end a stream with .sink_to(...)")
    seen: dict[str, str] = {}
    parallelism: dict[int, int] = {}
    for node in graph.nodes:
        uid = node.effective_uid
        if uid in seen:
            raise GraphError(
                f"uid {uid!r} is used by both {seen[uid]!r} and {node.name!r}; every operator uid must be unique",
                operator=uid,
            )
        seen[uid] = node.name
        p = node.parallelism if node.parallelism is not None else default_parallelism
        validate_parallelism(p, max_parallelism)
        parallelism[node.node_id] = p
    for edge in graph.edges:
        if edge.partitioning is Partitioning.FORWARD and parallelism[edge.upstream] != parallelism[edge.downstream]:
            up, down = graph.node(edge.upstream), graph.node(edge.downstream)
            raise GraphError(
                f"forward edge {up.name!r} (parallelism {parallelism[edge.upstream]}) -> {down.name!r} "
                f"(parallelism {parallelism[edge.downstream]}) needs equal parallelism; use .rebalance() "
                "or give both the same parallelism"
            )
    return parallelism


def build_plan(
    graph: JobGraph, default_parallelism: int, max_parallelism: int, chaining: bool = True
) -> PhysicalPlan:
    parallelism = validate(graph, default_parallelism, max_parallelism)

    def chainable(edge: EdgeSpec) -> bool:
        if not chaining or not edge.is_main:
            return False
        up, down = graph.node(edge.upstream), graph.node(edge.downstream)
        if down.start_new_chain or down.input_capacity is not None or down.kind is OperatorKind.SOURCE:
            return False
        if len([e for e in graph.outputs(up.node_id) if e.is_main]) != 1:
            return False
        if len(graph.inputs(down.node_id)) != 1:
            return False
        p_up, p_down = parallelism[up.node_id], parallelism[down.node_id]
        if p_up != p_down:
            return False
        return edge.partitioning is Partitioning.FORWARD or p_up == 1

    chain_of: dict[int, list[OperatorSpec]] = {}
    chains: list[list[OperatorSpec]] = []
    for node in graph.nodes:
        inputs = graph.inputs(node.node_id)
        if len(inputs) == 1 and chainable(inputs[0]):
            chain = chain_of[inputs[0].upstream]
            chain.append(node)
        else:
            chain = [node]
            chains.append(chain)
        chain_of[node.node_id] = chain
    specs = tuple(
        ChainSpec(chain_id=i, operators=tuple(ops), parallelism=parallelism[ops[0].node_id])
        for i, ops in enumerate(chains)
    )
    inner = {(a.node_id, b.node_id) for ops in chains for a, b in zip(ops, ops[1:])}
    edges = tuple(e for e in graph.edges if (e.upstream, e.downstream) not in inner or not e.is_main)
    return PhysicalPlan(chains=specs, edges=edges, parallelism=parallelism, max_parallelism=max_parallelism)
