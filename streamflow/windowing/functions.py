"""The functions a window runs: reduce, aggregate, process, and their context.

- **reduce**: a plain ``fn(a, b) -> c`` over the window's elements, applied as they
  arrive (one value kept per window).
- **aggregate**: an :class:`AggregateFunction`, also incremental, whose accumulator may
  differ from the elements and the result; session windows need its ``merge``.
- **process**: a :class:`ProcessWindowFunction` gets all elements of a window at once,
  with a :class:`ProcessWindowContext` (the window, the current watermark, per-window
  and per-key state, side outputs).
- **incremental + process**: a reduce or aggregate with a ProcessWindowFunction; the
  function gets the one pre-aggregated value as its elements, plus the context (the
  window's bounds, say) - the cheap way to label an aggregate with its window.

Methods may be plain functions only: the window logic runs synchronously.
"""

from __future__ import annotations

from typing import Any, Generic, Iterable, Protocol, TypeVar

from streamflow.api.side_outputs import OutputTag
from streamflow.state.descriptors import StateDescriptor
from streamflow.eventtime.windows import Window

__all__ = ["AggregateFunction", "Collector", "ProcessWindowContext", "ProcessWindowFunction", "has_merge"]

IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


class AggregateFunction(Generic[IN, ACC, OUT]):
    """Folds elements into an accumulator, one at a time.

    ``create_accumulator`` makes an empty one, ``add`` folds an element in and returns the
    accumulator, ``get_result`` reads the result out, ``merge`` combines two accumulators
    (required for session windows, whose windows merge). Accumulators are window state:
    they are checkpointed, so keep them plain data. Any object with these methods serves;
    subclassing is optional.
    """

    def create_accumulator(self) -> ACC:
        raise NotImplementedError

    def add(self, value: IN, accumulator: ACC) -> ACC:
        raise NotImplementedError

    def get_result(self, accumulator: ACC) -> OUT:
        raise NotImplementedError

    def merge(self, a: ACC, b: ACC) -> ACC:
        raise NotImplementedError(f"{type(self).__name__} does not implement merge(a, b)")


def has_merge(fn: Any) -> bool:
    """Whether ``fn`` really implements ``merge`` (not just the base class's refusal)."""
    merge = getattr(fn, "merge", None)
    return callable(merge) and getattr(merge, "__func__", None) is not AggregateFunction.merge


class Collector(Protocol):
    def collect(self, value: Any) -> None: ...


class ProcessWindowContext(Protocol):
    """What a ProcessWindowFunction knows about the window being evaluated."""

    @property
    def window(self) -> Window: ...

    def current_watermark(self) -> float: ...

    def current_processing_time(self) -> float: ...

    def window_state(self, descriptor: StateDescriptor) -> Any:
        """State of this key and window, cleared with the window (not with merging windows)."""

    def global_state(self, descriptor: StateDescriptor) -> Any:
        """State of this key across all its windows."""

    def output(self, tag: OutputTag, value: Any) -> None:
        """Send ``value`` to the side output ``tag``."""


class ProcessWindowFunction:
    """Evaluates a window with all its elements (or the one pre-aggregated value).

    ``process`` runs at every firing of a window; its output takes the window's
    ``max_timestamp`` as timestamp. ``clear`` runs when the window is over (after its
    allowed lateness): clean up per-window state there (the logic also drops it).
    """

    def process(self, key: Any, context: ProcessWindowContext, elements: Iterable[Any], out: Collector) -> None:
        raise NotImplementedError

    def clear(self, context: ProcessWindowContext) -> None:
        return None
