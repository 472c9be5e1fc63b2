"""What travels in a channel: record batches and control elements, in order.

Records travel as :class:`Batch` (a list per channel put, never one await per record).
Control elements (:class:`Barrier`, :class:`Watermark`, :class:`EndOfInput`, and the
members of ``streamflow.eventtime.WatermarkStatus``, which the runtime puts into channels
as they are) share the channel with the batches, so a barrier separates exactly the
records before it from the records after it, and a watermark follows the records it
covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamflow.core.ids import CheckpointId


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Which source split a batch came from: source uid, subtask and split (e.g. a file or partition)."""

    source: str
    subtask: int
    split: str

    def at(self, position: Any) -> str:
        return f"{self.source}[{self.subtask}] {self.split} @ {position!r}"


class Batch:
    """Records plus, in parallel lists, their source positions, event timestamps and
    (after key_by) keys.

    ``positions[i]`` is record i's position within ``origin`` (a line number, an offset):
    what an error message names. ``timestamps[i]`` is record i's event time in float
    seconds (``None`` for a record without one); the list is ``None`` when no record of
    the batch has a timestamp. ``keys``/``key_groups`` are set by a hash exchange so the
    keyed operator downstream need not call the key selector again.
    """

    __slots__ = ("records", "positions", "origin", "keys", "key_groups", "timestamps")

    def __init__(
        self,
        records: list[Any],
        positions: list[Any] | None = None,
        origin: SourceRef | None = None,
        keys: list[Any] | None = None,
        key_groups: list[int] | None = None,
        timestamps: list[float | None] | None = None,
    ) -> None:
        self.records = records
        self.positions = positions
        self.origin = origin
        self.keys = keys
        self.key_groups = key_groups
        self.timestamps = timestamps

    def __len__(self) -> int:
        return len(self.records)

    def describe_position(self, index: int) -> str | None:
        """Human-readable source position of record ``index``, when known."""
        if self.origin is None:
            return None
        pos = self.positions[index] if self.positions is not None and index < len(self.positions) else "?"
        return self.origin.at(pos)

    def __repr__(self) -> str:
        return f"Batch({len(self.records)} records from {self.origin})"


@dataclass(frozen=True, slots=True)
class Barrier:
    """Checkpoint barrier n: everything before it belongs to checkpoint n's snapshot."""

    checkpoint_id: CheckpointId
    timestamp: float
    is_savepoint: bool = False


@dataclass(frozen=True, slots=True)
class Watermark:
    """Event time has reached ``timestamp`` (float seconds) on this channel."""

    timestamp: float


@dataclass(frozen=True, slots=True)
class EndOfInput:
    """The upstream subtask will send nothing more on this channel."""


END_OF_INPUT = EndOfInput()
