"""A fingerprint of a job graph, so workers can tell whether they run the same job.

Every worker of a job must run the same graph with the same settings: the global
subtask indices, the exchange topics and the key-group ranges all follow from it. The
fingerprint covers what those depend on and what state is matched by: each operator's
uid, kind, parallelism and whether it is keyed, each edge's ends, partitioning and
input, and the max parallelism. It ignores what may differ harmlessly between
processes (function objects, names given for display).

:func:`graph_outline` is the same description as readable lines, kept next to the
fingerprint so an error can show where two workers' graphs part.
"""

from __future__ import annotations

import hashlib

import orjson

from streamflow.graph.spec import JobGraph

__all__ = ["graph_fingerprint", "graph_outline"]


def graph_outline(graph: JobGraph, *, default_parallelism: int, max_parallelism: int) -> list[str]:
    """One line per operator and per edge, in graph order, and one for max parallelism."""
    uid_of = {node.node_id: node.effective_uid for node in graph.nodes}
    lines = [f"max_parallelism {max_parallelism}"]
    for node in graph.nodes:
        parallelism = node.parallelism if node.parallelism is not None else default_parallelism
        keyed = " keyed" if node.key_selector is not None else ""
        states = "".join(f" broadcast-state:{d.name}" for d in node.broadcast_states)
        lines.append(f"operator {node.effective_uid!r} {node.kind.value} parallelism {parallelism}{keyed}{states}")
    for edge in graph.edges:
        dead = " dead-letter" if edge.dead_letter else ""
        lines.append(
            f"edge {uid_of[edge.upstream]!r} -> {uid_of[edge.downstream]!r} input {edge.input_index} "
            f"{edge.partitioning.value}{dead}"
        )
    return lines


def graph_fingerprint(outline: list[str]) -> str:
    """The hex SHA-256 of an outline from :func:`graph_outline`."""
    return hashlib.sha256(orjson.dumps(outline)).hexdigest()
