"""The streams of a pipeline: each method validates and appends one node to the graph.

:class:`DataStream`, :class:`KeyedStream` (after ``key_by``), and the two streams of the
broadcast state pattern: :class:`BroadcastStream` (``stream.broadcast(descriptor)``)
and :class:`BroadcastConnectedStream` (``stream.connect(broadcast_stream)``), whose
``process`` takes a (Keyed)BroadcastProcessFunction (see :mod:`streamflow.api.broadcast`).
These stream types return one another, so they live in one module; a stream holds the
graph builder it appends to, not the environment (which imports this module).

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
from streamflow.config import ChannelCapacity, seconds
from streamflow.errors import ConfigError, GraphError
from streamflow.graph.builder import GraphBuilder
from streamflow.graph.spec import OperatorKind, Partitioning
from streamflow.state.descriptors import MapStateDescriptor

T = TypeVar("T")
R = TypeVar("R")


def _require_callable(value: Any, what: str) -> None:
    if not callable(value):
        raise ConfigError(f"{what} needs a callable, got {value!r}")


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
    ) -> None:
        self._graph = graph
        self._node_ids = node_ids
        self._partitioning = partitioning
        self._key_selector = key_selector

    # -- naming the operator this stream comes from -------------------------------

    def _only_node(self, what: str) -> int:
        if len(self._node_ids) != 1:
            raise GraphError(f"{what} applies to one operator; this stream is a union of {len(self._node_ids)}")
        return self._node_ids[0]

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
        self._graph.update(self._only_node("set_parallelism()"), parallelism=parallelism)
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
        return DataStream(self._graph, self._node_ids, Partitioning.REBALANCE)

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
            return DataStream(self._graph, self._node_ids, Partitioning.BROADCAST)
        return BroadcastStream(self._graph, self._node_ids, descriptors)

    def connect(self, broadcast_stream: BroadcastStream) -> BroadcastConnectedStream:
        """Connect this stream to a broadcast stream; then ``.process(fn)`` reads both."""
        if not isinstance(broadcast_stream, BroadcastStream):
            raise ConfigError(
                f"connect needs a BroadcastStream, made with stream.broadcast(MapStateDescriptor(...)); "
                f"got {broadcast_stream!r}"
            )
        if broadcast_stream._graph is not self._graph:
            raise GraphError("connect of streams from different environments")
        return BroadcastConnectedStream(self, broadcast_stream)

    def key_by(self, key_selector: Callable[[T], Any]) -> KeyedStream[T]:
        """Partition by key: records with equal keys reach the same subtask, with keyed state."""
        _require_callable(key_selector, "key_by")
        return KeyedStream(self._graph, self._node_ids, Partitioning.HASH, key_selector)

    # -- transformations -----------------------------------------------------------

    def _apply(self, kind: OperatorKind, name: str, function: Any) -> DataStream[Any]:
        graph = self._graph
        node_id = graph.add(kind, name, function, key_selector=self._key_selector)
        for upstream in self._node_ids:
            graph.connect(upstream, node_id, self._partitioning, key_selector=self._key_selector)
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
        for upstream in self._node_ids:
            graph.connect(upstream, node_id, self._partitioning, key_selector=self._key_selector)
        for upstream in broadcast._node_ids:
            graph.connect(upstream, node_id, Partitioning.BROADCAST, input_index=1)
        return DataStream(self._graph, (node_id,))

    def union(self, *others: DataStream[T]) -> DataStream[T]:
        """Merge streams of the same type; no new operator."""
        ids = list(self._node_ids)
        for other in others:
            if other._graph is not self._graph:
                raise GraphError("union of streams from different environments")
            ids.extend(other._node_ids)
        return DataStream(self._graph, tuple(ids), self._partitioning, self._key_selector)

    def sink_to(self, sink: Sink, name: str | None = None) -> DataStream[Any]:
        """Write the stream to ``sink``: a Sink, whose ``create_writer(ctx)`` makes one
        SinkWriter per subtask (see :mod:`streamflow.api.connector`); anything else is
        refused with a ConfigError saying what the contract is."""
        check_sink(sink)
        return self._apply(OperatorKind.SINK, name or type(sink).__name__, sink)


class BroadcastStream:
    """A stream whose elements reach every subtask of the operator it is connected to,
    together with the broadcast state that operator keeps. Made by
    ``DataStream.broadcast(descriptor, ...)``; its one use is ``other.connect(this)``."""

    def __init__(
        self, graph: GraphBuilder, node_ids: tuple[int, ...], descriptors: tuple[MapStateDescriptor[Any, Any], ...]
    ) -> None:
        names: set[str] = set()
        for descriptor in descriptors:
            if not isinstance(descriptor, MapStateDescriptor):
                raise ConfigError(
                    f"broadcast(...) takes MapStateDescriptors (broadcast state is a map), got {descriptor!r}; "
                    "call broadcast() without arguments for plain broadcast partitioning"
                )
            if descriptor.ttl is not None:
                raise ConfigError(
                    f"broadcast state {descriptor.name!r} cannot have a ttl: expiry would happen at different "
                    "moments on different subtasks, and their copies must stay identical; drop ttl="
                )
            if descriptor.name in names:
                raise ConfigError(f"broadcast(...) got two descriptors named {descriptor.name!r}; names must differ")
            names.add(descriptor.name)
        self._graph = graph
        self._node_ids = node_ids
        self.descriptors = descriptors

    def __repr__(self) -> str:
        return f"BroadcastStream(states={[d.name for d in self.descriptors]!r})"


class BroadcastConnectedStream:
    """A stream connected to a broadcast stream; ``process`` adds the operator that reads
    both. Made by ``DataStream.connect`` or ``KeyedStream.connect``."""

    def __init__(self, main: DataStream[Any], broadcast: BroadcastStream) -> None:
        self._main = main
        self._broadcast = broadcast
        self._keyed = main._key_selector is not None

    def process(self, fn: BroadcastProcessFunction | KeyedBroadcastProcessFunction) -> DataStream[Any]:
        """Run ``fn`` over both inputs; returns the stream of what it collects.

        A keyed input needs a KeyedBroadcastProcessFunction, a non-keyed one a
        BroadcastProcessFunction (any object with ``process_element`` and
        ``process_broadcast_element`` works for either).
        """
        if self._keyed and isinstance(fn, BroadcastProcessFunction):
            raise GraphError(
                f"{type(fn).__name__} is a BroadcastProcessFunction, but the connected stream is keyed; "
                "use a KeyedBroadcastProcessFunction, or connect the stream before key_by(...)"
            )
        if not self._keyed and isinstance(fn, KeyedBroadcastProcessFunction):
            raise GraphError(
                f"{type(fn).__name__} is a KeyedBroadcastProcessFunction: call .key_by(...) before .connect(...)"
            )
        missing = [m for m in ("process_element", "process_broadcast_element") if not callable(getattr(fn, m, None))]
        if missing:
            raise ConfigError(
                f"connect(...).process needs a BroadcastProcessFunction or KeyedBroadcastProcessFunction; "
                f"{fn!r} lacks {', '.join(missing)}"
            )
        return self._main._add_broadcast_process(self._broadcast, fn)


class KeyedStream(DataStream[T]):
    """A stream partitioned by key; its operators have keyed state and a current key."""

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
