"""Let worker threads run while the event loop is busy.

File and database work runs in worker threads (aiofiles, ``asyncio.to_thread``,
aiosqlite). A worker needs the GIL to finish, and a loop that always has the next batch
at hand never blocks, so it keeps the GIL: measured here, a 1 ms file write waited up to
39 s for it, and checkpoints that should complete every second completed only when the
input ran out. Work whose latency matters (checkpoint state writes, metadata, sink
pre-commit and commit) is awaited through :func:`tracked`; while any is in flight, the
tasks that never block yield with a real, short sleep (:func:`pause`), which releases
the GIL, instead of ``sleep(0)``, which does not.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")

_in_flight = 0
PAUSE_SECONDS = 0.0002


async def tracked(work: Awaitable[T]) -> T:
    """Await ``work`` (which runs in a thread) while busy tasks make room for it."""
    global _in_flight
    _in_flight += 1
    try:
        return await work
    finally:
        _in_flight -= 1


def in_flight() -> bool:
    return _in_flight > 0


async def pause() -> None:
    """Yield to the loop; sleep briefly (releasing the GIL) while offloaded work waits."""
    await asyncio.sleep(PAUSE_SECONDS if _in_flight else 0)
