"""Named kill points for crash tests (DESIGN.md section 7).

Production code calls :func:`hit` at the points where a crash is most dangerous; nothing
happens unless a point is armed. Crash tests arm one through the environment of a job
process, ``STREAMFLOW_CRASH=<point>:<n>``, and the process dies there with ``os._exit``
(no ``finally``, no flush: as close to SIGKILL as Python gets). In-process tests arm with
:func:`arm` and ``action="raise"`` to exercise the restart strategy instead.

Points (``n`` is a checkpoint id, or a record count for ``records``):

- ``records``: a sink subtask has written ``n`` records in this process (between records).
- ``after_barrier``: a source subtask has just emitted barrier ``n``.
- ``after_pre_commit``: a sink subtask pre-committed checkpoint ``n``, before it acks.
- ``metadata_write``: checkpoint ``n``'s metadata temp file is written, not yet renamed.
- ``after_completion``: checkpoint ``n`` is complete on disk, sinks not yet notified.
- ``after_commit``: sinks were notified of ``n`` (committed), before anything else runs.

Aborted checkpoints: :func:`fail_state_writes` makes the state writes of one operator
fail for every checkpoint whose id is a multiple of ``k``, as a full disk would. The
task then declines the checkpoint like on any failed write, the coordinator aborts it,
and every task hears ``notify_checkpoint_aborted``: by then a sink has pre-committed, so
its abort path runs with records in the transaction of the aborted checkpoint. Unlike
a crash point it stays armed, and it may be armed alongside one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

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


_armed: _Armed | None = None
_records_written = 0
_failing_writes: dict[str, int] = {}  # operator uid -> every k-th checkpoint fails


def arm(point: str, at: int, action: str = "exit") -> None:
    """Arm ``point`` to fire once at ``at`` (checkpoint id, or record count for ``records``)."""
    global _armed, _records_written
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {sorted(POINTS)}")
    if action not in ("exit", "raise"):
        raise ValueError(f"crash action must be 'exit' or 'raise', got {action!r}")
    _armed = _Armed(point, at, action)
    _records_written = 0


def disarm() -> None:
    """Disarm the crash point and every failing state write."""
    global _armed
    _armed = None
    _failing_writes.clear()


def fail_state_writes(uid: str, every: int) -> None:
    """Fail the state writes of operator ``uid`` in checkpoints whose id is a multiple of
    ``every`` (see the module docstring), until :func:`disarm`."""
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"fail_state_writes needs every >= 1 (a checkpoint id divisor), got {every!r}")
    _failing_writes[uid] = every


def state_write(uid: str, checkpoint_id: int) -> None:
    """Raise :class:`InjectedFault` if writing ``uid``'s state of this checkpoint is
    armed to fail (cheap no-op otherwise)."""
    if _failing_writes:
        every = _failing_writes.get(uid)
        if every is not None and checkpoint_id % every == 0:
            raise InjectedFault(f"injected failure writing the state of {uid!r} in checkpoint {checkpoint_id}")


def _fire(where: str) -> None:
    assert _armed is not None
    _armed.fired = True
    if _armed.action == "exit":
        sys.stderr.write(f"streamflow: injected crash at {where}\n")
        sys.stderr.flush()
        os._exit(137)
    raise InjectedFault(f"injected failure at {where}")


def hit(point: str, checkpoint_id: int | None = None) -> None:
    """Fire if ``point`` is armed for ``checkpoint_id`` (cheap no-op otherwise)."""
    armed = _armed
    if armed is None or armed.fired or armed.point != point:
        return
    if checkpoint_id is not None and checkpoint_id >= armed.at:
        _fire(f"{point} of checkpoint {checkpoint_id}")


def records_written(count: int) -> None:
    """Count records a sink wrote; fires the ``records`` point once the total reaches n."""
    global _records_written
    armed = _armed
    if armed is None or armed.fired or armed.point != "records":
        return
    _records_written += count
    if _records_written >= armed.at:
        _fire(f"records after {_records_written} records written")


def _arm_from_environment() -> None:
    spec = os.environ.get("STREAMFLOW_CRASH")
    if not spec:
        return
    point, _, at = spec.partition(":")
    arm(point, int(at or "1"), os.environ.get("STREAMFLOW_CRASH_ACTION", "exit"))


_arm_from_environment()
