"""Starting and watching aiokafka clients: no connection leaked by a cancelled start, no
busy reconnect loop while the brokers are away.

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

:func:`watch_client` adds what aiokafka lacks while the brokers are away: a backoff
between failed metadata requests, and one WARNING per client per outage (one INFO when
it ends) instead of a flood (see :class:`ReconnectBackoff`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from streamflow.connectors.kafka.log_filter import install_log_filter

__all__ = ["MAX_RECONNECT_BACKOFF", "START_GRACE", "ReconnectBackoff", "start_client", "watch_client"]

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


# -- reconnecting with backoff -----------------------------------------------------------

MAX_RECONNECT_BACKOFF = 1.0
"""Seconds between metadata requests while no broker answers, at most (as Kafka's
``reconnect.backoff.max.ms``); the first wait is the client's ``retry_backoff_ms``."""


@dataclass(slots=True)
class ReconnectBackoff:
    """Pure bookkeeping of one client's failed metadata requests: how long to wait after
    each, doubling from ``initial`` to ``maximum``, and when an outage starts and ends.

    aiokafka retries a failed metadata request as soon as something asks for metadata
    again, and a producer with records for partitions whose leader it lost asks at once:
    with the broker down that loop spins (a full core and thousands of log lines a
    second). Waiting here slows every asker to one request per backoff.
    """

    initial: float
    maximum: float = MAX_RECONNECT_BACKOFF
    failures: int = 0
    down_since: float | None = None

    def failed(self, now: float) -> tuple[float, bool]:
        """A metadata request failed at ``now``: (seconds to wait, True if this starts an outage)."""
        started = self.down_since is None
        if started:
            self.down_since = now
        delay = min(self.initial * 2 ** min(self.failures, 32), self.maximum)
        self.failures += 1
        return delay, started

    def succeeded(self, now: float) -> tuple[float, int] | None:
        """A metadata request succeeded: (outage seconds, failed requests) if one ended."""
        if self.down_since is None:
            return None
        ended = (now - self.down_since, self.failures)
        self.down_since, self.failures = None, 0
        return ended


def watch_client(client: Any, where: str) -> None:
    """Make ``client`` (an ``AIOKafkaClient``) wait between failed metadata requests and
    say once at WARNING when it loses the brokers, and at INFO when it has them back.

    aiokafka has no reconnect backoff (0.14 has no ``reconnect_backoff_ms``), so its
    metadata update is wrapped on the instance. aiokafka's own repeated connection
    errors are rate-limited by :mod:`.log_filter`, installed here.
    """
    install_log_filter()
    servers = client._bootstrap_servers
    update = client._metadata_update  # the only way in: aiokafka calls it for every refresh
    backoff = ReconnectBackoff(initial=max(float(client._retry_backoff), 0.01))

    async def update_with_backoff(cluster_metadata: Any, topics: Any) -> bool:
        ok = bool(await update(cluster_metadata, topics))
        now = time.monotonic()
        if ok:
            ended = backoff.succeeded(now)
            if ended is not None:
                _log.info("%s: the Kafka brokers at %s answer again after %.1f s (%d failed metadata requests)",
                          where, servers, ended[0], ended[1])
            return ok
        delay, started = backoff.failed(now)
        if started:
            _log.warning("%s: no Kafka broker at %s answers; retrying every %g s at most, without logging each "
                         "failed connection", where, servers, backoff.maximum)
        await asyncio.sleep(delay)
        return ok

    client._metadata_update = update_with_backoff
