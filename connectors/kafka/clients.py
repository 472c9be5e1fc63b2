"""Starting aiokafka clients so that a job attempt torn down meanwhile leaks no connection.

Every aiokafka client (producer, consumer, admin, the sink's transaction coordinator
client) starts with ``AIOKafkaClient.bootstrap``: it opens a connection to a bootstrap
server and asks it for the cluster metadata. While it waits for that answer the
connection is held in a local variable only; a cancel arriving then (the attempt fails
elsewhere and its tasks are cancelled, or a timeout fires) drops it unclosed, and
neither the client's ``close()`` nor ``stop()`` can reach it. It is reported as
``Unclosed AIOKafkaConnection`` when collected. Seen on every in-process restart
where another task failed while a Kafka source or sink was starting (a database
outage, typically).

:func:`start_client` runs such a start to its end even when the caller is cancelled
(within a grace period), and only then lets the cancel through; the caller then closes
the client as after any failed start, and every connection goes with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

__all__ = ["START_GRACE", "start_client"]

_log = logging.getLogger("streamflow.connectors.kafka")

START_GRACE = 10.0
"""Seconds a cancelled start may take to finish. A start on a reachable broker takes
milliseconds; a broker that accepts connections but does not answer is bounded by the
client's request timeout, which this caps."""


async def start_client(start: Awaitable[None], where: str, grace: float = START_GRACE) -> None:
    """Await ``start`` (e.g. ``producer.start()``); a cancel of the caller waits up to
    ``grace`` seconds for it to finish before it is passed on.

    Raises what ``start`` raises, or CancelledError once the start is over when the
    caller was cancelled meanwhile (the caller's clean-up then closes the client).
    """
    task = asyncio.ensure_future(start)
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    while not task.done():
        try:
            if deadline is None:
                await asyncio.shield(task)
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    _log.warning("%s: a Kafka client still starting %g s after the attempt was cancelled is "
                                 "cancelled too; a connection it opened may be reported unclosed", where, grace)
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    break
                await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            if deadline is None:
                deadline = loop.time() + grace
    if deadline is not None:  # the caller was cancelled: that wins over the start's outcome
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" warning
        raise asyncio.CancelledError
    task.result()
