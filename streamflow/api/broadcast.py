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

This module holds what the user writes: the two function bases and the contexts they
are handed. The streams (``BroadcastStream``, ``BroadcastConnectedStream``) are in
:mod:`streamflow.datastream.broadcast`, the operator in :mod:`streamflow.runtime`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

from streamflow.api.functions import Collector, Function, TimerService
from streamflow.state.descriptors import MapStateDescriptor, StateDescriptor

if TYPE_CHECKING:
    from streamflow.state.broadcast import BroadcastState, ReadOnlyBroadcastState

__all__ = [
    "BroadcastContext",
    "BroadcastProcessFunction",
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
