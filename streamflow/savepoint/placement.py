"""Restored snapshots laid out by global subtask, so the existing restore code applies.

Within a worker, tasks, acks and state files use LOCAL subtask indices (a worker's
checkpoint holds ``<uid>-<j>`` for its ``p`` subtasks), while sources, sinks and
operators see GLOBAL ones (``i * p + j`` of ``N * p``). The restore code redistributes
by the context's index and parallelism (``redistribute_split(lists, parallelism)
[subtask]``: with ``len(lists) == parallelism`` each subtask keeps its own entry), so a
worker must hand it lists of the GLOBAL length with every entry at its global place:

- restarting from its own checkpoint (no rescale), worker ``i`` places its snapshot of
  local subtask ``j`` at ``i * p + j`` and leaves every other place empty
  (:func:`place_own_snapshots`): each subtask gets back exactly its own state, and a
  source's view of "every old subtask's splits" is this worker's, which covers every
  partition it owns;
- restoring from a savepoint set (:func:`place_planned_snapshots`), the snapshots a
  :class:`~.savepoint_set.WorkerRestorePlan` names go to their OLD global places in a
  list of the old global parallelism: the usual rescale redistribution follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from streamflow.partitioning.workers import WorkerLayout
from streamflow.savepoint.sets import OldSubtask, WorkerRestorePlan

__all__ = ["place_own_snapshots", "place_planned_snapshots"]

T = TypeVar("T")


def place_own_snapshots(
    restored: Mapping[str, list[T]], *, layout: WorkerLayout, empty: Callable[[], T]
) -> dict[str, list[T]]:
    """A worker's snapshots from its own checkpoint (``restored[uid][j]``: local subtask
    ``j``) at their global places; ``empty()`` fills the other workers' places."""
    placed: dict[str, list[T]] = {}
    for uid, snapshots in restored.items():
        local = len(snapshots)
        everything = [empty() for _ in range(layout.global_parallelism(local))]
        for j, snapshot in enumerate(snapshots):
            everything[layout.global_subtask(j, local)] = snapshot
        placed[uid] = everything
    return placed


def place_planned_snapshots(
    plan: WorkerRestorePlan, read: Mapping[tuple[str, OldSubtask], T], *, empty: Callable[[], T]
) -> dict[str, list[T]]:
    """The snapshots ``read`` for ``plan`` (by uid and old subtask) at their old global
    places, in lists of each uid's old global parallelism.

    Raises:
        KeyError: a snapshot the plan names was not read.
    """
    placed: dict[str, list[T]] = {}
    for uid, operator in plan.operators.items():
        everything = [empty() for _ in range(operator.old_parallelism)]
        for old in operator.reads:
            everything[old.global_index] = read[(uid, old)]
        placed[uid] = everything
    return placed
