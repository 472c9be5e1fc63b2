"""Runtime of ``connect(broadcast_stream).process(fn)``: a two-input operator.

Input 0 carries the records of the connected stream (keyed or not), input 1 the
broadcast elements, which the broadcast partitioner delivers to every subtask. The task
reads both through one input gate and calls :meth:`BroadcastProcessOperator.process` or
:meth:`~BroadcastProcessOperator.process_broadcast` by the channel's input (see
``StreamOperator.input_handlers``); barriers align across both inputs like any others.

Lifecycle as for every :class:`~streamflow.runtime.operators.function.FunctionOperator` (open ->
process / process_broadcast / on_watermark / timers -> snapshot(n) ->
notify_checkpoint_complete(n) -> close). The broadcast state is operator state in
broadcast mode: it is snapshotted by every subtask and restored by the operator state
store (each new subtask takes one old subtask's copy). Keyed state and timers are those
of the FunctionOperator.

What is not guaranteed: any order between the two inputs. A broadcast element and a
record that were produced in that order upstream may be processed in the other order.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

from streamflow.core.elements import Batch
from streamflow.errors import ConfigError, StateError
from streamflow.runtime.operators.base import Emit, Restored
from streamflow.runtime.operators.contexts import CallContext, OperatorContext
from streamflow.runtime.operators.function import FunctionOperator, carry_along
from streamflow.state.broadcast import BroadcastState, ReadOnlyBroadcastState
from streamflow.state.descriptors import MapStateDescriptor, StateDescriptor
from streamflow.state.keyed import NO_KEY, NO_KEY_GROUP

if TYPE_CHECKING:
    from streamflow.graph.spec import OperatorSpec

__all__ = ["BroadcastProcessOperator"]


def _is_async(method: Any) -> bool:
    return inspect.iscoroutinefunction(method) or inspect.iscoroutinefunction(getattr(method, "__call__", None))


class BroadcastProcessOperator(FunctionOperator):
    """Runs a (Keyed)BroadcastProcessFunction; owns its declared broadcast states."""

    def __init__(self, spec: OperatorSpec, ctx: OperatorContext) -> None:
        super().__init__(spec, ctx)
        self.call = self.fn.process_element
        self.is_async = _is_async(self.call)
        self._broadcast_call = self.fn.process_broadcast_element
        self._broadcast_is_async = _is_async(self._broadcast_call)
        self._declared: dict[str, MapStateDescriptor[Any, Any]] = {d.name: d for d in spec.broadcast_states}
        self.broadcast_states: dict[str, BroadcastState[Any, Any]] = {}
        self.read_only_views: dict[str, ReadOnlyBroadcastState[Any, Any]] = {}
        self._context = ElementContext(self)
        self._broadcast_context = BroadcastSideContext(self)

    def input_handlers(self) -> tuple[Emit, ...]:
        return self.process, self.process_broadcast

    async def _open(self, restored: Restored | None) -> None:
        # The store is replaced by the restored one in FunctionOperator._open; registering
        # every declared state afterwards puts it into every snapshot, even while empty.
        # (FunctionOperator.open wraps this and names the operator on a StateError.)
        await super()._open(restored)
        for name, descriptor in self._declared.items():
            state = self.operator_state.get_broadcast_state(descriptor)
            self.broadcast_states[name] = state
            self.read_only_views[name] = state.read_only()

    def broadcast_state(self, descriptor: Any) -> BroadcastState[Any, Any]:
        """The declared state named by ``descriptor``; StateError for any other."""
        name = descriptor.name if isinstance(descriptor, MapStateDescriptor) else None
        state = self.broadcast_states.get(name) if name is not None else None
        if state is None:
            raise StateError(
                f"operator {self.uid!r} has no broadcast state {descriptor!r}; it declares "
                f"{sorted(self._declared)!r}. Pass the MapStateDescriptor to stream.broadcast(...) and use the "
                "same name here",
                operator=self.uid,
                state=name,
            )
        return state

    # -- the two inputs ---------------------------------------------------------------

    async def process(self, batch: Batch) -> None:
        """Records of the connected stream: ``process_element``, broadcast state read only."""
        await self._process(batch, self.call, self.is_async, self._context, keyed=self.keyed)

    async def process_broadcast(self, batch: Batch) -> None:
        """Broadcast elements: ``process_broadcast_element``, broadcast state read-write.

        There is no current key on this side: keyed state handles fetched in ``open``
        raise StateError until the next record sets a key, instead of silently touching
        the last record's key.
        """
        backend = self.ctx.keyed_backend
        if backend is not None:
            backend.set_current_key(NO_KEY, NO_KEY_GROUP)
        await self._process(batch, self._broadcast_call, self._broadcast_is_async, self._broadcast_context, keyed=False)

    async def _process(self, batch: Batch, call: Any, is_async: bool, context: Any, *, keyed: bool) -> None:
        records = batch.records
        self.metrics.records_in += len(records)
        positions = batch.positions
        timestamps = batch.timestamps
        keys, key_groups = self._keys_of(batch) if keyed else (None, None)
        out: list[Any] = []
        out_positions: list[Any] | None = [] if positions is not None else None
        out_timestamps: list[float | None] | None = [] if timestamps is not None else None
        collector = self._collector
        collector.reset(out)
        side = self.side_buffer
        for index, record in enumerate(records):
            if keys is not None and key_groups is not None:
                self.set_key(keys[index], key_groups[index])
            self.current_timestamp = None if timestamps is None else timestamps[index]
            self.current_position = None if positions is None else positions[index]
            before = len(out)
            side_before = len(side.pending)
            try:
                result = call(record, context, collector)
                if is_async:
                    await result
            except Exception as exc:
                del out[before:]
                collector.forget_from(before)
                side.forget_from(side_before)
                self._on_error(exc, batch, index)
                continue
            carry_along(out_positions, out_timestamps, positions, timestamps, index, len(out) - before)
        if collector.stamped:
            out_timestamps = collector.apply_timestamps(out_timestamps, len(out))
        self.metrics.records_out += len(out)
        if self.errors.pending:
            await self.errors.flush(self.dead_letter)
        if out:
            await self.emit(Batch(out, out_positions, batch.origin, timestamps=out_timestamps))
        if side.pending:
            await side.flush(batch.origin)


class ElementContext(CallContext):
    """``ctx`` of ``process_element`` and ``on_timer``: key, timers, broadcast state read only."""

    __slots__ = ("_owner",)

    def __init__(self, op: BroadcastProcessOperator) -> None:
        super().__init__(op)
        self._owner = op

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> ReadOnlyBroadcastState[Any, Any]:
        return self._owner.read_only_views[self._owner.broadcast_state(descriptor).name]


class BroadcastSideContext:
    """``ctx`` of ``process_broadcast_element``: broadcast state read-write, and (keyed)
    ``apply_to_keyed_state``; no current key, no timers."""

    __slots__ = ("_op",)

    def __init__(self, op: BroadcastProcessOperator) -> None:
        self._op = op

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> BroadcastState[Any, Any]:
        return self._op.broadcast_state(descriptor)

    def current_processing_time(self) -> float:
        return self._op.ctx.clock.now()

    def current_watermark(self) -> float:
        return self._op.watermark

    def apply_to_keyed_state(self, descriptor: StateDescriptor, fn: Callable[[Any, Any], Any]) -> None:
        """``fn(key, state)`` for every key of this subtask with a value in ``descriptor``."""
        op = self._op
        backend = op.ctx.keyed_backend
        if backend is None:
            raise StateError(
                f"apply_to_keyed_state needs keyed state, but the input of operator {op.uid!r} is not keyed; "
                "use a KeyedBroadcastProcessFunction after key_by(...)",
                operator=op.uid,
            )
        state = backend.get_state(descriptor)
        try:
            for key, key_group in backend.keys(descriptor.name):
                backend.set_current_key(key, key_group)
                result = fn(key, state)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise ConfigError(
                        f"apply_to_keyed_state runs {fn!r} synchronously, but it returned an awaitable; "
                        "pass a plain function"
                    )
        finally:
            backend.set_current_key(NO_KEY, NO_KEY_GROUP)
