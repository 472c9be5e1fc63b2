"""The job graph as the metrics and the dashboard show it: vertices and the edges between.

A vertex is a chain of operators (what one task runs), as Flink's web UI draws a job
vertex; it runs as ``parallelism`` tasks named ``<id>[i]``, where ``id`` is the uid of
its first operator. Edges join vertices; each carries one channel per pair of upstream
and downstream subtasks it connects. Built once from the physical plan: plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamflow.graph.plan import PhysicalPlan
from streamflow.graph.spec import OperatorKind

__all__ = ["Edge", "JobLayout", "OperatorInfo", "Vertex"]


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    uid: str
    name: str
    kind: str  # OperatorKind value: "source", "map", ..., "sink"


@dataclass(frozen=True, slots=True)
class Vertex:
    id: str
    name: str
    parallelism: int
    operators: tuple[OperatorInfo, ...]

    @property
    def tasks(self) -> list[str]:
        return [f"{self.id}[{i}]" for i in range(self.parallelism)]

    @property
    def is_source(self) -> bool:
        return self.operators[0].kind == OperatorKind.SOURCE.value

    @property
    def is_sink(self) -> bool:
        return self.operators[-1].kind == OperatorKind.SINK.value


@dataclass(frozen=True, slots=True)
class Edge:
    upstream: str  # vertex ids
    downstream: str
    partitioning: str  # "forward", "rebalance", "hash", "broadcast"
    dead_letter: bool


@dataclass(frozen=True, slots=True)
class JobLayout:
    vertices: tuple[Vertex, ...]
    edges: tuple[Edge, ...]

    @classmethod
    def from_plan(cls, plan: PhysicalPlan) -> JobLayout:
        vertices = tuple(
            Vertex(
                id=chain.head.effective_uid,
                name=chain.name,
                parallelism=chain.parallelism,
                operators=tuple(OperatorInfo(op.effective_uid, op.name, op.kind.value) for op in chain.operators),
            )
            for chain in plan.chains
        )
        edges: list[Edge] = []
        for spec in plan.edges:
            edge = Edge(
                upstream=plan.chain_of(spec.upstream).head.effective_uid,
                downstream=plan.chain_of(spec.downstream).head.effective_uid,
                partitioning=spec.partitioning.value,
                dead_letter=spec.dead_letter,
            )
            if edge not in edges:
                edges.append(edge)
        return cls(vertices, tuple(edges))

    def vertex(self, vertex_id: str) -> Vertex:
        for vertex in self.vertices:
            if vertex.id == vertex_id:
                return vertex
        raise KeyError(vertex_id)

    def to_dict(self) -> dict[str, Any]:
        """The graph as the dashboard's ``/api/graph`` returns it."""
        return {
            "vertices": [
                {
                    "id": v.id,
                    "name": v.name,
                    "parallelism": v.parallelism,
                    "tasks": v.tasks,
                    "source": v.is_source,
                    "sink": v.is_sink,
                    "operators": [{"uid": o.uid, "name": o.name, "kind": o.kind} for o in v.operators],
                }
                for v in self.vertices
            ],
            "edges": [
                {
                    "upstream": e.upstream,
                    "downstream": e.downstream,
                    "partitioning": e.partitioning,
                    "dead_letter": e.dead_letter,
                }
                for e in self.edges
            ],
        }
