"""What a window or join operator hands the runtime: emissions, its watermark, its late count.

Operator logic (windows, interval join) appends a :class:`WindowEmission` per result to
its output list as it goes; the runtime takes them after each call it makes
(:meth:`EmittingLogic.take_output`) and forwards them: main-output values as records with
their timestamp, tagged values to the side output of their tag.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from streamflow.api.side_outputs import OutputTag

__all__ = ["EmittingLogic", "WindowEmission"]

_NEG_INF: Final = float("-inf")


class WindowEmission(NamedTuple):
    """A value to emit: to the main output (``tag`` None) or to the side output ``tag``,
    with its event timestamp."""

    value: Any
    timestamp: float
    tag: OutputTag | None = None


class EmittingLogic:
    """The event-time bookkeeping every operator logic shares.

    Attributes:
        watermark: the operator's current event time (its input watermark).
        output: emissions not yet taken by the runtime.
        late_records_dropped: elements dropped as late (Flink's numLateRecordsDropped).
    """

    def __init__(self) -> None:
        self.watermark = _NEG_INF
        self.output: list[WindowEmission] = []
        self.late_records_dropped = 0

    def advance_watermark(self, watermark: float) -> None:
        """Event time reached ``watermark``; the caller then fires the timers due."""
        if watermark > self.watermark:
            self.watermark = watermark

    def take_output(self) -> list[WindowEmission]:
        """What the calls since the last take emitted, in order."""
        output = self.output
        if not output:
            return []
        taken = list(output)
        output.clear()
        return taken
