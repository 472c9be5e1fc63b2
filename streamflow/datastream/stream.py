"""The streams of a pipeline: each method validates and appends one node to the graph.

:class:`DataStream` and :class:`KeyedStream` (after ``key_by``) return one another, so
they live in one module; a stream holds the graph builder it appends to, not the
environment (which imports this module). The broadcast state pattern
(:mod:`streamflow.datastream.broadcast`), windows (:mod:`streamflow.datastream.windowed`)
and joins (:mod:`streamflow.datastream.joins`) are built by classes of their own, which
add their nodes through the stream that made them.

A stream is the output of one or more operators: their main output, or (from
``get_side_output(tag)``) the side output of that name.

A stream is generic in its element type where the graph knows it: ``map(fn)`` of a
``DataStream[T]`` is a ``DataStream[R]`` when ``fn`` takes a ``T`` and returns (or, async,
awaits to) an ``R``; ``filter``, ``key_by``, ``union`` and ``reduce`` keep ``T``; what
a process function or a source emits is ``Any`` to a type checker.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, Callable, Generic, Iterable, Literal, Self, TypeVar, overload

from streamflow.api.async_io import AsyncIOConfig, AsyncOrdering, AsyncRetry, is_async_callable
from streamflow.api.broadcast import BroadcastProcessFunction, KeyedBroadcastProcessFunction
from streamflow.api.connector import Sink
from streamflow.api.connector_checks import check_sink
from streamflow.api.errors_policy import ErrorAction, ErrorPolicy
from streamflow.api.functions import KeyedProcessFunction, ProcessFunction
from streamflow.api.side_outputs import OutputTag
from streamflow.config import ChannelCapacity, seconds
from streamflow.datastream.broadcast import BroadcastConnectedStream, BroadcastStream
from streamflow.datastream.joins import IntervalJoinBuilder, JoinedStreams, JoinKey
from streamflow.datastream.windowed import WindowedStream
from streamflow.errors import ConfigError, GraphError
from streamflow.eventtime.strategy import WatermarkStrategy
from streamflow.graph.builder import GraphBuilder
from streamflow.graph.spec import OperatorKind, Partitioning
from streamflow.joins.interval_join import IntervalJoinConfig
from streamflow.joins.window_join import tag_left, tag_right
from streamflow.state.descriptors import MapStateDescriptor
from streamflow.windowing.assigners import WindowAssigner
from streamflow.windowing.config import WindowConfig

T = TypeVar("T")
R = TypeVar("R")


def _require_callable(value: Any, what: str) -> None:
    if not callable(value):
        raise ConfigError(f"{what} needs a callable, got {value!r}")


def all_key(record: Any) -> None:
    """The key of ``window_all``: every record has the same one (one subtask, as in Flink)."""
    return None


class DataStream(Generic[T]):
    """A stream of records of type ``T``: the output of one node (or several, after ``union``).

    Methods that name an operator (``uid``, ``name``, ``set_parallelism``,
    ``with_error_policy``, ``start_new_chain``) apply to the node this stream comes from.
    """

    def __init__(
        self,
        graph: GraphBuilder,
        node_ids: tuple[int, ...],
        partitioning: Partitioning | None = None,
        key_selector: Callable[[Any], Any] | None = None,
        side_outputs: tuple[str | None, ...] | None = None,
    ) -> None:
        self._graph = graph
        self._node_ids = node_ids
        self._partitioning = partitioning
        self._key_selector = key_selector
        # per node id: None for its main output, else the name of the side output read
        self._side_outputs = side_outputs if side_outputs is not None else (None,) * len(node_ids)

    # -- naming the operator this stream comes from -------------------------------

    def _only_node(self, what: str) -> int:
        if len(self._node_ids) != 1:
            raise GraphError(f"{what} applies to one operator; this stream is a union of {len(self._node_ids)}")
        if self._side_outputs[0] is not None:
            raise GraphError(
                f"{what} applies to the operator itself, not to its side output {self._side_outputs[0]!r}; "
                "call it on the stream the operator returned"
            )
        return self._node_ids[0]

    def _connect_to(self, node_id: int, input_index: int = 0, partitioning: Partitioning | None = None) -> None:
        """Edges from every operator of this stream (main or side output) to ``node_id``."""
        graph = self._graph
        for upstream, side in zip(self._node_ids, self._side_outputs):
            graph.connect(
                upstream,
                node_id,
                partitioning or self._partitioning,
                key_selector=self._key_selector,
                input_index=input_index,
                side_output=side,
            )

    def uid(self, uid: str) -> Self:
        """Set the stable id that the operator's state is matched by on restore."""
        if not isinstance(uid, str) or not uid:
            raise ConfigError(f"uid must be a non-empty string, got {uid!r}")
        self._graph.update(self._only_node("uid()"), uid=uid)
        return self

    def name(self, name: str) -> Self:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name must be a non-empty string, got {name!r}")
        self._graph.update(self._only_node("name()"), name=name)
        return self

    def set_parallelism(self, parallelism: int) -> Self:
        if not isinstance(parallelism, int) or parallelism < 1:
            raise ConfigError(f"parallelism must be a positive int, got {parallelism!r}")
        node_id = self._only_node("set_parallelism()")
        spec = self._graph.nodes[node_id]
        if spec.key_selector is all_key and parallelism != 1:
            raise ConfigError(
                f"operator {spec.name!r} comes from window_all(...), which sees every record in one subtask; "
                f"its parallelism is 1, not {parallelism}: use key_by(...).window(...) to window in parallel",
                operator=spec.effective_uid,
            )
        self._graph.update(node_id, parallelism=parallelism)
        return self

    def start_new_chain(self) -> Self:
        """Run this operator in its own task (a channel in front of it, visible fill)."""
        self._graph.update(self._only_node("start_new_chain()"), start_new_chain=True)
        return self

    def channel_capacity(self, batches: int, *, records: int | None = None) -> Self:
        """Bound the channels into this operator: ``batches``, and at most ``records``
        records when given (instead of the job's ``env.set_channel_capacity``). Smaller
        channels hold less in flight in front of a slow operator: aligned barriers wait
        behind less, at some cost in throughput when input comes in bursts. The operator
        then runs in a task of its own, as after ``start_new_chain()``: a channel bound
        needs a channel."""
        capacity = ChannelCapacity(batches, records)
        node_id = self._only_node("channel_capacity()")
        spec = self._graph.nodes[node_id]
        if spec.kind is OperatorKind.SOURCE:
            raise ConfigError(
                f"channel_capacity() bounds the channels into an operator, and source {spec.name!r} has none: "
                "call it on the operator that reads from the source"
            )
        self._graph.update(node_id, input_capacity=capacity)
        return self

    def with_error_policy(self, policy: ErrorPolicy) -> Self:
        """How this operator treats records its function raises on (see ErrorPolicy).

        On a source, the policy applies to records its reader cannot decode (a Kafka
        record whose bytes the deserializer rejects); sources that decode nothing never
        use it.
        """
        if not isinstance(policy, ErrorPolicy):
            raise ConfigError(f"with_error_policy needs an ErrorPolicy, got {policy!r}")
        node_id = self._only_node("with_error_policy()")
        graph = self._graph
        spec = graph.nodes[node_id]
        if spec.kind is OperatorKind.SINK:
            raise ConfigError(f"error policies apply to sources and transformations, not to sink {spec.name!r}")
        graph.update(node_id, error_policy=policy)
        if policy.action is ErrorAction.DEAD_LETTER:
            sink_id = graph.add(OperatorKind.SINK, f"{spec.name}.dead-letters", policy.sink)
            graph.connect(node_id, sink_id, Partitioning.REBALANCE, dead_letter=True)
        return self

    # -- partitioning --------------------------------------------------------------

    def rebalance(self) -> DataStream[T]:
        return DataStream(self._graph, self._node_ids, Partitioning.REBALANCE, side_outputs=self._side_outputs)

    @overload
    def broadcast(self) -> DataStream[T]: ...
    @overload
    def broadcast(
        self, descriptor: MapStateDescriptor[Any, Any], /, *descriptors: MapStateDescriptor[Any, Any]
    ) -> BroadcastStream: ...
    def broadcast(self, *descriptors: MapStateDescriptor[Any, Any]) -> DataStream[T] | BroadcastStream:
        """Every record to every subtask of the next operator.

        Without arguments: a DataStream with broadcast partitioning. With broadcast state
        descriptors (as in Flink): a BroadcastStream, to ``connect`` to another stream;
        the connected operator keeps these states (see :mod:`streamflow.api.broadcast`).
        """
        if not descriptors:
            return DataStream(self._graph, self._node_ids, Partitioning.BROADCAST, side_outputs=self._side_outputs)
        return BroadcastStream(self._graph, self._as_broadcast_input, descriptors)

    def _as_broadcast_input(self, node_id: int) -> None:
        self._connect_to(node_id, input_index=1, partitioning=Partitioning.BROADCAST)

    def connect(self, broadcast_stream: BroadcastStream) -> BroadcastConnectedStream[DataStream[Any]]:
        """Connect this stream to a broadcast stream; then ``.process(fn)`` reads both."""
        if not isinstance(broadcast_stream, BroadcastStream):
            raise ConfigError(
                f"connect needs a BroadcastStream, made with stream.broadcast(MapStateDescriptor(...)); "
                f"got {broadcast_stream!r}"
            )
        if broadcast_stream.graph is not self._graph:
            raise GraphError("connect of streams from different environments")
        return BroadcastConnectedStream(self._add_broadcast_process, broadcast_stream, keyed=self._key_selector is not None)

    def key_by(self, key_selector: Callable[[T], Any]) -> KeyedStream[T]:
        """Partition by key: records with equal keys reach the same subtask, with keyed state."""
        _require_callable(key_selector, "key_by")
        return KeyedStream(self._graph, self._node_ids, Partitioning.HASH, key_selector, self._side_outputs)

    def get_side_output(self, tag: OutputTag) -> DataStream[Any]:
        """The stream of what this operator sent to the side output ``tag``
        (``ctx.output(tag, value)`` in a process function, late data of a window).

        An operator's side outputs that no stream reads are dropped, as in Flink."""
        if not isinstance(tag, OutputTag):
            raise ConfigError(f"get_side_output needs an OutputTag, got {tag!r}; e.g. OutputTag('late')")
        node_id = self._only_node("get_side_output()")
        return DataStream(self._graph, (node_id,), side_outputs=(tag.name,))

    # -- transformations -----------------------------------------------------------

    def _apply(self, kind: OperatorKind, name: str, function: Any) -> DataStream[Any]:
        node_id = self._graph.add(kind, name, function, key_selector=self._key_selector)
        self._connect_to(node_id)
        return DataStream(self._graph, (node_id,))

    def assign_timestamps_and_watermarks(self, strategy: WatermarkStrategy) -> DataStream[T]:
        """Give the records timestamps and the stream watermarks by ``strategy`` (one
        watermark generator per subtask); the upstream watermarks are dropped, as in
        Flink. A record whose timestamp cannot be had goes to this operator's error
        policy (``with_error_policy``). On a keyed stream the result is not keyed."""
        if not isinstance(strategy, WatermarkStrategy):
            raise ConfigError(
                f"assign_timestamps_and_watermarks needs a WatermarkStrategy, got {strategy!r}; e.g. "
                "WatermarkStrategy.for_bounded_out_of_orderness(5.0).with_timestamp_assigner(lambda e: e['ts'])"
            )
        node_id = self._graph.add(OperatorKind.TIMESTAMPS, "timestamps", strategy)
        self._connect_to(node_id)
        return DataStream(self._graph, (node_id,))

    @overload
    def map(self, fn: Callable[[T], Awaitable[R]]) -> DataStream[R]: ...
    @overload
    def map(self, fn: Callable[[T], R]) -> DataStream[R]: ...
    def map(self, fn: Callable[[T], Any]) -> DataStream[Any]:
        """One record in, one out. ``fn`` may be async."""
        _require_callable(fn, "map")
        return self._apply(OperatorKind.MAP, "map", fn)

    @overload
    def flat_map(self, fn: Callable[[T], Awaitable[Iterable[R]]]) -> DataStream[R]: ...
    @overload
    def flat_map(self, fn: Callable[[T], Iterable[R]]) -> DataStream[R]: ...
    def flat_map(self, fn: Callable[[T], Any]) -> DataStream[Any]:
        """One record in, an iterable of records out. ``fn`` may be async."""
        _require_callable(fn, "flat_map")
        return self._apply(OperatorKind.FLAT_MAP, "flat_map", fn)

    def map_async(
        self,
        fn: Callable[[T], Awaitable[R]],
        *,
        capacity: int = 100,
        timeout: float | timedelta = 5.0,
        ordered: bool | Literal["per_key"] = False,
        retry: AsyncRetry | None = None,
    ) -> DataStream[R]:
        """Call async ``fn`` for each record with up to ``capacity`` calls in flight per
        subtask (Flink's Async I/O); one result per record.

        Args:
            fn: an ``async def``, or an object with ``async def __call__`` (and optional
                ``open(ctx)`` / ``close()``, see :class:`~streamflow.api.async_io.AsyncFunction`).
                It may be called again for a record after a restore or a retry: make it
                idempotent.
            capacity: calls in flight per subtask at most; when full, the operator
                waits for a free slot (backpressure upstream).
            timeout: seconds per call; a call still running then fails with a TimeoutError.
            ordered: False: results as calls complete (a watermark still follows every
                result before it); True: in input order; ``"per_key"`` (after ``key_by``):
                calls of one key one at a time, results in input order per key.
            retry: when to call again after an exception or an unwanted result
                (:class:`~streamflow.api.async_io.AsyncRetry`); None: never. What still
                fails goes to the operator's error policy.
        """
        return self._apply_async("map_async", fn, capacity, timeout, ordered, retry, flat=False)

    def flat_map_async(
        self,
        fn: Callable[[T], Awaitable[Iterable[R]]],
        *,
        capacity: int = 100,
        timeout: float | timedelta = 5.0,
        ordered: bool | Literal["per_key"] = False,
        retry: AsyncRetry | None = None,
    ) -> DataStream[R]:
        """Like :meth:`map_async`, but ``fn`` returns an iterable: zero or more results
        per record, emitted together."""
        return self._apply_async("flat_map_async", fn, capacity, timeout, ordered, retry, flat=True)

    def _apply_async(
        self,
        name: str,
        fn: Any,
        capacity: int,
        timeout: float | timedelta,
        ordered: bool | str,
        retry: AsyncRetry | None,
        *,
        flat: bool,
    ) -> DataStream[Any]:
        if not is_async_callable(fn):
            raise ConfigError(
                f"{name} needs an async function (an async def, or an object with async def __call__), got {fn!r}; "
                f"for a synchronous function use {name.removesuffix('_async')}, and wrap a callable that returns "
                "an awaitable (a lambda) in an async def"
            )
        config = AsyncIOConfig(
            capacity=capacity,
            timeout=seconds(timeout, "timeout"),
            ordering=AsyncOrdering.of(ordered, keyed=self._key_selector is not None),
            retry=retry,
            flat=flat,
        )
        stream = self._apply(OperatorKind.ASYNC, name, fn)
        self._graph.update(stream._node_ids[0], async_io=config)
        return stream

    def filter(self, fn: Callable[[T], bool | Awaitable[bool]]) -> DataStream[T]:
        """Keep the records for which ``fn`` is true. ``fn`` may be async."""
        _require_callable(fn, "filter")
        return self._apply(OperatorKind.FILTER, "filter", fn)

    def process(self, fn: ProcessFunction | KeyedProcessFunction) -> DataStream[Any]:
        """Run a ProcessFunction (or a KeyedProcessFunction, after key_by)."""
        if isinstance(fn, KeyedProcessFunction) and self._key_selector is None:
            raise GraphError(
                f"{type(fn).__name__} is a KeyedProcessFunction: call .key_by(...) before .process(...)"
            )
        if not hasattr(fn, "process_element"):
            raise ConfigError(f"process needs a ProcessFunction or KeyedProcessFunction, got {fn!r}")
        return self._apply(OperatorKind.PROCESS, type(fn).__name__, fn)

    def _add_broadcast_process(
        self, broadcast: BroadcastStream, fn: BroadcastProcessFunction | KeyedBroadcastProcessFunction
    ) -> DataStream[Any]:
        """The node behind ``connect(...).process(fn)``: this stream on input 0, the
        broadcast stream on input 1 (validated by BroadcastConnectedStream.process)."""
        graph = self._graph
        node_id = graph.add(OperatorKind.BROADCAST_PROCESS, type(fn).__name__, fn, key_selector=self._key_selector)
        graph.update(node_id, broadcast_states=broadcast.descriptors)
        self._connect_to(node_id)
        broadcast.connect_as_input(node_id)
        return DataStream(self._graph, (node_id,))

    # -- windows and joins ----------------------------------------------------------

    def window_all(self, assigner: WindowAssigner) -> WindowedStream[T, DataStream[Any]]:
        """Windows over the whole stream, in one subtask (parallelism 1, as in Flink): then
        ``reduce`` / ``aggregate`` / ``process`` (whose ``key`` is None)."""
        keyed: KeyedStream[T] = self.key_by(all_key)
        return WindowedStream(keyed._add_window_all, assigner, kind="window_all")

    def join(self, other: DataStream[Any]) -> JoinedStreams[DataStream[Any]]:
        """A window join with ``other``: ``.where(key).equal_to(other_key).window(assigner).apply(fn)``."""
        return JoinedStreams(self._joiner(other), co_group=False)

    def co_group(self, other: DataStream[Any]) -> JoinedStreams[DataStream[Any]]:
        """As :meth:`join`, with ``apply(fn(lefts, rights, out))`` once per key and window."""
        return JoinedStreams(self._joiner(other), co_group=True)

    def _joiner(
        self, other: DataStream[Any]
    ) -> Callable[[Callable[[Any], Any], Callable[[Any], Any], WindowConfig, str], DataStream[Any]]:
        if not isinstance(other, DataStream):
            raise ConfigError(f"join/co_group needs another DataStream, got {other!r}")
        if other._graph is not self._graph:
            raise GraphError("join of streams from different environments")

        def add(where: Callable[[Any], Any], equal_to: Callable[[Any], Any], config: WindowConfig, name: str) -> DataStream[Any]:
            left: DataStream[Any] = DataStream(self._graph, self._node_ids, self._partitioning, None, self._side_outputs)
            right: DataStream[Any] = DataStream(other._graph, other._node_ids, other._partitioning, None, other._side_outputs)
            tagged = left.map(tag_left).name(f"{name}-left").union(right.map(tag_right).name(f"{name}-right"))
            return tagged.key_by(JoinKey(where, equal_to))._add_window(config, name)

        return add

    def union(self, *others: DataStream[T]) -> DataStream[T]:
        """Merge streams of the same type; no new operator."""
        ids = list(self._node_ids)
        sides = list(self._side_outputs)
        for other in others:
            if other._graph is not self._graph:
                raise GraphError("union of streams from different environments")
            ids.extend(other._node_ids)
            sides.extend(other._side_outputs)
        return DataStream(self._graph, tuple(ids), self._partitioning, self._key_selector, tuple(sides))

    def sink_to(self, sink: Sink, name: str | None = None) -> DataStream[Any]:
        """Write the stream to ``sink``: a Sink, whose ``create_writer(ctx)`` makes one
        SinkWriter per subtask (see :mod:`streamflow.api.connector`); anything else is
        refused with a ConfigError saying what the contract is."""
        check_sink(sink)
        return self._apply(OperatorKind.SINK, name or type(sink).__name__, sink)


class KeyedStream(DataStream[T]):
    """A stream partitioned by key; its operators have keyed state and a current key."""

    def window(self, assigner: WindowAssigner) -> WindowedStream[T, DataStream[Any]]:
        """Windows per key (tumbling, sliding, session, global): configure, then
        ``reduce`` / ``aggregate`` / ``process`` (see :class:`WindowedStream`)."""
        return WindowedStream(self._add_window, assigner)

    def count_window(self, size: int, slide: int | None = None) -> WindowedStream[T, DataStream[Any]]:
        """Windows of ``size`` elements per key: tumbling, or every ``slide`` elements over
        the last ``size``."""
        return WindowedStream.of_counts(self._add_window, size, slide)

    def _add_window(self, config: WindowConfig, name: str) -> DataStream[Any]:
        return self._apply(OperatorKind.WINDOW, name, config)

    def _add_window_all(self, config: WindowConfig, name: str) -> DataStream[Any]:
        stream = self._add_window(config, name)
        self._graph.update(stream._node_ids[0], parallelism=1)
        return stream

    def interval_join(self, other: KeyedStream[Any]) -> IntervalJoinBuilder[DataStream[Any]]:
        """Join with another keyed stream by time: ``.between(lower, upper).process(fn)``
        pairs each element with the other stream's elements of the same key whose
        timestamps are ``lower`` to ``upper`` seconds after its own."""
        if not isinstance(other, KeyedStream):
            raise ConfigError(f"interval_join needs a KeyedStream (after key_by), got {other!r}")
        if other._graph is not self._graph:
            raise GraphError("interval_join of streams from different environments")

        def add(config: IntervalJoinConfig, name: str) -> DataStream[Any]:
            node_id = self._graph.add(OperatorKind.INTERVAL_JOIN, name, config, key_selector=self._key_selector)
            self._connect_to(node_id, input_index=0)
            other._connect_to(node_id, input_index=1)
            return DataStream(self._graph, (node_id,))

        return IntervalJoinBuilder(add)

    def reduce(self, fn: Callable[[T, T], T | Awaitable[T]]) -> DataStream[T]:
        """Running reduce per key: emits ``fn(previous, record)`` for every record."""
        _require_callable(fn, "reduce")
        return self._apply(OperatorKind.REDUCE, "reduce", fn)

    def sum(self, field: str | int | None = None) -> DataStream[T]:
        """Running sum per key of ``record[field]`` (or of the records, if None)."""
        return self._apply(OperatorKind.REDUCE, "sum", _Summer(field))


class _Summer:
    """``reduce`` function of ``KeyedStream.sum``: copies the latest record, field summed."""

    __slots__ = ("field",)

    def __init__(self, field: str | int | None) -> None:
        self.field = field

    def __call__(self, acc: Any, value: Any) -> Any:
        field = self.field
        if field is None:
            return acc + value
        if isinstance(value, dict):
            out = dict(value)
            out[field] = acc[field] + value[field]
            return out
        if isinstance(value, tuple):
            items = list(value)
            items[field] = acc[field] + value[field]  # type: ignore[index]
            return tuple(items)
        raise ConfigError(f"sum({field!r}) needs dict or tuple records, got {value!r}")
