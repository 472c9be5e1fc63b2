"""Work that must finish even when the task awaiting it is cancelled.

A few steps must never stop halfway: a 2PC commit (a transaction half committed), the
checkpoint metadata write and the savepoint copy (a file cancelled inside
``aiofiles.open`` leaks, and a write that completes is as good as a crash right after
its rename). ``asyncio.shield`` alone is not enough: it returns to the cancelled caller at
once and leaves the work running as an orphan that a loop shutting down cancels after
all. :func:`finish_even_if_cancelled` is the one way the code base does it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["finish_even_if_cancelled"]

T = TypeVar("T")

log = logging.getLogger("streamflow.cancellation")


async def finish_even_if_cancelled(work: Awaitable[T]) -> T:
    """Await ``work`` to its end, however often the caller is cancelled meanwhile.

    1. ``work`` runs as a task of its own; the caller waits for it without ever
       cancelling it.
    2. Not cancelled: the result of ``work`` is returned, or its exception raised.
    3. Cancelled once or more while waiting: the caller keeps waiting until ``work`` is
       done, then the cancellation is raised (it wins over the outcome). An exception
       ``work`` raised meanwhile is logged at WARNING, never dropped unseen.
    """
    task = asyncio.ensure_future(work)
    cancellation: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})  # raises only when the caller is cancelled; never cancels the task
        except asyncio.CancelledError as exc:
            cancellation = cancellation or exc
    if cancellation is not None:
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "work finished with an error while its caller was being cancelled", exc_info=task.exception()
            )
        raise cancellation
    return task.result()
