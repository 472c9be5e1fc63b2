"""One record's calls of an async function: timeout, retries, and what they cost.

:func:`call_with_retries` runs the attempts of one record: each under its own
``timeout`` (a call still running then is cancelled and fails with a ``TimeoutError``),
then, while the :class:`~streamflow.api.async_io.AsyncRetry` allows, again after its
delay. :class:`AsyncCallMetrics` counts what happened, per operator subtask, and derives
rates and latency percentiles only when read.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from streamflow.api.async_io import AsyncIOConfig
from streamflow.runtime.operators.async_queue import AsyncEntry

__all__ = ["AsyncCallMetrics", "call_with_retries"]

_RECENT = 1024  # calls whose latency and end time are kept for the percentiles and the rate
_RATE_WINDOW = 5.0  # seconds of recent calls the rate is taken over


class AsyncCallMetrics:
    """What the calls of one async operator subtask did.

    Counters only on the hot path: latencies and end times of the last calls go into a
    ring, and :meth:`read` derives calls per second and p50 / p99 from it.
    """

    __slots__ = (
        "capacity", "in_flight", "held", "calls", "timeouts", "retries", "failures", "restored_inputs",
        "capacity_wait_seconds", "_latencies", "_ends", "_next", "_started",
    )  # fmt: skip

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0  # calls running now
        self.held = 0  # records held now: running, waiting, or done and not yet emitted (set on read)
        self.calls = 0  # attempts ended (success, error or timeout)
        self.timeouts = 0  # attempts that timed out
        self.retries = 0  # attempts after the first
        self.failures = 0  # records whose last attempt failed (handed to the error policy)
        self.restored_inputs = 0  # records restored from a checkpoint and called again
        self.capacity_wait_seconds = 0.0  # time the operator waited for a free slot (backpressure)
        self._latencies = [0.0] * _RECENT
        self._ends = [0.0] * _RECENT
        self._next = 0
        self._started = time.perf_counter()

    def ended(self, started: float, now: float) -> None:
        """An attempt that started at ``started`` ended at ``now`` (perf_counter seconds)."""
        slot = self._next % _RECENT
        self._latencies[slot] = now - started
        self._ends[slot] = now
        self._next += 1
        self.calls += 1

    def read(self) -> dict[str, Any]:
        """The counters, calls per second over the last seconds, and latency percentiles
        (seconds) over the last calls."""
        now = time.perf_counter()
        kept = min(self._next, _RECENT)
        latencies = sorted(self._latencies[:kept])
        recent = [t for t in self._ends[:kept] if t >= now - _RATE_WINDOW]
        if kept == _RECENT and len(recent) == kept:  # the ring holds less than the window
            span = max(1e-9, now - min(recent))
        else:
            span = max(1e-9, min(_RATE_WINDOW, now - self._started))
        return {
            "capacity": self.capacity,
            "in_flight": self.in_flight,
            "held": self.held,
            "calls": self.calls,
            "calls_per_second": len(recent) / span,
            "timeouts": self.timeouts,
            "retries": self.retries,
            "failures": self.failures,
            "restored_inputs": self.restored_inputs,
            "capacity_wait_seconds": self.capacity_wait_seconds,
            "latency_p50": _percentile(latencies, 0.50),
            "latency_p99": _percentile(latencies, 0.99),
        }


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def call_with_retries(
    fn: Callable[[Any], Any], entry: AsyncEntry, config: AsyncIOConfig, metrics: AsyncCallMetrics
) -> list[Any]:
    """The results of ``fn(entry.record)`` (a list: one for a map, the iterable's items
    for a flat map), after as many attempts as ``config.retry`` allows.

    ``entry.attempts`` counts the attempts made (an error names it). Raises the last
    attempt's exception when the retries are used up (a ``TimeoutError`` for a call that
    took longer than ``config.timeout``), or an exception of a retry predicate.
    Cancellation propagates at once.
    """
    retry = config.retry
    timeout = config.timeout
    record = entry.record
    attempt = 1
    while True:
        entry.attempts = attempt
        started = time.perf_counter()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                result = await fn(record)
            if config.flat:
                result = list(result)
        except TimeoutError as exc:
            metrics.ended(started, time.perf_counter())
            if not deadline.expired():
                error: Exception = exc  # raised by the function itself
            else:
                metrics.timeouts += 1
                error = TimeoutError(f"no result within {timeout:g} s")
            if retry is None or attempt >= retry.max_attempts or not retry.on_exception(error):
                if error is exc:
                    raise
                raise error from None
        except Exception as exc:
            metrics.ended(started, time.perf_counter())
            if retry is None or attempt >= retry.max_attempts or not retry.on_exception(exc):
                raise
        else:
            metrics.ended(started, time.perf_counter())
            if retry is None or retry.on_result is None or attempt >= retry.max_attempts or not retry.on_result(result):
                return result if config.flat else [result]
        attempt += 1
        metrics.retries += 1
        if retry is not None:  # always: without a strategy every attempt returned or raised
            await asyncio.sleep(retry.delay_before(attempt))
