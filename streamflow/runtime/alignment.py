"""Barrier alignment for a task with several input channels: pure, synchronous logic.

Exactly-once (aligned): when barrier n arrives on a channel, that channel is held until
barrier n has arrived on every channel; then the task snapshots and forwards barrier n,
and every channel is released. Records behind barrier n on a held channel therefore
cannot enter the snapshot of n. Channels stay open after end of input (the final
checkpoint's barriers travel them), so every channel always delivers every barrier.

At-least-once: no channel is ever held; the task snapshots when the last barrier n
arrives, so records that overtook it on other channels are in the snapshot and may be
replayed after a restore.

Unaligned (exactly-once, FLIP-76): the first barrier n triggers the snapshot at once and
holds nothing; the records that then arrive on the channels whose barrier n has not come
yet belong to checkpoint n as channel state (the task records them), until the last
barrier n arrives (``in_flight_done``). With an aligned timeout a checkpoint starts
aligned and :meth:`BarrierAligner.go_unaligned` switches it when alignment took too long.
Savepoint barriers always align.

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
    this barrier now (and release every held channel); ``unaligned``: that trigger is
    unaligned, so the channels not in :attr:`BarrierAligner.arrived` are in flight.
    ``in_flight_done``: the unaligned checkpoint whose last barrier just came (its channel
    state is complete). ``abandoned``: a checkpoint id whose alignment was given up (the
    task declines it).
    """

    hold: bool = False
    trigger: Barrier | None = None
    abandoned: int | None = None
    unaligned: bool = False
    in_flight_done: int | None = None


_NOTHING = AlignmentStep()


class BarrierAligner:
    """Tracks which inputs delivered the barrier being aligned."""

    __slots__ = ("_inputs", "_mode", "_unaligned", "_current", "_arrived", "_last_done", "_snapshotted")

    def __init__(self, inputs: int, mode: CheckpointingMode, *, unaligned: bool = False) -> None:
        self._inputs = inputs
        self._mode = mode
        self._unaligned = unaligned  # unaligned from the first barrier (no aligned timeout)
        self._current: Barrier | None = None
        self._arrived: set[int] = set()
        self._last_done = 0
        self._snapshotted = False  # the current checkpoint triggered unaligned; barriers still to come

    @property
    def arrived(self) -> frozenset[int]:
        """The channels that delivered the current barrier."""
        return frozenset(self._arrived)

    @property
    def current(self) -> Barrier | None:
        """The barrier being aligned (or, unaligned, whose other barriers are awaited)."""
        return self._current

    @property
    def in_flight(self) -> bool:
        """True while an unaligned checkpoint awaits barriers on some channels."""
        return self._snapshotted

    @property
    def aligning(self) -> int | None:
        """The checkpoint id being aligned, if any."""
        return self._current.checkpoint_id if self._current is not None else None

    def on_barrier(self, channel: int, barrier: Barrier, *, overtaking: bool = False) -> AlignmentStep:
        """Barrier ``barrier`` came on ``channel``; ``overtaking``: the task took it out
        past queued elements (after an aligned timeout), so its checkpoint goes unaligned:
        what it overtook belongs to the channel state, not after the snapshot."""
        n = barrier.checkpoint_id
        if n <= self._last_done:
            return _NOTHING  # stale: this checkpoint already triggered, was aborted or abandoned
        abandoned = None
        current = self._current
        if current is not None and n < current.checkpoint_id:
            return _NOTHING  # older than the one aligning: it was aborted, it counts for nothing
        if current is not None and n > current.checkpoint_id:
            abandoned = current.checkpoint_id
            self._last_done = abandoned
            current = None
        if current is None:
            self._current = barrier
            self._arrived = set()
            self._snapshotted = False
        self._arrived.add(channel)
        if self._snapshotted:
            if len(self._arrived) >= self._inputs:
                self._finish()
                return AlignmentStep(abandoned=abandoned, in_flight_done=n)
            return AlignmentStep(abandoned=abandoned)
        if (self._unaligned or overtaking) and not barrier.is_savepoint:
            return self._trigger_unaligned(abandoned)
        if len(self._arrived) >= self._inputs:
            return self._complete(abandoned)
        hold = self._mode is CheckpointingMode.EXACTLY_ONCE
        return AlignmentStep(hold=hold, abandoned=abandoned)

    def go_unaligned(self) -> AlignmentStep:
        """The current alignment took too long (aligned timeout): snapshot now, unaligned.
        Nothing to do when no aligned (non-savepoint) checkpoint is aligning."""
        current = self._current
        if current is None or self._snapshotted or current.is_savepoint:
            return _NOTHING
        return self._trigger_unaligned(None)

    def _trigger_unaligned(self, abandoned: int | None) -> AlignmentStep:
        barrier = self._current
        assert barrier is not None  # internal invariant: called only while a barrier is current
        if len(self._arrived) >= self._inputs:
            self._finish()
            return AlignmentStep(trigger=barrier, abandoned=abandoned, unaligned=True, in_flight_done=barrier.checkpoint_id)
        self._snapshotted = True
        return AlignmentStep(trigger=barrier, abandoned=abandoned, unaligned=True)

    def _finish(self) -> None:
        assert self._current is not None
        self._last_done = self._current.checkpoint_id
        self._current = None
        self._arrived = set()
        self._snapshotted = False

    def abort(self, checkpoint_id: int) -> bool:
        """The coordinator aborted ``checkpoint_id``; True when its alignment was dropped."""
        self._last_done = max(self._last_done, checkpoint_id)
        if self._current is not None and self._current.checkpoint_id <= checkpoint_id:
            self._current = None
            self._arrived = set()
            self._snapshotted = False
            return True
        return False

    def _complete(self, abandoned: int | None) -> AlignmentStep:
        barrier = self._current
        assert barrier is not None  # internal invariant: called only while aligning
        self._finish()
        return AlignmentStep(trigger=barrier, abandoned=abandoned)
