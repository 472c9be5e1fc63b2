"""The two streams of the broadcast state pattern.

:class:`BroadcastStream` (``stream.broadcast(descriptor, ...)``) and
:class:`BroadcastConnectedStream` (``stream.connect(broadcast_stream)``), whose
``process`` takes a (Keyed)BroadcastProcessFunction (see :mod:`streamflow.api.broadcast`).
They hold what the stream that made them hands over (how to connect the broadcast input,
how to add the operator) and add nothing to the graph themselves, so this module does
not import the stream module.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from streamflow.api.broadcast import BroadcastProcessFunction, KeyedBroadcastProcessFunction
from streamflow.errors import ConfigError, GraphError
from streamflow.graph.builder import GraphBuilder
from streamflow.state.descriptors import MapStateDescriptor

__all__ = ["BroadcastConnectedStream", "BroadcastStream"]

S = TypeVar("S")


class BroadcastStream:
    """A stream whose elements reach every subtask of the operator it is connected to,
    together with the broadcast state that operator keeps. Made by
    ``DataStream.broadcast(descriptor, ...)``; its one use is ``other.connect(this)``."""

    def __init__(
        self,
        graph: GraphBuilder,
        connect_as_input: Callable[[int], None],
        descriptors: tuple[MapStateDescriptor[Any, Any], ...],
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
        self.graph = graph
        self.connect_as_input = connect_as_input
        """Makes this stream input 1 (the broadcast input) of a node."""
        self.descriptors = descriptors

    def __repr__(self) -> str:
        return f"BroadcastStream(states={[d.name for d in self.descriptors]!r})"


AddBroadcastProcess = Callable[[BroadcastStream, "BroadcastProcessFunction | KeyedBroadcastProcessFunction"], S]


class BroadcastConnectedStream(Generic[S]):
    """A stream connected to a broadcast stream; ``process`` adds the operator that reads
    both. Made by ``DataStream.connect`` or ``KeyedStream.connect``."""

    def __init__(self, add: AddBroadcastProcess[S], broadcast: BroadcastStream, *, keyed: bool) -> None:
        self._add = add
        self._broadcast = broadcast
        self._keyed = keyed

    def process(self, fn: BroadcastProcessFunction | KeyedBroadcastProcessFunction) -> S:
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
        return self._add(self._broadcast, fn)
