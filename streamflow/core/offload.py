"""Let worker threads run while the event loop is busy.

File and database work runs in worker threads (aiofiles, ``asyncio.to_thread``,
aiosqlite). A worker needs the GIL to finish, and a loop that always has the next batch
at hand never blocks, so it keeps the GIL: measured here, a 1 ms file write waited up to
39 s for it, and checkpoints that should complete every second completed only when the
input ran out. Work whose latency matters (checkpoint state writes, metadata, sink
pre-commit and commit) is awaited through :meth:`Offloader.tracked`; while any is in
flight, the tasks that never block yield with a real, short sleep
(:meth:`Offloader.pause`), which releases the GIL, instead of ``sleep(0)``, which does
not. Every job run owns one :class:`Offloader`: its tasks make room for its own work.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

__all__ = ["PAUSE_SECONDS", "Offloader"]

T = TypeVar("T")

PAUSE_SECONDS = 0.0002


class Offloader:
    """Counts one job run's offloaded work in flight; see the module docstring."""

    __slots__ = ("_in_flight",)

    def __init__(self) -> None:
        self._in_flight = 0

    async def tracked(self, work: Awaitable[T]) -> T:
        """Await ``work`` (which runs in a thread) while busy tasks make room for it."""
        self._in_flight += 1
        try:
            return await work
        finally:
            self._in_flight -= 1

    def in_flight(self) -> bool:
        return self._in_flight > 0

    async def pause(self) -> None:
        """Yield to the loop; sleep briefly (releasing the GIL) while offloaded work waits."""
        await asyncio.sleep(PAUSE_SECONDS if self._in_flight else 0)
