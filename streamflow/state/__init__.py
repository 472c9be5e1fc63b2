"""State: descriptors, keyed and operator state, TTL, serializers and the state backends.

User functions build descriptors (``ValueStateDescriptor("count", default=0)``) and ask
the runtime's context for handles; the runtime owns the backend
(:class:`HashMapStateBackend` by default, :class:`EmbeddedRocksDBStateBackend` for state
larger than memory) and the :class:`OperatorStateStore` (operator
list state and broadcast state). A descriptor's ``serializer=`` says how its values go
into snapshots: :class:`PickleSerializer` (the default, exact for every picklable
value), :class:`JsonSerializer` (portable, refuses what JSON cannot round-trip) or any
:class:`StateSerializer` of your own.
"""

from __future__ import annotations

from streamflow.state.backend import KeyedStateBackend, StateBackend
from streamflow.state.broadcast import BroadcastState, ReadOnlyBroadcastState, redistribute_broadcast
from streamflow.state.descriptors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamflow.state.heap import HashMapStateBackend, HeapKeyedStateBackend
from streamflow.state.keyed import AggregatingState, KeyedState, ListState, MapState, ReducingState, ValueState
from streamflow.state.operator import (
    OperatorListState,
    OperatorStateMode,
    OperatorStateStore,
    redistribute_split,
    restore_operator_state,
)
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend
from streamflow.state.serializers import JsonSerializer, PickleSerializer, StateSerializer
from streamflow.state.ttl import StateTtlConfig, TtlUpdateType, TtlVisibility

__all__ = [
    "AggregateFunction",
    "AggregatingState",
    "AggregatingStateDescriptor",
    "BroadcastState",
    "EmbeddedRocksDBStateBackend",
    "HashMapStateBackend",
    "HeapKeyedStateBackend",
    "JsonSerializer",
    "KeyedState",
    "KeyedStateBackend",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "OperatorListState",
    "OperatorStateMode",
    "OperatorStateStore",
    "PickleSerializer",
    "ReadOnlyBroadcastState",
    "ReducingState",
    "ReducingStateDescriptor",
    "StateBackend",
    "StateDescriptor",
    "StateSerializer",
    "StateTtlConfig",
    "TtlUpdateType",
    "TtlVisibility",
    "ValueState",
    "ValueStateDescriptor",
    "redistribute_broadcast",
    "redistribute_split",
    "restore_operator_state",
]
