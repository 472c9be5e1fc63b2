"""The checkpoints and savepoints a user asked for: waiting for a checkpoint slot, then in flight.

A savepoint is a checkpoint triggered by the user, and so is a checkpoint asked for
outside the interval (``JobClient.trigger_checkpoint``). Neither fails for being one too
many: while ``max_concurrent`` checkpoints are in flight it waits in this queue, oldest
first, and the coordinator starts it as soon as a slot frees (:meth:`SavepointQueue.ready`),
as Flink queues its manual checkpoint requests. A plain checkpoint is queued as ``None``.
Once started, the queue remembers it by checkpoint id until it completes or is aborted.
A stop with savepoint is one at a time: a second stop while one is in flight fails at
once; while it is in flight the coordinator triggers no other checkpoint.

Pure bookkeeping over futures, no I/O: the coordinator loop is its only caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamflow.errors import CheckpointError

__all__ = ["SavepointQueue", "SavepointRequest"]


@dataclass(frozen=True, slots=True)
class SavepointRequest:
    """A user's savepoint: written under ``target``; ``stop`` ends the job after it."""

    target: Path
    stop: bool = False


class SavepointQueue:
    """Savepoint requests of one attempt, waiting or in flight (see the module docstring)."""

    __slots__ = ("_job_name", "_waiting", "_in_flight", "stop_id")

    def __init__(self, job_name: str) -> None:
        self._job_name = job_name
        self._waiting: list[tuple[SavepointRequest | None, asyncio.Future[Any]]] = []
        self._in_flight: dict[int, SavepointRequest] = {}
        self.stop_id: int | None = None
        """The checkpoint id of the stop with savepoint in flight, if any."""

    def add(self, request: SavepointRequest | None, done: asyncio.Future[Any]) -> None:
        """Queue ``request`` (None: a plain checkpoint); ``done`` gets the savepoint's
        directory or the checkpoint's id, or the error."""
        self._waiting.append((request, done))

    def ready(self, can_start: Callable[[], bool]) -> Iterator[tuple[SavepointRequest | None, asyncio.Future[Any]]]:
        """The waiting requests to start now, oldest first, while ``can_start()``.

        The caller triggers each (and calls :meth:`started`) before asking for the next.
        Requests whose caller stopped waiting are dropped; a stop while another stop is in
        flight fails with CheckpointError.
        """
        while self._waiting and can_start():
            request, done = self._waiting.pop(0)
            if done.done():
                continue  # the caller gave up waiting
            if request is not None and request.stop and self.stop_id is not None:
                done.set_exception(
                    CheckpointError(f"job {self._job_name!r} is already stopping with checkpoint {self.stop_id}")
                )
                continue
            yield request, done

    def started(self, checkpoint_id: int, request: SavepointRequest) -> None:
        """``request`` runs as checkpoint ``checkpoint_id``."""
        self._in_flight[checkpoint_id] = request
        if request.stop:
            self.stop_id = checkpoint_id

    def in_flight(self, checkpoint_id: int) -> SavepointRequest | None:
        """The savepoint that checkpoint ``checkpoint_id`` is, if it is one."""
        return self._in_flight.get(checkpoint_id)

    def ended(self, checkpoint_id: int, *, completed: bool) -> SavepointRequest | None:
        """Checkpoint ``checkpoint_id`` completed or was aborted: forget it; the savepoint
        it was, if any. An aborted stop lets the job run on (``stop_id`` is cleared)."""
        if not completed and checkpoint_id == self.stop_id:
            self.stop_id = None
        return self._in_flight.pop(checkpoint_id, None)

    def drain_waiting(self) -> list[asyncio.Future[Any]]:
        """Empty the queue; the futures of the requests that were still waiting."""
        waiting = [done for _, done in self._waiting]
        self._waiting.clear()
        return waiting
