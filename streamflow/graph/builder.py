"""Mutable builder behind StreamEnvironment; freezes into a JobGraph."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from streamflow.errors import GraphError
from streamflow.graph.spec import EdgeSpec, JobGraph, OperatorKind, OperatorSpec, Partitioning


class GraphBuilder:
    def __init__(self) -> None:
        self.nodes: dict[int, OperatorSpec] = {}
        self.edges: list[EdgeSpec] = []
        self._auto_forward: set[int] = set()  # edges whose partitioning the user left open

    def add(
        self,
        kind: OperatorKind,
        name: str,
        function: Any,
        key_selector: Callable[[Any], Any] | None = None,
    ) -> int:
        node_id = len(self.nodes) + 1
        self.nodes[node_id] = OperatorSpec(
            node_id=node_id, kind=kind, name=name, function=function, key_selector=key_selector
        )
        return node_id

    def update(self, node_id: int, **changes: Any) -> None:
        self.nodes[node_id] = replace(self.nodes[node_id], **changes)

    def connect(
        self,
        upstream: int,
        downstream: int,
        partitioning: Partitioning | None,
        key_selector: Callable[[Any], Any] | None = None,
        dead_letter: bool = False,
        input_index: int = 0,
        side_output: str | None = None,
    ) -> None:
        if self.nodes[upstream].kind is OperatorKind.SINK:
            raise GraphError(f"{self.nodes[upstream].name!r} is a sink; nothing can follow it")
        self.edges.append(
            EdgeSpec(
                upstream=upstream,
                downstream=downstream,
                # None: forward when parallelism matches, else rebalance (decided at plan time)
                partitioning=partitioning or Partitioning.FORWARD,
                key_selector=key_selector,
                dead_letter=dead_letter,
                input_index=input_index,
                side_output=side_output,
            )
        )
        if partitioning is None:
            self._auto_forward.add(len(self.edges) - 1)

    def freeze(self, parallelism_of: Callable[[OperatorSpec], int]) -> JobGraph:
        """The frozen graph; default edges between unequal parallelism become rebalance."""
        edges = []
        for index, edge in enumerate(self.edges):
            if index in self._auto_forward:
                up, down = self.nodes[edge.upstream], self.nodes[edge.downstream]
                if parallelism_of(up) != parallelism_of(down):
                    edge = replace(edge, partitioning=Partitioning.REBALANCE)
            edges.append(edge)
        return JobGraph(nodes=tuple(self.nodes.values()), edges=tuple(edges))
