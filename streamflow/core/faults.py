"""Named kill points for crash tests, armed per job run.

Production code calls :meth:`FaultInjector.hit` at the points where a crash is most
dangerous; nothing happens unless a point is armed. Every job run owns one injector
(:class:`~streamflow.core.services.JobServices`), so a fault armed for one job never
fires in another job of the same process.

Crash tests arm one through the environment of a job process,
``STREAMFLOW_CRASH=<point>:<n>`` (read by :meth:`FaultInjector.from_environment` when a
job starts), and the process dies there with ``os._exit`` (no ``finally``, no flush: as
close to SIGKILL as Python gets). In-process tests arm an injector with
``action="raise"`` and hand it to the job (``env.set_fault_injector(...)``) to exercise
the restart strategy instead. An armed point fires once per job run, in whichever
attempt reaches it.

Points (``n`` is a checkpoint id, or a record count for ``records``):

- ``records``: a sink subtask has written ``n`` records in this run (between records).
- ``after_barrier``: a source subtask has just emitted barrier ``n``.
- ``after_pre_commit``: a sink subtask pre-committed checkpoint ``n``, before it acks.
- ``metadata_write``: checkpoint ``n``'s metadata temp file is written, not yet renamed.
- ``after_completion``: checkpoint ``n`` is complete on disk, sinks not yet notified.
- ``after_commit``: sinks were notified of ``n`` (committed), before anything else runs.

Aborted checkpoints: :meth:`FaultInjector.fail_state_writes` makes the state writes of
one operator fail for every checkpoint whose id is a multiple of ``k``, as a full disk
would. The task then declines the checkpoint like on any failed write, the coordinator
aborts it, and every task hears ``notify_checkpoint_aborted``: by then a sink has
pre-committed, so its abort path runs with records in the transaction of the aborted
checkpoint. Unlike a crash point it stays armed, and it may be armed alongside one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["POINTS", "FaultInjector", "InjectedFault"]

POINTS = frozenset(
    {"records", "after_barrier", "after_pre_commit", "metadata_write", "after_completion", "after_commit"}
)


class InjectedFault(RuntimeError):
    """Raised at an armed point when the action is ``raise``."""


@dataclass(slots=True)
class _Armed:
    point: str
    at: int
    action: str  # "exit" | "raise"
    fired: bool = False


class FaultInjector:
    """The crash point and the failing state writes armed for one job run."""

    __slots__ = ("_armed", "_records_written", "_failing_writes")

    def __init__(self) -> None:
        self._armed: _Armed | None = None
        self._records_written = 0
        self._failing_writes: dict[str, int] = {}  # operator uid -> every k-th checkpoint fails

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> FaultInjector:
        """An injector armed as ``STREAMFLOW_CRASH=<point>:<n>`` (and
        ``STREAMFLOW_CRASH_ACTION``, default ``exit``) say; disarmed without them."""
        injector = cls()
        spec = environ.get("STREAMFLOW_CRASH")
        if spec:
            point, _, at = spec.partition(":")
            injector.arm(point, int(at or "1"), environ.get("STREAMFLOW_CRASH_ACTION", "exit"))
        return injector

    def arm(self, point: str, at: int, action: str = "exit") -> None:
        """Arm ``point`` to fire once at ``at`` (checkpoint id, or record count for ``records``)."""
        if point not in POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {sorted(POINTS)}")
        if action not in ("exit", "raise"):
            raise ValueError(f"crash action must be 'exit' or 'raise', got {action!r}")
        self._armed = _Armed(point, at, action)
        self._records_written = 0

    def disarm(self) -> None:
        """Disarm the crash point and every failing state write."""
        self._armed = None
        self._failing_writes.clear()

    def fail_state_writes(self, uid: str, every: int) -> None:
        """Fail the state writes of operator ``uid`` in checkpoints whose id is a multiple
        of ``every`` (see the module docstring), until :meth:`disarm`."""
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"fail_state_writes needs every >= 1 (a checkpoint id divisor), got {every!r}")
        self._failing_writes[uid] = every

    def state_write(self, uid: str, checkpoint_id: int) -> None:
        """Raise :class:`InjectedFault` if writing ``uid``'s state of this checkpoint is
        armed to fail (cheap no-op otherwise)."""
        if self._failing_writes:
            every = self._failing_writes.get(uid)
            if every is not None and checkpoint_id % every == 0:
                raise InjectedFault(f"injected failure writing the state of {uid!r} in checkpoint {checkpoint_id}")

    def hit(self, point: str, checkpoint_id: int | None = None) -> None:
        """Fire if ``point`` is armed for ``checkpoint_id`` (cheap no-op otherwise)."""
        armed = self._armed
        if armed is None or armed.fired or armed.point != point:
            return
        if checkpoint_id is not None and checkpoint_id >= armed.at:
            self._fire(armed, f"{point} of checkpoint {checkpoint_id}")

    def records_written(self, count: int) -> None:
        """Count records a sink wrote; fires the ``records`` point once the total reaches n."""
        armed = self._armed
        if armed is None or armed.fired or armed.point != "records":
            return
        self._records_written += count
        if self._records_written >= armed.at:
            self._fire(armed, f"records after {self._records_written} records written")

    @staticmethod
    def _fire(armed: _Armed, where: str) -> None:
        armed.fired = True
        if armed.action == "exit":
            sys.stderr.write(f"streamflow: injected crash at {where}\n")
            sys.stderr.flush()
            os._exit(137)
        raise InjectedFault(f"injected failure at {where}")
