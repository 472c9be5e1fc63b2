"""WindowConfig: everything a window operator is, checked when the pipeline is built.

The window API (``stream.window(assigner).trigger(...).allowed_lateness(...).reduce(fn)``)
collects its choices into one frozen :class:`WindowConfig`; building it checks the
combination and refuses, with a :class:`ConfigError` naming the operator and what to
change, what cannot work:

- a trigger that cannot merge on merging (session) windows (Flink refuses it too);
- an aggregate function without ``merge`` on session windows;
- a negative allowed lateness, or a lateness or late-data side output on
  processing-time windows, where nothing is ever late (Flink ignores them silently);
- a missing window function, or reduce and aggregate together.

An event-time trigger on global windows is allowed (it never fires), as in Flink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from streamflow.api.side_outputs import OutputTag
from streamflow.errors import ConfigError
from streamflow.eventtime.durations import non_negative_seconds
from streamflow.windowing.assigners import MergingWindowAssigner, WindowAssigner
from streamflow.windowing.evictors import Evictor
from streamflow.windowing.functions import ProcessWindowFunction, has_merge
from streamflow.windowing.triggers import Trigger
from streamflow.eventtime.windows import Window

__all__ = ["WindowConfig"]

_TRIGGER_METHODS = ("on_element", "on_event_time", "on_processing_time", "can_merge", "on_merge", "clear")


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowConfig:
    """A window operator's assigner, trigger, evictor, lateness and functions.

    Attributes:
        operator: the operator's name, for messages.
        assigner: which windows an element belongs to.
        trigger: when windows fire; ``None`` takes the assigner's default.
        evictor: drops elements before/after the function runs, or ``None``.
        allowed_lateness: seconds after a window's end during which late elements still
            update it (a late firing); event time only.
        late_data_tag: the side output for elements too late for every window, or
            ``None`` to drop them (counted).
        reduce_fn: ``fn(a, b) -> c``, incremental.
        aggregate_fn: an AggregateFunction, incremental.
        process_fn: a ProcessWindowFunction, alone or after reduce/aggregate.
    """

    operator: str = "window"
    assigner: WindowAssigner
    trigger: Trigger | None = None
    evictor: Evictor | None = None
    allowed_lateness: float = 0.0
    late_data_tag: OutputTag | None = None
    reduce_fn: Callable[[Any, Any], Any] | None = None
    aggregate_fn: Any = None
    process_fn: ProcessWindowFunction | None = None
    is_merging: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"window operator {self.operator!r}"
        assigner = self.assigner
        if not isinstance(assigner, WindowAssigner):
            raise ConfigError(
                f"{where}: window() needs a WindowAssigner (e.g. TumblingEventTimeWindows.of(60.0)), got {assigner!r}"
            )
        merging = isinstance(assigner, MergingWindowAssigner)
        object.__setattr__(self, "is_merging", merging)
        trigger = assigner.default_trigger() if self.trigger is None else self.trigger
        missing = [m for m in _TRIGGER_METHODS if not callable(getattr(trigger, m, None))]
        if missing:
            raise ConfigError(
                f"{where}: trigger {trigger!r} lacks {', '.join(missing)}; subclass streamflow.windowing.Trigger"
            )
        if merging and not trigger.can_merge():
            raise ConfigError(
                f"{where}: {assigner!r} merges windows, but trigger {trigger!r} cannot merge (can_merge() is False); "
                "use a trigger that supports merging (EventTimeTrigger, ProcessingTimeTrigger, CountTrigger, the "
                "continuous triggers) or implement can_merge() and on_merge() in yours"
            )
        object.__setattr__(self, "trigger", trigger)
        if self.evictor is not None and not (
            callable(getattr(self.evictor, "evict_before", None)) and callable(getattr(self.evictor, "evict_after", None))
        ):
            raise ConfigError(
                f"{where}: evictor {self.evictor!r} lacks evict_before/evict_after; subclass streamflow.windowing.Evictor"
            )
        lateness = non_negative_seconds(
            self.allowed_lateness, f"{where}: allowed_lateness", "pass seconds >= 0, e.g. allowed_lateness(60.0)"
        )
        object.__setattr__(self, "allowed_lateness", lateness)
        if not assigner.is_event_time and lateness > 0:
            raise ConfigError(
                f"{where}: allowed_lateness({lateness!r}) has no effect on processing-time windows "
                f"({assigner!r}): nothing is late in processing time; remove allowed_lateness"
            )
        if self.late_data_tag is not None:
            if not isinstance(self.late_data_tag, OutputTag):
                raise ConfigError(
                    f"{where}: side_output_late_data needs an OutputTag, got {self.late_data_tag!r}; "
                    "e.g. OutputTag('late')"
                )
            if not assigner.is_event_time:
                raise ConfigError(
                    f"{where}: side_output_late_data({self.late_data_tag!r}) never receives anything on "
                    f"processing-time windows ({assigner!r}); remove it or use event-time windows"
                )
        self._check_functions(where, merging)

    def _check_functions(self, where: str, merging: bool) -> None:
        reduce_fn, aggregate_fn, process_fn = self.reduce_fn, self.aggregate_fn, self.process_fn
        if reduce_fn is not None and aggregate_fn is not None:
            raise ConfigError(f"{where}: give reduce or aggregate, not both")
        if reduce_fn is None and aggregate_fn is None and process_fn is None:
            raise ConfigError(f"{where}: the window needs a function: reduce(fn), aggregate(fn) or process(fn)")
        if reduce_fn is not None and not callable(reduce_fn):
            raise ConfigError(f"{where}: reduce needs fn(a, b) -> c, got {reduce_fn!r}")
        if aggregate_fn is not None:
            lacking = [m for m in ("create_accumulator", "add", "get_result") if not callable(getattr(aggregate_fn, m, None))]
            if lacking:
                raise ConfigError(
                    f"{where}: aggregate function {aggregate_fn!r} lacks {', '.join(lacking)}; "
                    "subclass streamflow.windowing.AggregateFunction"
                )
            if merging and not has_merge(aggregate_fn):
                raise ConfigError(
                    f"{where}: {self.assigner!r} merges windows, so aggregate function {aggregate_fn!r} needs "
                    "merge(a, b) to combine the accumulators of merged sessions; implement merge"
                )
        if process_fn is not None and not callable(getattr(process_fn, "process", None)):
            raise ConfigError(
                f"{where}: process needs a ProcessWindowFunction (process(key, context, elements, out)), "
                f"got {process_fn!r}"
            )

    def cleanup_time(self, window: Window) -> float:
        """When a window's state goes: its end plus the allowed lateness (event time), its
        end (processing time); never for a global window."""
        end = window.max_timestamp
        return end + self.allowed_lateness if self.assigner.is_event_time else end
