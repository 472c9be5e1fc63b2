"""Windowed streams: ``key_by(...).window(assigner)``, ``window_all``, ``count_window``.

A :class:`WindowedStream` collects the window's configuration (trigger, evictor,
allowed lateness, late-data side output) and ends with its function: ``reduce``,
``aggregate`` (both incremental, optionally with a ProcessWindowFunction that labels the
one result with its window), or ``process`` (all elements at once). That last call
builds the :class:`~streamflow.windowing.WindowConfig`, which checks the whole
combination and refuses what cannot work with a ConfigError naming the operator and what
to change, before anything is added to the graph; then the window operator is added by
the stream the window came from (it knows the graph; this module does not import it).

The type parameter ``S`` is what the last call returns: the ``DataStream`` of results.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Generic, Self, TypeVar

from streamflow.api.side_outputs import OutputTag
from streamflow.errors import ConfigError
from streamflow.windowing.assigners import WindowAssigner
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.count_windows import count_window
from streamflow.windowing.evictors import Evictor
from streamflow.windowing.field_aggregates import Count, Field, FieldAggregate, Max, MaxBy, Mean, Min, MinBy, Sum
from streamflow.windowing.functions import AggregateFunction, ProcessWindowFunction
from streamflow.windowing.triggers import Trigger

__all__ = ["WindowedStream"]

T = TypeVar("T")
S = TypeVar("S")

AddWindow = Callable[[WindowConfig, str], S]
"""Adds the window operator ``config`` named ``name`` to the graph; returns its stream."""


class WindowedStream(Generic[T, S]):
    """A keyed stream (or, from ``window_all``, a whole stream) cut into windows.

    Configure with the methods that return the windowed stream itself, then end with
    ``reduce``, ``aggregate`` or ``process``::

        (events.key_by(lambda e: e["user"])
            .window(TumblingEventTimeWindows.of(60.0))
            .allowed_lateness(30.0)
            .side_output_late_data(LATE)
            .aggregate(CountAndSum(), window_function=LabelWithMinute()))
    """

    def __init__(self, add: AddWindow[S], assigner: WindowAssigner, *, kind: str = "window") -> None:
        if not isinstance(assigner, WindowAssigner):
            raise ConfigError(
                f"{kind}() needs a WindowAssigner (e.g. TumblingEventTimeWindows.of(60.0), "
                f"EventTimeSessionWindows.with_gap(1800.0)), got {assigner!r}"
            )
        self._add = add
        self._kind = kind
        self._assigner = assigner
        self._trigger: Trigger | None = None
        self._evictor: Evictor | None = None
        self._lateness: float | timedelta = 0.0
        self._late_tag: OutputTag | None = None

    @classmethod
    def of_counts(cls, add: AddWindow[S], size: int, slide: int | None) -> WindowedStream[T, S]:
        """Count windows: every ``size`` elements of a key (sliding by ``slide``)."""
        parts = count_window(size, slide)
        windowed: WindowedStream[T, S] = cls(add, parts.assigner, kind="count_window")
        windowed._trigger = parts.trigger
        windowed._evictor = parts.evictor
        return windowed

    # -- configuration ----------------------------------------------------------------

    def trigger(self, trigger: Trigger) -> Self:
        """When windows fire (default: the assigner's, e.g. at the end of an event-time window)."""
        self._trigger = trigger
        return self

    def evictor(self, evictor: Evictor) -> Self:
        """Drop elements before or after the window function runs (CountEvictor, TimeEvictor)."""
        self._evictor = evictor
        return self

    def allowed_lateness(self, lateness: float | timedelta) -> Self:
        """Keep a window's state this many seconds after its end: a late element within it
        fires the window again with the updated result (event-time windows only)."""
        self._lateness = lateness
        return self

    def side_output_late_data(self, tag: OutputTag) -> Self:
        """Send elements too late for every window to the side output ``tag`` (read it with
        ``get_side_output(tag)`` on the result) instead of dropping them."""
        self._late_tag = tag
        return self

    # -- the window function ----------------------------------------------------------

    def reduce(self, fn: Callable[[T, T], T], window_function: ProcessWindowFunction | None = None) -> S:
        """``fn(a, b)`` folds each window's elements into one value as they arrive; with
        ``window_function`` that value goes through it (with the window) when it fires."""
        return self._build("reduce", reduce_fn=fn, process_fn=window_function)

    def aggregate(
        self, fn: AggregateFunction[T, Any, Any], window_function: ProcessWindowFunction | None = None
    ) -> S:
        """An AggregateFunction folds each window's elements into an accumulator as they
        arrive (session windows need its ``merge``); with ``window_function`` the result
        goes through it (with the window) when it fires."""
        return self._build("aggregate", aggregate_fn=fn, process_fn=window_function)

    # -- built-in aggregations (see streamflow.windowing.field_aggregates) --------------

    def sum(self, field: Field) -> S:
        """The sum of ``field`` per window: an int for ints, a float once a float is in.
        A field is an item position (int) or a dict key, else attribute name (str)."""
        return self._field_aggregate(Sum, field)

    def min(self, field: Field) -> S:
        """The least value of ``field`` per window."""
        return self._field_aggregate(Min, field)

    def max(self, field: Field) -> S:
        """The greatest value of ``field`` per window."""
        return self._field_aggregate(Max, field)

    def min_by(self, field: Field) -> S:
        """The record with the least value of ``field`` per window (the first on ties)."""
        return self._field_aggregate(MinBy, field)

    def max_by(self, field: Field) -> S:
        """The record with the greatest value of ``field`` per window (the first on ties)."""
        return self._field_aggregate(MaxBy, field)

    def mean(self, field: Field) -> S:
        """The arithmetic mean of ``field`` per window."""
        return self._field_aggregate(Mean, field)

    def count(self) -> S:
        """The number of records per window, an int."""
        return self._build("count", aggregate_fn=Count())

    def _field_aggregate(self, kind: type[FieldAggregate], field: Field) -> S:
        try:
            aggregate = kind(field)
        except ConfigError as exc:
            raise ConfigError(f"window operator {self._name(kind.name)!r}: {exc}") from None
        return self._build(kind.name, aggregate_fn=aggregate)

    def process(self, fn: ProcessWindowFunction) -> S:
        """``fn.process(key, context, elements, out)`` with all of a window's elements when
        it fires (the window keeps them all until then)."""
        return self._build("process", process_fn=fn)

    def _build(
        self,
        function: str,
        *,
        reduce_fn: Callable[[Any, Any], Any] | None = None,
        aggregate_fn: Any = None,
        process_fn: ProcessWindowFunction | None = None,
    ) -> S:
        name = self._name(function)
        config = WindowConfig(
            operator=name,
            assigner=self._assigner,
            trigger=self._trigger,
            evictor=self._evictor,
            allowed_lateness=self._lateness,  # type: ignore[arg-type]  # checked (and converted) by WindowConfig
            late_data_tag=self._late_tag,
            reduce_fn=reduce_fn,
            aggregate_fn=aggregate_fn,
            process_fn=process_fn,
        )
        return self._add(config, name)

    def _name(self, function: str) -> str:
        return f"{self._kind.replace('_', '-')}-{function.replace('_', '-')}"
