"""The logical job graph: frozen operator and edge specs, plain data.

Building a pipeline only appends specs here; nothing touches an event loop, a broker or
a disk until the job is executed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from streamflow.api.async_io import AsyncIOConfig
from streamflow.api.errors_policy import FAIL, ErrorPolicy
from streamflow.api.functions import is_checkpointed_function
from streamflow.config import ChannelCapacity
from streamflow.eventtime.strategy import WatermarkStrategy
from streamflow.state.descriptors import MapStateDescriptor


class Partitioning(enum.Enum):
    """How records of an edge are spread over the downstream subtasks."""

    FORWARD = "forward"  # subtask i -> subtask i; needs equal parallelism
    REBALANCE = "rebalance"  # round robin, batch by batch
    HASH = "hash"  # key -> key group -> owning subtask
    BROADCAST = "broadcast"  # every record to every subtask


class OperatorKind(enum.Enum):
    SOURCE = "source"
    MAP = "map"
    FLAT_MAP = "flat_map"
    FILTER = "filter"
    PROCESS = "process"
    BROADCAST_PROCESS = "broadcast_process"  # two inputs: records (0) and broadcast elements (1)
    REDUCE = "reduce"
    TIMESTAMPS = "timestamps"  # assign_timestamps_and_watermarks; function: the WatermarkStrategy
    WINDOW = "window"  # keyed; function: the WindowConfig
    INTERVAL_JOIN = "interval_join"  # keyed, two inputs: left (0) and right (1)
    ASYNC = "async"  # map_async / flat_map_async: calls in flight, settings in OperatorSpec.async_io
    SINK = "sink"


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSpec:
    """One node of the job graph.

    ``key_selector`` is set when the input is keyed (the operator then has a current
    key and keyed state). ``parallelism`` None means the environment default.
    ``broadcast_states`` are the MapStateDescriptors a BROADCAST_PROCESS operator was
    given by ``DataStream.broadcast(...)``: the broadcast state it may use.
    ``watermark_strategy`` is a source's, given to ``env.from_source``: its records get
    timestamps and watermarks per split.
    ``async_io`` holds the settings of an ASYNC operator (None for every other kind).
    ``input_capacity`` bounds the channels into this operator (``channel_capacity(...)``).
    """

    node_id: int
    kind: OperatorKind
    name: str
    function: Any
    uid: str | None = None
    parallelism: int | None = None
    key_selector: Callable[[Any], Any] | None = None
    error_policy: ErrorPolicy = FAIL
    start_new_chain: bool = False
    broadcast_states: tuple[MapStateDescriptor[Any, Any], ...] = ()
    watermark_strategy: WatermarkStrategy | None = None
    async_io: AsyncIOConfig | None = None
    input_capacity: ChannelCapacity | None = None  # its input channels' bound; None: the job's

    @property
    def effective_uid(self) -> str:
        """The uid state is matched by: the user's, else derived from name and node id."""
        return self.uid if self.uid is not None else f"{self.name}#{self.node_id}"

    @property
    def holds_state(self) -> bool:
        """Whether this operator keeps state that a savepoint must match to it by uid.

        The rule, in order:

        1. a function, source or sink with ``snapshot_state`` and ``initialize_state``
           (a CheckpointedFunction: operator state) does;
        2. a source or sink does unless it declares ``stateful = False`` (a class
           attribute or property): sources keep split positions and sinks pending
           transactions by default, while :class:`~streamflow.connectors.PrintSink` or
           :class:`~streamflow.connectors.SocketTextSource` keep nothing (after
           ``key_by`` too: a sink has no keyed state);
        3. keyed operators (after ``key_by``: keyed state, timers), broadcast
           operators (broadcast state) and async operators (the inputs of the calls in
           flight at a barrier) do;
        4. anything else (map, filter, flat_map, a non-keyed process) does not.

        Only operators that hold state need a ``.uid(...)``; missing ones are warned
        about for these alone.
        """
        if is_checkpointed_function(self.function):
            return True
        if self.kind is OperatorKind.SOURCE or self.kind is OperatorKind.SINK:
            return bool(getattr(self.function, "stateful", True))
        if self.kind is OperatorKind.ASYNC or self.kind is OperatorKind.BROADCAST_PROCESS:
            return True
        return self.key_selector is not None

    @property
    def has_keyed_state(self) -> bool:
        """Whether the operator gets a keyed state backend: after ``key_by``, unless it is
        an async operator (its calls of many keys overlap, so there is no current key)."""
        return self.key_selector is not None and self.kind is not OperatorKind.ASYNC


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSpec:
    """A stream from ``upstream`` to ``downstream``.

    ``dead_letter`` edges carry records an operator's error policy routed aside;
    ``side_output`` edges the records the upstream operator sent to the side output of
    that name (``ctx.output(tag, value)``, late data of a window). Neither is ever
    chained. ``input_index`` says which input of the downstream operator the edge feeds:
    0 for every one-input operator; a broadcast operator reads its records on input 0 and
    its broadcast elements on input 1, an interval join its left and right input.
    """

    upstream: int
    downstream: int
    partitioning: Partitioning
    key_selector: Callable[[Any], Any] | None = None
    dead_letter: bool = False
    input_index: int = 0
    side_output: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether the edge carries the upstream operator's main output."""
        return not self.dead_letter and self.side_output is None


@dataclass(frozen=True, slots=True)
class JobGraph:
    """The whole logical graph, nodes in creation (hence topological) order."""

    nodes: tuple[OperatorSpec, ...]
    edges: tuple[EdgeSpec, ...]

    def node(self, node_id: int) -> OperatorSpec:
        for spec in self.nodes:
            if spec.node_id == node_id:
                return spec
        raise KeyError(node_id)

    def inputs(self, node_id: int) -> list[EdgeSpec]:
        return [e for e in self.edges if e.downstream == node_id]

    def outputs(self, node_id: int) -> list[EdgeSpec]:
        return [e for e in self.edges if e.upstream == node_id]
