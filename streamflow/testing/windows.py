"""WindowHarness: drive a window operator's logic by hand, as the runtime does.

For unit tests of window functions and triggers (yours and ours), without an event loop:
feed elements with timestamps, move the watermark and the processing time, read what
the windows emitted. State and timers live in memory (``harness.store``,
``harness.timers``), so a test can also check that windows clean up after themselves.

    harness = WindowHarness(WindowConfig(assigner=TumblingEventTimeWindows.of(60), reduce_fn=add))
    harness.add("alice", 3, timestamp=10.0)
    harness.add("alice", 4, timestamp=59.0)
    assert harness.advance_watermark(60.0) == [WindowEmission(7, 59.999999)]
"""

from __future__ import annotations

import pickle
from typing import Any, cast

from streamflow.core.clock import ManualClock
from streamflow.windowing.config import WindowConfig
from streamflow.windowing.emission import WindowEmission
from streamflow.windowing.logic import ElementFate, WindowOperatorLogic
from streamflow.windowing.store import InMemoryWindowStore, WindowTimers
from streamflow.eventtime.windows import Window

__all__ = ["WindowHarness"]


class WindowHarness:
    """One window operator subtask with in-memory state, timers and a manual clock."""

    def __init__(self, config: WindowConfig, *, processing_time: float = 0.0) -> None:
        self.clock = ManualClock(processing_time)
        self.store = InMemoryWindowStore()
        self.timers = WindowTimers()
        self.logic = WindowOperatorLogic(config, self.store, self.timers, self.clock)

    def add(self, key: Any, value: Any, timestamp: float | None = None) -> ElementFate:
        """One element; what it made the windows emit is kept for :meth:`take`."""
        return self.logic.process_element(key, value, timestamp)

    def take(self) -> list[WindowEmission]:
        """Everything emitted since the last take (or advance), in order."""
        return self.logic.take_output()

    def advance_watermark(self, watermark: float) -> list[WindowEmission]:
        """Move event time to ``watermark`` and fire every event-time timer due."""
        logic = self.logic
        logic.advance_watermark(watermark)
        while (due := self.timers.pop_event_time(logic.watermark)) is not None:
            time, key, window = due
            logic.on_event_time(key, cast(Window, window), time)
        return logic.take_output()

    def advance_processing_time(self, now: float) -> list[WindowEmission]:
        """Move the clock to ``now`` and fire every processing-time timer due."""
        self.clock.set(now)
        while (due := self.timers.pop_processing_time(now)) is not None:
            time, key, window = due
            self.logic.on_processing_time(key, cast(Window, window), time)
        return self.logic.take_output()

    def checkpoint(self) -> tuple[bytes, dict[str, Any]]:
        """The windows' state and timers, as a checkpoint would keep them."""
        return pickle.dumps(self.store.data), self.timers.snapshot()

    @classmethod
    def restored(
        cls, config: WindowConfig, checkpoint: tuple[bytes, dict[str, Any]], *, processing_time: float = 0.0
    ) -> WindowHarness:
        """A new subtask restored from :meth:`checkpoint`: the same state and timers, event
        time starting over (watermarks are not checkpointed, as in Flink)."""
        harness = cls(config, processing_time=processing_time)
        harness.store.data = pickle.loads(checkpoint[0])
        harness.timers = WindowTimers.restore(checkpoint[1])
        harness.logic.timers = harness.timers
        return harness

    @property
    def is_empty(self) -> bool:
        """No window state and no timer left: everything was cleaned up."""
        return not self.store.data and not len(self.timers.event_time) and not len(self.timers.processing_time)
