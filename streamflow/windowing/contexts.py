"""The contexts the window logic hands to triggers, evictors and window functions.

Each is made once per operator and pointed at the key and window of the call before it
is handed out, so calls cost no allocation; a context must not be kept beyond the call.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from streamflow.api.side_outputs import OutputTag
from streamflow.core.clock import Clock
from streamflow.errors import ConfigError, StateError
from streamflow.state.descriptors import StateDescriptor
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.emission import WindowEmission
from streamflow.windowing.scoped_state import merge_scoped, scoped_state
from streamflow.windowing.store import WindowStateStore, WindowTimerService
from streamflow.eventtime.windows import GLOBAL_WINDOW, Window

__all__ = ["WindowFunctionContext", "WindowScope", "WindowTriggerContext"]


class WindowScope(Protocol):
    """What the contexts read from the window logic that makes them
    (:class:`~streamflow.windowing.logic.WindowOperatorLogic`)."""

    config: WindowConfig
    store: WindowStateStore
    timers: WindowTimerService
    clock: Clock
    watermark: float
    output: list[WindowEmission]


TRIGGER_STATE = "trigger:"
WINDOW_STATE = "window:"
GLOBAL_STATE = "global:"


class WindowTriggerContext:
    """The :class:`~streamflow.windowing.triggers.TriggerContext` (and on-merge context) of
    one key and window; timers and state are namespaced by the window."""

    __slots__ = ("_logic", "key", "window", "merged")

    def __init__(self, logic: WindowScope) -> None:
        self._logic = logic
        self.key: Any = None
        self.window: Window = GLOBAL_WINDOW
        self.merged: tuple[Hashable, ...] = ()

    def at(self, key: Any, window: Window) -> WindowTriggerContext:
        self.key = key
        self.window = window
        return self

    def current_processing_time(self) -> float:
        return self._logic.clock.now()

    def current_watermark(self) -> float:
        return self._logic.watermark

    def register_event_time_timer(self, timestamp: float) -> None:
        self._logic.timers.register_event_time_timer(self.key, self.window, timestamp)

    def delete_event_time_timer(self, timestamp: float) -> None:
        self._logic.timers.delete_event_time_timer(self.key, self.window, timestamp)

    def register_processing_time_timer(self, timestamp: float) -> None:
        self._logic.timers.register_processing_time_timer(self.key, self.window, timestamp)

    def delete_processing_time_timer(self, timestamp: float) -> None:
        self._logic.timers.delete_processing_time_timer(self.key, self.window, timestamp)

    def get_partitioned_state(self, descriptor: StateDescriptor) -> Any:
        return scoped_state(descriptor, self._logic.store, self.key, self.window, TRIGGER_STATE)

    def merge_partitioned_state(self, descriptor: StateDescriptor) -> None:
        sources = [w for w in self.merged if w != self.window]
        merge_scoped(descriptor, self._logic.store, self.key, self.window, sources, TRIGGER_STATE)


class _Collector:
    """``out`` of a window function: main output at the window's timestamp."""

    __slots__ = ("_output", "timestamp")

    def __init__(self, output: list[WindowEmission]) -> None:
        self._output = output
        self.timestamp = 0.0

    def collect(self, value: Any) -> None:
        self._output.append(WindowEmission(value, self.timestamp))


class WindowFunctionContext:
    """The :class:`~streamflow.windowing.functions.ProcessWindowContext` of one key and
    window, and the evictor context."""

    __slots__ = ("_logic", "key", "window", "out")

    def __init__(self, logic: WindowScope) -> None:
        self._logic = logic
        self.key: Any = None
        self.window: Window = GLOBAL_WINDOW
        self.out = _Collector(logic.output)

    def at(self, key: Any, window: Window) -> WindowFunctionContext:
        self.key = key
        self.window = window
        self.out.timestamp = window.max_timestamp
        return self

    def current_watermark(self) -> float:
        return self._logic.watermark

    def current_processing_time(self) -> float:
        return self._logic.clock.now()

    def window_state(self, descriptor: StateDescriptor) -> Any:
        if self._logic.config.is_merging:
            raise StateError(
                f"window operator {self._logic.config.operator!r}: per-window state ({descriptor.name!r}) is not "
                "available with merging (session) windows, whose windows come and go by merging; keep it in "
                "global_state or in the window's contents",
                state=descriptor.name,
            )
        return scoped_state(descriptor, self._logic.store, self.key, self.window, WINDOW_STATE)

    def global_state(self, descriptor: StateDescriptor) -> Any:
        return scoped_state(descriptor, self._logic.store, self.key, None, GLOBAL_STATE)

    def output(self, tag: OutputTag, value: Any) -> None:
        if not isinstance(tag, OutputTag):
            raise ConfigError(f"output(tag, value) needs an OutputTag as tag, got {tag!r}")
        self._logic.output.append(WindowEmission(value, self.window.max_timestamp, tag))
