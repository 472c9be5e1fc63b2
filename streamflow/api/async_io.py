"""Async I/O: what a user configures for ``map_async`` / ``flat_map_async``.

Flink's AsyncDataStream in asyncio form. An async operator keeps up to ``capacity``
calls of an async function in flight per subtask, and emits their results in input
order (:attr:`AsyncOrdering.ORDERED`), as they complete (:attr:`AsyncOrdering.UNORDERED`,
never across a watermark), or as they complete with the calls of one key never
overlapping (:attr:`AsyncOrdering.PER_KEY`, after ``key_by``). Each call may take
``timeout`` seconds; a failed or timed-out call is tried again as its
:class:`AsyncRetry` says (Flink's AsyncRetryStrategy), and what still fails goes to the
operator's error policy.

The inputs of calls still in flight at a checkpoint barrier are in the checkpoint and
are called again after a restore: the function must tolerate being called twice for a
record (an idempotent lookup or write), as with Flink.
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from streamflow.config import seconds
from streamflow.errors import ConfigError

__all__ = ["AsyncFunction", "AsyncIOConfig", "AsyncOrdering", "AsyncRetry", "is_async_callable"]


class AsyncOrdering(enum.Enum):
    """In which order an async operator emits its results."""

    UNORDERED = "unordered"
    """As calls complete; a watermark still waits for every record before it."""
    ORDERED = "ordered"
    """In input order (a slow call holds back the results after it)."""
    PER_KEY = "per_key"
    """After ``key_by``: calls of one key run one at a time, in input order, so its
    results come in input order; other keys' results overtake them."""

    @classmethod
    def of(cls, ordered: bool | str, *, keyed: bool) -> AsyncOrdering:
        """The ordering of ``ordered=`` (True, False or ``"per_key"``), validated."""
        if ordered is True:
            return cls.ORDERED
        if ordered is False:
            return cls.UNORDERED
        if ordered == "per_key":
            if not keyed:
                raise ConfigError(
                    "ordered='per_key' needs a keyed stream: call .key_by(...) before map_async / flat_map_async, "
                    "or use ordered=True (input order) or ordered=False (completion order)"
                )
            return cls.PER_KEY
        raise ConfigError(f"ordered must be True, False or 'per_key', got {ordered!r}")


def _any_exception(error: BaseException) -> bool:
    return isinstance(error, Exception)


@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncRetry:
    """When to call an async function again for the same record, and after what delay.

    Build it with :meth:`fixed_delay` or :meth:`exponential_backoff`. ``max_attempts``
    counts every call of a record, the first one included (3: the call and two retries).
    A call is retried when it raised an exception that ``on_exception`` accepts (by
    default: any ``Exception``, a timeout included) or returned a result that
    ``on_result`` accepts (by default: none). After the last attempt an exception goes
    to the operator's error policy, while a result ``on_result`` still rejects is
    emitted as it is (Flink's rule: the last result is the final one).

    Attributes:
        max_attempts: calls per record at most, >= 1.
        initial_delay: seconds before the first retry.
        multiplier: each later delay is the one before times this (1.0: fixed delay).
        max_delay: no delay is longer than this many seconds.
        on_exception: retry after this exception?
        on_result: retry after this result? (None: never)
    """

    max_attempts: int
    initial_delay: float
    multiplier: float = 1.0
    max_delay: float = float("inf")
    on_exception: Callable[[BaseException], bool] = _any_exception
    on_result: Callable[[Any], bool] | None = None

    @classmethod
    def fixed_delay(
        cls,
        max_attempts: int,
        delay: float | timedelta,
        *,
        on_exception: Callable[[BaseException], bool] | None = None,
        on_result: Callable[[Any], bool] | None = None,
    ) -> AsyncRetry:
        """Up to ``max_attempts`` calls, ``delay`` seconds apart."""
        return cls(
            max_attempts=max_attempts,
            initial_delay=seconds(delay, "AsyncRetry.fixed_delay delay"),
            on_exception=on_exception or _any_exception,
            on_result=on_result,
        )

    @classmethod
    def exponential_backoff(
        cls,
        max_attempts: int,
        initial_delay: float | timedelta,
        multiplier: float = 2.0,
        max_delay: float | timedelta = 60.0,
        *,
        on_exception: Callable[[BaseException], bool] | None = None,
        on_result: Callable[[Any], bool] | None = None,
    ) -> AsyncRetry:
        """Up to ``max_attempts`` calls; the first retry after ``initial_delay`` seconds,
        each next one ``multiplier`` times later, never more than ``max_delay``."""
        return cls(
            max_attempts=max_attempts,
            initial_delay=seconds(initial_delay, "AsyncRetry.exponential_backoff initial_delay"),
            multiplier=multiplier,
            max_delay=seconds(max_delay, "AsyncRetry.exponential_backoff max_delay"),
            on_exception=on_exception or _any_exception,
            on_result=on_result,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_delay", seconds(self.initial_delay, "AsyncRetry initial_delay"))
        object.__setattr__(self, "max_delay", seconds(self.max_delay, "AsyncRetry max_delay"))
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(
                f"AsyncRetry max_attempts must be an int >= 1 (the first call counts), got {self.max_attempts!r}"
            )
        if self.initial_delay < 0:
            raise ConfigError(f"AsyncRetry delay must be >= 0 seconds, got {self.initial_delay!r}")
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, (int, float)) or self.multiplier < 1:
            raise ConfigError(f"AsyncRetry multiplier must be a number >= 1, got {self.multiplier!r}")
        if self.max_delay < self.initial_delay:
            raise ConfigError(
                f"AsyncRetry max_delay ({self.max_delay!r} s) is below the initial delay ({self.initial_delay!r} s)"
            )
        if not callable(self.on_exception):
            raise ConfigError(f"AsyncRetry on_exception must be a callable, got {self.on_exception!r}")
        if self.on_result is not None and not callable(self.on_result):
            raise ConfigError(f"AsyncRetry on_result must be a callable or None, got {self.on_result!r}")

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before call number ``attempt`` (2 is the first retry)."""
        return min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncIOConfig:
    """An async operator's settings, validated when the stream method is called.

    Attributes:
        capacity: calls in flight per subtask at most (a full capacity is backpressure).
        timeout: seconds one call may take; a call still running then is cancelled and
            counts as failed with a ``TimeoutError`` (retried if ``retry`` says so).
        ordering: the order results are emitted in.
        retry: when to call again (None: never).
        flat: the function returns an iterable of results (``flat_map_async``), not one.
    """

    capacity: int = 100
    timeout: float = 5.0
    ordering: AsyncOrdering = AsyncOrdering.UNORDERED
    retry: AsyncRetry | None = None
    flat: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 1:
            raise ConfigError(f"capacity must be an int >= 1 (calls in flight per subtask), got {self.capacity!r}")
        timeout = seconds(self.timeout, "timeout")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds (per call), got {self.timeout!r}")
        object.__setattr__(self, "timeout", timeout)
        if self.retry is not None and not isinstance(self.retry, AsyncRetry):
            raise ConfigError(
                f"retry must be an AsyncRetry (AsyncRetry.fixed_delay(...) or .exponential_backoff(...)) or None, "
                f"got {self.retry!r}"
            )


class AsyncFunction:
    """Optional base of an async function with a lifecycle (Flink's RichAsyncFunction).

    ``open(ctx)`` runs once per subtask before the first call (create a client session
    there; ``ctx`` is the runtime context: job name, subtask, parallelism, clock, but no
    keyed state, since calls of many keys run at once), ``async __call__(record)`` once
    per record and attempt, concurrently with other records' calls, and ``close()`` at
    the end (not after a crash). ``open`` and ``close`` may be async. A plain
    ``async def`` works as well.
    """

    def open(self, ctx: Any) -> Any:
        return None

    async def __call__(self, record: Any) -> Any:
        raise NotImplementedError

    def close(self) -> Any:
        return None


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def`` (also through
    ``functools.partial``) or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))
