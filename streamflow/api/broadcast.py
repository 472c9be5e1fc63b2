"""The broadcast state pattern: a low-volume stream of rules meets a high-volume stream.

::

    RULES = MapStateDescriptor("rules")
    rules = env.from_source(...).broadcast(RULES)           # a BroadcastStream
    (actions.key_by(lambda a: a["user"])
        .connect(rules)                                     # a BroadcastConnectedStream
        .process(MatchRules()).uid("match")                 # a KeyedBroadcastProcessFunction
        .sink_to(...))

Every subtask of the connected operator receives every broadcast element, in
``process_broadcast_element``, with read-write access to the broadcast state; the
records of the other stream go to ``process_element``, which may only read it (writes
raise StateError, see :mod:`streamflow.state.broadcast`). The broadcast state is
checkpointed with the operator and restored on every subtask, also after rescaling.

Nothing orders the two inputs against each other: a record may be processed before a
broadcast element that was produced "earlier". Functions that must not miss a rule
buffer such records in state until the rule arrives, or act on whichever comes last.
Event time, as for any operator with several inputs, is the minimum watermark of both
inputs: a broadcast stream that carries no watermarks holds event-time timers back
until it ends (a bounded one ends with the final watermark).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

from streamflow.api.functions import Collector, Function, TimerService
from streamflow.errors import ConfigError, GraphError
from streamflow.state.descriptors import MapStateDescriptor, StateDescriptor

if TYPE_CHECKING:
    from streamflow.api.environment import StreamEnvironment
    from streamflow.api.stream import DataStream
    from streamflow.state.broadcast import BroadcastState, ReadOnlyBroadcastState

__all__ = [
    "BroadcastConnectedStream",
    "BroadcastContext",
    "BroadcastProcessFunction",
    "BroadcastStream",
    "KeyedBroadcastContext",
    "KeyedBroadcastProcessFunction",
    "KeyedReadOnlyBroadcastContext",
    "ReadOnlyBroadcastContext",
]


# -- what the functions are handed --------------------------------------------------------


class ReadOnlyBroadcastContext(Protocol):
    """Context of ``process_element``: the broadcast state, read only."""

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> ReadOnlyBroadcastState[Any, Any]:
        """A read-only view of a state declared in ``broadcast(...)``; writes raise StateError."""
        ...

    def current_processing_time(self) -> float: ...

    def current_watermark(self) -> float: ...


class KeyedReadOnlyBroadcastContext(ReadOnlyBroadcastContext, Protocol):
    """Context of ``process_element`` and ``on_timer`` after key_by: also key and timers."""

    timer_service: TimerService

    def get_current_key(self) -> Any: ...


class BroadcastContext(Protocol):
    """Context of ``process_broadcast_element``: the broadcast state, read-write."""

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> BroadcastState[Any, Any]:
        """The read-write broadcast state declared in ``broadcast(...)`` under this name."""
        ...

    def current_processing_time(self) -> float: ...

    def current_watermark(self) -> float: ...


class KeyedBroadcastContext(BroadcastContext, Protocol):
    """Context of ``process_broadcast_element`` after key_by.

    There is no current key on the broadcast side: keyed state handles raise StateError
    there. ``apply_to_keyed_state`` is the way to reach keyed state from a broadcast
    element.
    """

    def apply_to_keyed_state(self, descriptor: StateDescriptor, fn: Callable[[Any, Any], None]) -> None:
        """Call ``fn(key, state)`` for every key of this subtask that has a value in the
        keyed state ``descriptor``, with ``state`` scoped to that key. ``fn`` is a plain
        (not async) function; it may read, update or clear ``state``."""
        ...


# -- the functions users write --------------------------------------------------------------


class BroadcastProcessFunction(Function):
    """Connects a non-keyed stream to a broadcast stream.

    Any method may be ``async def``. Lifecycle as for every function (see
    :mod:`streamflow.api.functions`); a subclass may also be a CheckpointedFunction.
    """

    def process_element(self, value: Any, ctx: ReadOnlyBroadcastContext, out: Collector) -> Any:
        """A record of the non-broadcast stream; broadcast state is read only here."""
        raise NotImplementedError

    def process_broadcast_element(self, value: Any, ctx: BroadcastContext, out: Collector) -> Any:
        """A broadcast element; every subtask gets each one and may update the state."""
        raise NotImplementedError


class KeyedBroadcastProcessFunction(Function):
    """Connects a keyed stream to a broadcast stream: keyed state and timers on the
    element side, broadcast state on both sides (read only on the element side)."""

    def process_element(self, value: Any, ctx: KeyedReadOnlyBroadcastContext, out: Collector) -> Any:
        """A record of the keyed stream, with its key's state in scope."""
        raise NotImplementedError

    def process_broadcast_element(self, value: Any, ctx: KeyedBroadcastContext, out: Collector) -> Any:
        """A broadcast element; every subtask gets each one and may update the state."""
        raise NotImplementedError

    def on_timer(self, timestamp: float, ctx: KeyedReadOnlyBroadcastContext, out: Collector) -> Any:
        """A timer registered for ``ctx.get_current_key()`` fired."""
        return None


# -- the streams ----------------------------------------------------------------------------


class BroadcastStream:
    """A stream whose elements reach every subtask of the operator it is connected to,
    together with the broadcast state that operator keeps. Made by
    ``DataStream.broadcast(descriptor, ...)``; its one use is ``other.connect(this)``."""

    def __init__(
        self, env: StreamEnvironment, node_ids: tuple[int, ...], descriptors: tuple[MapStateDescriptor[Any, Any], ...]
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
        self._env = env
        self._node_ids = node_ids
        self.descriptors = descriptors

    def __repr__(self) -> str:
        return f"BroadcastStream(states={[d.name for d in self.descriptors]!r})"


class BroadcastConnectedStream:
    """A stream connected to a broadcast stream; ``process`` adds the operator that reads
    both. Made by ``DataStream.connect`` or ``KeyedStream.connect``."""

    def __init__(self, main: DataStream, broadcast: BroadcastStream) -> None:
        self._main = main
        self._broadcast = broadcast
        self._keyed = main._key_selector is not None

    def process(self, fn: BroadcastProcessFunction | KeyedBroadcastProcessFunction) -> DataStream:
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
