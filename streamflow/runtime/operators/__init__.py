"""The operators a task chains together: the contract and its kinds.

:mod:`.base` holds the contract every operator keeps (its lifecycle is documented
there); :mod:`.function`, :mod:`.async_io`, :mod:`.broadcast`, :mod:`.timestamps`,
:mod:`.window`, :mod:`.interval_join` and :mod:`.sink` the kinds; :mod:`.contexts` what
user functions are handed. :func:`make_operator` picks the kind for a graph node.
"""

from __future__ import annotations

from streamflow.graph.spec import OperatorKind, OperatorSpec
from streamflow.runtime.operators.async_io import AsyncOperator
from streamflow.runtime.operators.base import StreamOperator
from streamflow.runtime.operators.broadcast import BroadcastProcessOperator
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.operators.function import FunctionOperator
from streamflow.runtime.operators.sink import SinkOperator
from streamflow.runtime.operators.interval_join import IntervalJoinOperator
from streamflow.runtime.operators.timestamps import TimestampsOperator
from streamflow.runtime.operators.window import WindowOperator

__all__ = ["make_operator"]


def make_operator(spec: OperatorSpec, ctx: OperatorContext) -> StreamOperator:
    if spec.kind is OperatorKind.SINK:
        return SinkOperator(spec, ctx)
    if spec.kind is OperatorKind.SOURCE:
        raise ValueError("sources are run by SourceTask, not chained as operators")
    if spec.kind is OperatorKind.BROADCAST_PROCESS:
        return BroadcastProcessOperator(spec, ctx)
    if spec.kind is OperatorKind.TIMESTAMPS:
        return TimestampsOperator(spec, ctx)
    if spec.kind is OperatorKind.WINDOW:
        return WindowOperator(spec, ctx)
    if spec.kind is OperatorKind.INTERVAL_JOIN:
        return IntervalJoinOperator(spec, ctx)
    if spec.kind is OperatorKind.ASYNC:
        return AsyncOperator(spec, ctx)
    return FunctionOperator(spec, ctx)
