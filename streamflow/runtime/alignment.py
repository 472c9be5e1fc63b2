"""Barrier alignment for a task with several input channels: pure, synchronous logic.

Exactly-once (aligned): when barrier n arrives on a channel, that channel is held until
barrier n has arrived on every channel; then the task snapshots and forwards barrier n,
and every channel is released. Records behind barrier n on a held channel therefore
cannot enter the snapshot of n. Channels stay open after end of input (the final
checkpoint's barriers travel them), so every channel always delivers every barrier.

At-least-once: no channel is ever held; the task snapshots when the last barrier n
arrives, so records that overtook it on other channels are in the snapshot and may be
replayed after a restore.

A barrier for a newer checkpoint arriving while n is still aligning abandons n (it
can no longer complete: some upstream already moved on) and starts aligning the newer.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamflow.config import CheckpointingMode
from streamflow.core.elements import Barrier


@dataclass(frozen=True, slots=True)
class AlignmentStep:
    """What the task must do after a barrier or end-of-input.

    ``hold``: hold the channel the barrier came on. ``trigger``: snapshot and forward
    this barrier now (and release every held channel). ``abandoned``: a checkpoint id
    whose alignment was given up (the task declines it).
    """

    hold: bool = False
    trigger: Barrier | None = None
    abandoned: int | None = None


_NOTHING = AlignmentStep()


class BarrierAligner:
    """Tracks which inputs delivered the barrier being aligned."""

    __slots__ = ("_inputs", "_mode", "_current", "_arrived", "_last_done")

    def __init__(self, inputs: int, mode: CheckpointingMode) -> None:
        self._inputs = inputs
        self._mode = mode
        self._current: Barrier | None = None
        self._arrived: set[int] = set()
        self._last_done = 0

    @property
    def aligning(self) -> int | None:
        """The checkpoint id being aligned, if any."""
        return self._current.checkpoint_id if self._current is not None else None

    def on_barrier(self, channel: int, barrier: Barrier) -> AlignmentStep:
        n = barrier.checkpoint_id
        if n <= self._last_done:
            return _NOTHING  # stale: this checkpoint already triggered, was aborted or abandoned
        abandoned = None
        current = self._current
        if current is not None and n > current.checkpoint_id:
            abandoned = current.checkpoint_id
            self._last_done = abandoned
            current = None
        if current is None:
            self._current = barrier
            self._arrived = set()
        self._arrived.add(channel)
        if len(self._arrived) >= self._inputs:
            return self._complete(abandoned)
        hold = self._mode is CheckpointingMode.EXACTLY_ONCE
        return AlignmentStep(hold=hold, abandoned=abandoned)

    def abort(self, checkpoint_id: int) -> bool:
        """The coordinator aborted ``checkpoint_id``; True when its alignment was dropped."""
        self._last_done = max(self._last_done, checkpoint_id)
        if self._current is not None and self._current.checkpoint_id <= checkpoint_id:
            self._current = None
            self._arrived = set()
            return True
        return False

    def _complete(self, abandoned: int | None) -> AlignmentStep:
        barrier = self._current
        assert barrier is not None  # internal invariant: called only while aligning
        self._last_done = barrier.checkpoint_id
        self._current = None
        self._arrived = set()
        return AlignmentStep(trigger=barrier, abandoned=abandoned)
