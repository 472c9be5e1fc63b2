"""The watermark of several inputs: the minimum over the active ones (Flink's valve).

A task with several input channels (after a shuffle, a union, or a two-input operator)
and a source subtask reading several splits both combine their inputs' watermarks and
statuses into one, with Flink's WatermarkStatus rules:

- The combined watermark is the minimum over the active inputs that are *aligned*, and
  only moves forward; a watermark from an idle input is ignored.
- An input that turns idle stops counting; when every input is idle the combination
  is idle (it forwards ``IDLE``) and holds its watermark.
- An input that turns active again counts once its watermark has caught up with the
  combined one (until then it is not aligned), so its return never moves the combined
  watermark backwards and does not stall the others: its records behind the combined
  watermark are late, as in Flink.
- A new input (a split found while running) starts aligned at minus infinity: it holds
  the combined watermark where it is until it catches up, so its first records are not
  late.

Two flavours differ only when the last active input turns idle. Over channels
(:meth:`WatermarkCombiner.for_channels`, Flink's StatusWatermarkValve) the combined
watermark first advances to the highest watermark of any input, since nothing active
is left to hold it back. Over splits (:meth:`WatermarkCombiner.for_splits`, Flink's
WatermarkOutputMultiplexer) it stays put; a source subtask without any split is idle,
so it does not hold back the operators after it.

Every call answers with the :data:`~streamflow.eventtime.status.Emission` values to
forward downstream, in order.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Final

from streamflow.eventtime.status import NO_EMISSIONS, Emissions, WatermarkStatus

__all__ = ["WatermarkCombiner"]

_NEG_INF: Final = float("-inf")
_IDLE: Final[Emissions] = (WatermarkStatus.IDLE,)
_ACTIVE: Final[Emissions] = (WatermarkStatus.ACTIVE,)


class _Input:
    __slots__ = ("watermark", "active", "aligned")

    def __init__(self) -> None:
        self.watermark = _NEG_INF
        self.active = True
        self.aligned = True


class WatermarkCombiner:
    """Combines the watermarks and statuses of named inputs (see the module docstring).

    Attributes:
        watermark: the combined watermark forwarded last (minus infinity at first).
        status: the combined status forwarded last; IDLE from the start when there are
            no inputs, which the runtime should announce downstream.
    """

    __slots__ = ("watermark", "status", "_inputs", "_flush_when_all_idle")

    def __init__(self, inputs: Iterable[Hashable], *, flush_when_all_idle: bool) -> None:
        self._inputs: dict[Hashable, _Input] = {name: _Input() for name in inputs}
        self._flush_when_all_idle = flush_when_all_idle
        self.watermark = _NEG_INF
        self.status = WatermarkStatus.ACTIVE if self._inputs else WatermarkStatus.IDLE

    @classmethod
    def for_channels(cls, count: int) -> WatermarkCombiner:
        """The input channels 0 .. count-1 of a task."""
        return cls(range(count), flush_when_all_idle=True)

    @classmethod
    def for_splits(cls, splits: Iterable[Hashable] = ()) -> WatermarkCombiner:
        """The splits of a source subtask; more come with :meth:`add_input`."""
        return cls(splits, flush_when_all_idle=False)

    # -- inputs ----------------------------------------------------------------------

    def add_input(self, name: Hashable) -> Emissions:
        """A new input, active, holding the combined watermark until it catches up."""
        if name in self._inputs:
            return NO_EMISSIONS
        self._inputs[name] = _Input()
        if self.status is WatermarkStatus.IDLE:
            self.status = WatermarkStatus.ACTIVE
            return _ACTIVE
        return NO_EMISSIONS

    def remove_input(self, name: Hashable) -> Emissions:
        """An input that ended (a finished split): it holds nothing back any more."""
        if self._inputs.pop(name, None) is None:
            return NO_EMISSIONS
        if self.status is WatermarkStatus.ACTIVE and not any(i.active for i in self._inputs.values()):
            self.status = WatermarkStatus.IDLE
            return _IDLE
        return self._advance()

    # -- elements --------------------------------------------------------------------

    def on_watermark(self, name: Hashable, timestamp: float) -> Emissions:
        """Input ``name`` reached ``timestamp``."""
        state = self._inputs[name]
        if not state.active or timestamp <= state.watermark:
            return NO_EMISSIONS
        state.watermark = timestamp
        if not state.aligned and timestamp >= self.watermark:
            state.aligned = True
        return self._advance()

    def on_status(self, name: Hashable, status: WatermarkStatus) -> Emissions:
        """Input ``name`` turned ``status``; a repeated status changes nothing."""
        state = self._inputs[name]
        if status is WatermarkStatus.IDLE and state.active:
            state.active = False
            state.aligned = False
            if any(i.active for i in self._inputs.values()):
                return self._advance() if state.watermark == self.watermark else NO_EMISSIONS
            flushed = NO_EMISSIONS
            if self._flush_when_all_idle and state.watermark == self.watermark:
                highest = max(i.watermark for i in self._inputs.values())
                if highest > self.watermark:
                    self.watermark = highest
                    flushed = (highest,)
            self.status = WatermarkStatus.IDLE
            return flushed + _IDLE
        if status is WatermarkStatus.ACTIVE and not state.active:
            state.active = True
            if state.watermark >= self.watermark:
                state.aligned = True
            if self.status is WatermarkStatus.IDLE:
                self.status = WatermarkStatus.ACTIVE
                return _ACTIVE
        return NO_EMISSIONS

    def _advance(self) -> Emissions:
        low = None
        for state in self._inputs.values():
            if state.aligned and (low is None or state.watermark < low):
                low = state.watermark
        if low is not None and low > self.watermark:
            self.watermark = low
            return (low,)
        return NO_EMISSIONS
