"""When to trigger the next checkpoint, and when failed checkpoints fail the job.

Pure and synchronous: the coordinator passes clock readings in and sleeps until
:meth:`CheckpointScheduler.next_trigger_time` itself, so the rules are testable with
plain numbers.

The rules (:class:`~streamflow.config.CheckpointConfig`):

- ``interval``: a periodic trigger comes at least ``interval`` seconds after the previous
  trigger (periodic or forced).
- ``min_pause``: at least ``min_pause`` seconds between the end (completion or abort)
  of the last checkpoint and the next periodic trigger. As in Flink, a positive
  ``min_pause`` also means no periodic trigger while any checkpoint is in flight, since
  its end, from which the pause counts, has not happened yet.
- ``max_concurrent``: never more checkpoints in flight than this, forced ones included.
- ``tolerable_failures``: :meth:`~CheckpointScheduler.on_aborted` reports when more
  consecutive checkpoints failed than tolerated; a completion resets the count.
"""

from __future__ import annotations

from streamflow.config import CheckpointConfig
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointError

__all__ = ["CheckpointScheduler"]


class CheckpointScheduler:
    """Trigger decisions and id allocation for one job attempt.

    Call order (by the coordinator): sleep until ``next_trigger_time(now)``; if
    ``should_trigger(now)``, ``on_triggered(now)`` gives the id to trigger; later exactly
    one of ``on_completed``, ``on_aborted`` or ``on_subsumed`` for that id. For a final
    or user-requested checkpoint, ``force_trigger(now)`` once ``can_force_trigger()``.

    Args:
        config: the job's checkpoint config.
        start_id: the highest id already used (``CheckpointStorage.highest_checkpoint_id``);
            the first allocated id is ``start_id + 1``.
        started_at: clock seconds when the job attempt started; the first periodic
            checkpoint is due ``interval`` later. None: the first one is due at once.
    """

    __slots__ = ("_config", "_next_id", "_in_flight", "_last_trigger", "_last_end", "_failures")

    def __init__(self, config: CheckpointConfig, start_id: int, *, started_at: float | None = None) -> None:
        if isinstance(start_id, bool) or not isinstance(start_id, int) or start_id < 0:
            raise CheckpointError(f"CheckpointScheduler start_id must be an int >= 0, got {start_id!r}")
        self._config = config
        self._next_id = start_id + 1
        self._in_flight: set[CheckpointId] = set()
        self._last_trigger: float | None = started_at
        self._last_end: float | None = None
        self._failures = 0

    @property
    def in_flight(self) -> tuple[CheckpointId, ...]:
        """Ids triggered and not yet completed, aborted or subsumed, ascending."""
        return tuple(sorted(self._in_flight))

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def next_trigger_time(self, now: float) -> float | None:
        """When the next periodic checkpoint is due (may be <= ``now``: due already).

        None while no trigger is possible however long one waits: ``max_concurrent``
        checkpoints are in flight, or ``min_pause > 0`` and one is in flight. The answer
        changes only through the ``on_*`` calls, so the coordinator asks again after each.
        """
        config = self._config
        if len(self._in_flight) >= config.max_concurrent:
            return None
        if config.min_pause > 0 and self._in_flight:
            return None
        due = now if self._last_trigger is None else self._last_trigger + config.interval
        if self._last_end is not None:
            due = max(due, self._last_end + config.min_pause)
        return due

    def should_trigger(self, now: float) -> bool:
        """True when a periodic checkpoint is due at ``now``."""
        due = self.next_trigger_time(now)
        return due is not None and due <= now

    def on_triggered(self, now: float) -> CheckpointId:
        """Allocate the id of the periodic checkpoint triggered at ``now``.

        Raises:
            CheckpointError: no periodic checkpoint is due at ``now`` (ask ``should_trigger``).
        """
        if not self.should_trigger(now):
            raise CheckpointError(
                f"no checkpoint is due at {now!r} (next due: {self.next_trigger_time(now)!r}, "
                f"in flight: {list(self.in_flight)!r}); call should_trigger first"
            )
        return self._allocate(now)

    def can_force_trigger(self) -> bool:
        """True when a forced checkpoint may start: fewer than ``max_concurrent`` in flight."""
        return len(self._in_flight) < self._config.max_concurrent

    def force_trigger(self, now: float) -> CheckpointId:
        """Allocate the id of a final or user-requested checkpoint at ``now``, ignoring
        ``interval`` and ``min_pause``; the next periodic one counts from it.

        Raises:
            CheckpointError: ``max_concurrent`` checkpoints are in flight; wait for one to end.
        """
        if not self.can_force_trigger():
            raise CheckpointError(
                f"cannot force a checkpoint: {len(self._in_flight)} in flight "
                f"({list(self.in_flight)!r}) and max_concurrent is {self._config.max_concurrent}; "
                "wait until one completes or aborts"
            )
        return self._allocate(now)

    def on_completed(self, checkpoint_id: CheckpointId, now: float) -> None:
        """Checkpoint n completed at ``now``: it ends, and the failure count resets."""
        self._finish(checkpoint_id, now)
        self._failures = 0

    def on_aborted(self, checkpoint_id: CheckpointId, now: float) -> bool:
        """Checkpoint n failed at ``now``.

        Returns:
            True when consecutive failures now exceed ``tolerable_failures``: the job
            attempt must fail (with :class:`TooManyCheckpointFailuresError`).
        """
        self._finish(checkpoint_id, now)
        self._failures += 1
        return self._failures > self._config.tolerable_failures

    def on_subsumed(self, checkpoint_id: CheckpointId) -> None:
        """Checkpoint n was dropped because a newer one completed first; not a failure,
        and its end does not restart the min pause (the newer completion did)."""
        self._remove(checkpoint_id)

    def _allocate(self, now: float) -> CheckpointId:
        checkpoint_id = CheckpointId(self._next_id)
        self._next_id += 1
        self._in_flight.add(checkpoint_id)
        self._last_trigger = now
        return checkpoint_id

    def _finish(self, checkpoint_id: CheckpointId, now: float) -> None:
        self._remove(checkpoint_id)
        self._last_end = now if self._last_end is None else max(self._last_end, now)

    def _remove(self, checkpoint_id: CheckpointId) -> None:
        if checkpoint_id not in self._in_flight:
            raise CheckpointError(
                f"checkpoint {checkpoint_id!r} is not in flight (in flight: {list(self.in_flight)!r}); "
                "each triggered checkpoint ends exactly once",
                checkpoint_id=checkpoint_id,
            )
        self._in_flight.discard(checkpoint_id)
