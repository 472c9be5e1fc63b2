"""Event time of a source subtask: one tracker per split, combined (Flink's per-split
watermarks).

Each split (a Kafka partition, a file) gets its own :class:`WatermarkTracker`, so a
split that is behind holds the others back instead of making their records late, and a
split without records turns idle on its own. The subtask's watermark and status are the
splits' combined by :meth:`WatermarkCombiner.for_splits`; a subtask with no split at all
is idle and holds nothing back downstream.

Pure: the source task calls ``add_split`` / ``finish_split`` as splits come and go,
``stamp`` for each batch a split produced, and ``on_periodic_emit`` every
``strategy.emit_interval`` seconds; it forwards the emissions it gets back.
"""

from __future__ import annotations

from collections.abc import Hashable, KeysView, Sequence
from typing import Any

from streamflow.eventtime.combiner import WatermarkCombiner
from streamflow.eventtime.status import NO_EMISSIONS, Emissions, WatermarkStatus
from streamflow.eventtime.strategy import WatermarkStrategy
from streamflow.eventtime.tracker import Stamped, WatermarkTracker

__all__ = ["SplitWatermarks"]


class SplitWatermarks:
    """Trackers of a source subtask's splits and their combination."""

    __slots__ = ("strategy", "combiner", "_trackers")

    def __init__(self, strategy: WatermarkStrategy) -> None:
        self.strategy = strategy
        self.combiner = WatermarkCombiner.for_splits()
        self._trackers: dict[Hashable, WatermarkTracker] = {}

    @property
    def watermark(self) -> float:
        return self.combiner.watermark

    @property
    def status(self) -> WatermarkStatus:
        return self.combiner.status

    @property
    def splits(self) -> KeysView[Hashable]:
        """The splits tracked now."""
        return self._trackers.keys()

    def add_split(self, split: Hashable, now: float) -> Emissions:
        """Start tracking ``split``; a split already tracked is unchanged."""
        if split in self._trackers:
            return NO_EMISSIONS
        self._trackers[split] = WatermarkTracker(self.strategy, now)
        return self.combiner.add_input(split)

    def finish_split(self, split: Hashable) -> Emissions:
        """``split`` ended (bounded input) or was taken away: it holds nothing back."""
        if self._trackers.pop(split, None) is None:
            return NO_EMISSIONS
        return self.combiner.remove_input(split)

    def stamp(
        self, split: Hashable, records: Sequence[Any], record_timestamps: Sequence[float | None] | None, now: float
    ) -> Stamped:
        """Timestamps of a batch read from ``split`` (added first if new), with the
        subtask's emissions to forward before and after the batch."""
        added = self.add_split(split, now) if split not in self._trackers else NO_EMISSIONS
        stamped = self._trackers[split].stamp(records, record_timestamps, now)
        if not added and not stamped.before and not stamped.after:
            return stamped
        return Stamped(
            stamped.timestamps,
            stamped.failures,
            added + self._combine(split, stamped.before),
            self._combine(split, stamped.after),
        )

    def on_periodic_emit(self, now: float) -> Emissions:
        out: Emissions = NO_EMISSIONS
        for split, tracker in self._trackers.items():
            emitted = tracker.on_periodic_emit(now)
            if emitted:
                out += self._combine(split, emitted)
        return out

    def _combine(self, split: Hashable, emitted: Emissions) -> Emissions:
        out: Emissions = NO_EMISSIONS
        combiner = self.combiner
        for emission in emitted:
            if isinstance(emission, WatermarkStatus):
                out += combiner.on_status(split, emission)
            else:
                out += combiner.on_watermark(split, emission)
        return out
