"""The window operator's logic, pure and synchronous (Flink's WindowOperator).

The runtime owns the I/O: it sets the keyed backend's current key, calls one of these
methods, forwards what :meth:`WindowOperatorLogic.take_output` returns, and counts
:attr:`late_records_dropped`. Calls, for one operator subtask:

1. ``process_element(key, value, timestamp)`` for each record (``timestamp`` is
   ``None`` without event time). The element goes into every window the assigner gives
   that is not already over (its cleanup time passed); the trigger decides whether a
   window fires now. An element that no window takes because its timestamp plus the
   allowed lateness is behind the watermark is *late*: it goes to the late-data side
   output if there is one, otherwise it is dropped and counted. The returned
   :class:`ElementFate` says which.
2. ``advance_watermark(watermark)``, then ``on_event_time(key, window, time)`` for every
   event-time timer due (earliest first, including timers registered while firing), and
   ``on_processing_time(key, window, time)`` for processing-time timers as the clock
   passes them.
3. Timers are the trigger's (window ends, early firings) and the logic's own cleanup
   timer per window at ``max_timestamp + allowed_lateness``; at the cleanup timer the
   window's contents, trigger state and per-window state are removed. Until then a late
   element within the lateness updates the window and fires it again with all its
   contents (a late firing that updates the result).

Results carry the window's ``max_timestamp`` as timestamp. Everything the logic knows
lives in the :class:`~streamflow.windowing.store.WindowStateStore` and the timer
service, so a checkpoint of those is a checkpoint of the windows.

User code (assigner gap functions, reduce, aggregate, process, triggers) may raise; the
exception leaves the call and the runtime applies the operator's error policy. The new
contents of every window of an element are computed before any is stored (for
sessions: before the key's session set, its timers and triggers change), so an element
whose reduce or aggregate raises changes no window (unless the aggregate function
changed an accumulator in place before raising).
"""

from __future__ import annotations

import enum
from typing import Any, Final, Protocol, Sequence, cast

from streamflow.windowing.assigners import MergingWindowAssigner
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.contents import (
    AggregateContents,
    Contents,
    EvictingContents,
    ListContents,
    ReduceContents,
)
from streamflow.windowing.contexts import WindowFunctionContext, WindowTriggerContext
from streamflow.windowing.emission import EmittingLogic, WindowEmission
from streamflow.windowing.evictors import TimestampedValue
from streamflow.windowing.merging import Merge, MergingWindowSet
from streamflow.windowing.store import ABSENT, WindowStateStore, WindowTimerService
from streamflow.windowing.triggers import TriggerResult
from streamflow.eventtime.windows import TimeWindow, Window

__all__ = ["CONTENTS", "MERGING_WINDOWS", "ElementFate", "WindowOperatorLogic"]

CONTENTS: Final = "contents"
MERGING_WINDOWS: Final = "merging-windows"
_INF: Final = float("inf")

_SessionStep = tuple[TimeWindow, list[Merge], list[tuple[TimeWindow, Any]], TimeWindow | None]
"""One window of an element's session plan: where it went, the merges, the contents to
write (ABSENT: remove), and its state window (None: too late)."""


class ElementFate(enum.Enum):
    """What became of an element: in a window, late (dropped and counted, or sent to the
    late-data side output), or in no window at all (a gap between sliding windows whose
    slide exceeds their size)."""

    ADDED = "added"
    LATE_DROPPED = "late-dropped"
    LATE_SIDE_OUTPUT = "late-side-output"
    IN_NO_WINDOW = "in-no-window"


class Clock(Protocol):
    def now(self) -> float: ...


def _contents_for(config: WindowConfig) -> Contents:
    if config.reduce_fn is not None:
        inner: Contents = ReduceContents(config.reduce_fn)
    elif config.aggregate_fn is not None:
        inner = AggregateContents(config.aggregate_fn)
    else:
        inner = ListContents()
    return EvictingContents(inner) if config.evictor is not None else inner


class WindowOperatorLogic(EmittingLogic):
    """Windows of one operator subtask over a state store and a timer service."""

    def __init__(
        self, config: WindowConfig, store: WindowStateStore, timers: WindowTimerService, clock: Clock
    ) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self.timers = timers
        self.clock = clock
        self._assigner = config.assigner
        self._trigger: Any = config.trigger
        self._contents = _contents_for(config)
        self._event_time = config.assigner.is_event_time
        self._lateness = config.allowed_lateness
        self._sessions_of: dict[Any, tuple[Any, MergingWindowSet]] = {}
        self._trigger_ctx = WindowTriggerContext(self)
        self._function_ctx = WindowFunctionContext(self)

    # -- inputs ------------------------------------------------------------------------

    def current_processing_time(self) -> float:
        """The assigner's context: processing-time windows place elements by it."""
        return self.clock.now()

    def process_element(self, key: Any, value: Any, timestamp: float | None) -> ElementFate:
        windows = self._assigner.assign_windows(value, timestamp, self)
        if self.config.is_merging:
            added = self._add_to_sessions(key, value, timestamp, cast("Sequence[TimeWindow]", windows))
        else:
            added = self._add_to_windows(key, value, timestamp, windows)
        if added:
            return ElementFate.ADDED
        if self._event_time and timestamp is not None and timestamp + self._lateness <= self.watermark:
            return self._late(value, timestamp)
        return ElementFate.IN_NO_WINDOW

    def on_event_time(self, key: Any, window: Window, time: float) -> None:
        self._on_timer(key, window, time, self._trigger.on_event_time, self._event_time)

    def on_processing_time(self, key: Any, window: Window, time: float) -> None:
        self._on_timer(key, window, time, self._trigger.on_processing_time, not self._event_time)

    # -- elements ----------------------------------------------------------------------

    def _add_to_windows(self, key: Any, value: Any, timestamp: float | None, windows: Any) -> bool:
        store, contents = self.store, self._contents
        updates = []
        for window in windows:
            if not self._is_late(window):
                updates.append((window, contents.add(store.get(key, window, CONTENTS), value, timestamp)))
        for window, stored in updates:
            store.put(key, window, CONTENTS, stored)
            result = self._trigger.on_element(value, timestamp, window, self._trigger_ctx.at(key, window))
            self._apply(key, window, window, result)
            self._register_cleanup(key, window)
        return bool(updates)

    def _add_to_sessions(
        self, key: Any, value: Any, timestamp: float | None, windows: Sequence[TimeWindow]
    ) -> bool:
        """Plan on a copy of the key's sessions, then apply: the plan runs the user's
        reduce or aggregate (merging contents, adding the element) and changes nothing
        stored, so an element whose function raises leaves the sessions, their timers
        and contents as they were. Triggers run only in the apply step."""
        sessions = self._sessions(key).copy()
        steps = self._plan_sessions(key, value, timestamp, windows, sessions)
        store = self.store
        try:
            for actual, merges, writes, state_window in steps:
                for merge in merges:
                    self._merge_triggers(key, merge)
                for namespace, stored in writes:
                    if stored is ABSENT:
                        store.remove(key, namespace, CONTENTS)
                    else:
                        store.put(key, namespace, CONTENTS, stored)
                if state_window is None:
                    continue  # too late: retired in the plan
                result = self._trigger.on_element(value, timestamp, actual, self._trigger_ctx.at(key, actual))
                self._apply(key, actual, state_window, result)
                self._register_cleanup(key, actual)
        finally:
            self._persist(key, sessions)  # merges already applied to the store must stay mapped
        return any(state_window is not None for *_, state_window in steps)

    def _plan_sessions(
        self, key: Any, value: Any, timestamp: float | None, windows: Sequence[TimeWindow], sessions: MergingWindowSet
    ) -> list[_SessionStep]:
        """One step per window, computed on ``sessions`` (a copy) without storing.
        Merging assigners give one window per element, so no firing of an earlier
        window can change contents this plan has read."""
        store, contents = self.store, self._contents
        planned: dict[TimeWindow, Any] = {}

        def current(namespace: TimeWindow) -> Any:
            return planned[namespace] if namespace in planned else store.get(key, namespace, CONTENTS)

        steps: list[_SessionStep] = []
        for window in windows:
            actual, merges = sessions.add_window(window)
            writes: list[tuple[TimeWindow, Any]] = []
            for merge in merges:
                if not merge.merged_state_windows:
                    continue
                sources = (merge.state_window, *merge.merged_state_windows)
                parts = [stored for stored in map(current, sources) if stored is not ABSENT]
                for source in merge.merged_state_windows:
                    writes.append((source, ABSENT))
                    planned[source] = ABSENT
                if parts:
                    planned[merge.state_window] = merged = contents.merge(parts)
                    writes.append((merge.state_window, merged))
            if self._is_late(actual):
                sessions.retire_window(actual)
                steps.append((actual, merges, writes, None))
                continue
            state_window = cast(TimeWindow, sessions.state_window(actual))
            planned[state_window] = stored = contents.add(current(state_window), value, timestamp)
            writes.append((state_window, stored))
            steps.append((actual, merges, writes, state_window))
        return steps

    def _merge_triggers(self, key: Any, merge: Merge) -> None:
        """Apply one session merge to the triggers: the trigger learns of it, the merged
        windows' trigger state and cleanup timers go (contents are the plan's)."""
        ctx = self._trigger_ctx.at(key, merge.result)
        ctx.merged = merge.merged
        try:
            self._trigger.on_merge(merge.result, ctx)
        finally:
            ctx.merged = ()
        for window in merge.merged:
            self._trigger.clear(window, self._trigger_ctx.at(key, window))
            self._delete_cleanup(key, window)

    def _late(self, value: Any, timestamp: float) -> ElementFate:
        tag = self.config.late_data_tag
        if tag is not None:
            self.output.append(WindowEmission(value, timestamp, tag))
            return ElementFate.LATE_SIDE_OUTPUT
        self.late_records_dropped += 1
        return ElementFate.LATE_DROPPED

    # -- timers ------------------------------------------------------------------------

    def _on_timer(self, key: Any, window: Window, time: float, ask: Any, is_cleanup_domain: bool) -> None:
        sessions = None
        state_window: Window | None = window
        if self.config.is_merging:
            sessions = self._sessions(key)
            state_window = sessions.state_window(cast(TimeWindow, window))
            if state_window is None:
                return  # merged into another window: that one has its own timers
        result = ask(time, window, self._trigger_ctx.at(key, window))
        self._apply(key, window, state_window, result)
        if is_cleanup_domain and time == self.config.cleanup_time(window):
            self._clear_window(key, window, state_window, sessions)
        if sessions is not None:
            self._persist(key, sessions)

    def _register_cleanup(self, key: Any, window: Window) -> None:
        time = self.config.cleanup_time(window)
        if time != _INF:
            timers = self.timers
            register = timers.register_event_time_timer if self._event_time else timers.register_processing_time_timer
            register(key, window, time)

    def _delete_cleanup(self, key: Any, window: Window) -> None:
        time = self.config.cleanup_time(window)
        if time != _INF:
            timers = self.timers
            delete = timers.delete_event_time_timer if self._event_time else timers.delete_processing_time_timer
            delete(key, window, time)

    def _is_late(self, window: Window) -> bool:
        return self._event_time and self.config.cleanup_time(window) <= self.watermark

    def _clear_window(self, key: Any, window: Window, state_window: Any, sessions: MergingWindowSet | None) -> None:
        """The window is over: its contents, trigger state and per-window state go."""
        process_fn = self.config.process_fn
        if process_fn is not None:
            process_fn.clear(self._function_ctx.at(key, window))
        self._trigger.clear(window, self._trigger_ctx.at(key, window))
        self.store.remove_namespace(key, window)
        if state_window != window:
            self.store.remove_namespace(key, state_window)
        if sessions is not None:
            sessions.retire_window(cast(TimeWindow, window))

    # -- firing ------------------------------------------------------------------------

    def _apply(self, key: Any, window: Window, state_window: Any, result: TriggerResult) -> None:
        if result.is_fire:
            self._fire(key, window, state_window)
        if result.is_purge:
            self.store.remove(key, state_window, CONTENTS)

    def _fire(self, key: Any, window: Window, state_window: Any) -> None:
        stored = self.store.get(key, state_window, CONTENTS)
        if stored is ABSENT:
            return
        evictor = self.config.evictor
        if evictor is None:
            self._evaluate(key, window, self._contents.results(stored))
            return
        ctx = self._function_ctx.at(key, window)
        kept = evictor.evict_before([TimestampedValue(v, t) for v, t in stored], window, ctx)
        if kept:
            self._evaluate(key, window, self._contents.fold([e.value for e in kept]))
        kept = evictor.evict_after(kept, window, ctx)
        if kept:
            self.store.put(key, state_window, CONTENTS, [(e.value, e.timestamp) for e in kept])
        else:
            self.store.remove(key, state_window, CONTENTS)

    def _evaluate(self, key: Any, window: Window, results: list[Any]) -> None:
        process_fn = self.config.process_fn
        if process_fn is None:
            timestamp = window.max_timestamp
            self.output.extend(WindowEmission(result, timestamp) for result in results)
            return
        ctx = self._function_ctx.at(key, window)
        process_fn.process(key, ctx, results, ctx.out)

    # -- sessions ----------------------------------------------------------------------

    def _sessions(self, key: Any) -> MergingWindowSet:
        """The key's session windows. The stored form is plain data; the set built from it
        is kept while the store still returns that very object (no one else writes it),
        so an element does not rebuild its key's sessions from floats."""
        raw = self.store.get(key, None, MERGING_WINDOWS)
        if raw is ABSENT:
            self._sessions_of.pop(key, None)
            return MergingWindowSet(cast(MergingWindowAssigner, self._assigner))
        cached = self._sessions_of.get(key)
        if cached is not None and cached[0] is raw:
            return cached[1]
        sessions = MergingWindowSet.restore(cast(MergingWindowAssigner, self._assigner), raw)
        self._sessions_of[key] = (raw, sessions)
        return sessions

    def _persist(self, key: Any, sessions: MergingWindowSet) -> None:
        if not sessions.changed:
            return
        sessions.mark_persisted()
        if len(sessions):
            raw = sessions.snapshot()
            self.store.put(key, None, MERGING_WINDOWS, raw)
            self._sessions_of[key] = (raw, sessions)
        else:
            self.store.remove(key, None, MERGING_WINDOWS)
            self._sessions_of.pop(key, None)
