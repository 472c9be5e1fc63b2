"""Job configuration: small frozen dataclasses, validated when they are built.

A bad value is refused at build time with a :class:`ConfigError` that names the field,
shows the value and says what would be accepted.
"""

from __future__ import annotations

import enum
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from streamflow.errors import ConfigError


def seconds(value: float | timedelta, name: str) -> float:
    """Normalise a duration given as float seconds or ``timedelta``."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be seconds (float) or a timedelta, got {value!r}")
    return float(value)


class CheckpointingMode(enum.Enum):
    """How a task with several inputs treats barriers.

    EXACTLY_ONCE aligns: an input that delivered barrier n is held until barrier n came
    on every input. AT_LEAST_ONCE never holds an input; records after the barrier may
    enter the snapshot of n and be replayed after a restore.
    """

    EXACTLY_ONCE = "exactly_once"
    AT_LEAST_ONCE = "at_least_once"


class RetentionOnCancel(enum.Enum):
    """What happens to retained checkpoints when the job is cancelled."""

    DELETE = "delete"
    RETAIN = "retain"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointConfig:
    """When and how checkpoints are taken.

    Attributes:
        interval: seconds between checkpoint triggers.
        mode: barrier alignment mode.
        timeout: a checkpoint not complete after this many seconds is aborted.
        min_pause: least seconds between the end of one checkpoint and the next trigger.
        max_concurrent: how many checkpoints may be in flight at once.
        tolerable_failures: consecutive failed checkpoints tolerated before the job
            attempt fails.
        retained: how many completed checkpoints to keep on disk (the newest).
        retention_on_cancel: keep or delete retained checkpoints when cancelled.
        unaligned: let barriers overtake the records queued in channels (Flink's
            unaligned checkpoints): a task snapshots on the first barrier n and stores
            the records it overtook as channel state, so a backed-up pipeline no longer
            delays its checkpoints. Exactly-once mode only; savepoints stay aligned.
        aligned_timeout: with ``unaligned``, start each checkpoint aligned and let a
            barrier overtake only once it has waited this many seconds since the
            trigger (queued in a channel or aligning). None: unaligned from the start.
    """

    interval: float
    mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE
    timeout: float = 60.0
    min_pause: float = 0.0
    max_concurrent: int = 1
    tolerable_failures: int = 0
    retained: int = 2
    retention_on_cancel: RetentionOnCancel = RetentionOnCancel.RETAIN
    unaligned: bool = False
    aligned_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("interval", "timeout", "min_pause"):
            object.__setattr__(self, name, seconds(getattr(self, name), f"CheckpointConfig.{name}"))
        if self.aligned_timeout is not None:
            timeout = seconds(self.aligned_timeout, "CheckpointConfig.aligned_timeout")
            object.__setattr__(self, "aligned_timeout", timeout)
        if self.interval <= 0:
            raise ConfigError(f"CheckpointConfig.interval must be > 0 seconds, got {self.interval!r}")
        if self.timeout <= 0:
            raise ConfigError(f"CheckpointConfig.timeout must be > 0 seconds, got {self.timeout!r}")
        if self.min_pause < 0:
            raise ConfigError(f"CheckpointConfig.min_pause must be >= 0 seconds, got {self.min_pause!r}")
        if self.max_concurrent < 1:
            raise ConfigError(f"CheckpointConfig.max_concurrent must be >= 1, got {self.max_concurrent!r}")
        if self.tolerable_failures < 0:
            raise ConfigError(
                f"CheckpointConfig.tolerable_failures must be >= 0, got {self.tolerable_failures!r}"
            )
        if self.retained < 1:
            raise ConfigError(
                f"CheckpointConfig.retained must be >= 1 (the latest checkpoint is needed "
                f"for recovery), got {self.retained!r}"
            )
        if not isinstance(self.mode, CheckpointingMode):
            raise ConfigError(f"CheckpointConfig.mode must be a CheckpointingMode, got {self.mode!r}")
        self._check_unaligned()

    def _check_unaligned(self) -> None:
        if not isinstance(self.unaligned, bool):
            raise ConfigError(f"CheckpointConfig.unaligned must be True or False, got {self.unaligned!r}")
        if self.aligned_timeout is not None:
            if not self.unaligned:
                raise ConfigError(
                    "CheckpointConfig.aligned_timeout only applies to unaligned checkpoints: set unaligned=True "
                    "as well, or drop aligned_timeout"
                )
            if self.aligned_timeout < 0:
                raise ConfigError(f"CheckpointConfig.aligned_timeout must be >= 0 seconds, got {self.aligned_timeout!r}")
        if self.unaligned and self.mode is not CheckpointingMode.EXACTLY_ONCE:
            raise ConfigError(
                "CheckpointConfig.unaligned needs mode=EXACTLY_ONCE (at-least-once never holds a channel, so there "
                "is no alignment to skip): drop unaligned=True or use exactly-once"
            )
        if self.unaligned and self.max_concurrent != 1:
            raise ConfigError(
                f"CheckpointConfig.unaligned allows one checkpoint in flight at a time, got max_concurrent="
                f"{self.max_concurrent!r}: set max_concurrent=1"
            )


@dataclass(frozen=True, slots=True)
class ChannelCapacity:
    """How much a channel holds before its writer blocks (backpressure): ``batches``,
    and at most ``records`` records when given (whichever bound is reached first; an
    empty channel always takes one batch, however large)."""

    batches: int
    records: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.batches, bool) or not isinstance(self.batches, int) or self.batches < 1:
            raise ConfigError(f"channel capacity must be a positive number of batches, got {self.batches!r}")
        if self.records is not None and (
            isinstance(self.records, bool) or not isinstance(self.records, int) or self.records < 1
        ):
            raise ConfigError(f"channel capacity in records must be a positive int or None, got {self.records!r}")


class RestartKind(enum.Enum):
    NONE = "none"
    FIXED_DELAY = "fixed_delay"
    FAILURE_RATE = "failure_rate"
    EXPONENTIAL_DELAY = "exponential_delay"


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartStrategy:
    """What to do when a job attempt fails. Build it with the class methods.

    ``exponential_delay(...)`` (the default of :class:`StreamEnvironment`): restart after a
    delay that starts at ``initial_delay`` and grows by ``multiplier`` with every failure
    in a row, up to ``max_delay``, each delay spread by ``jitter`` (never beyond
    ``max_delay``); once an attempt has run
    ``reset_after`` seconds without failing, the next failure starts from
    ``initial_delay`` again. Unlimited attempts unless ``attempts`` is given. With the
    defaults (1 s, x1.5, 60 s cap) a broker or database that is away for a minute is
    ridden out: the attempts keep failing and the job resumes from its latest checkpoint
    within one delay (at most 60 s) of the server's return.

    ``fixed_delay(attempts, delay)``: restart up to ``attempts`` times, waiting
    ``delay`` seconds. ``failure_rate(max_failures, interval, delay)``: restart unless
    more than ``max_failures`` failures happened within ``interval`` seconds.
    ``none()``: the first failure fails the job.

    A failure whose error is not retriable (``retriable = False``, e.g. DataLossError or
    a ConfigError) fails the job whatever the strategy.
    """

    kind: RestartKind
    attempts: int | None = None
    delay: float = 0.0
    max_failures: int = 0
    interval: float = 0.0
    max_delay: float = 0.0
    multiplier: float = 1.0
    jitter: float = 0.0
    reset_after: float = 0.0

    @classmethod
    def none(cls) -> RestartStrategy:
        return cls(kind=RestartKind.NONE)

    @classmethod
    def fixed_delay(cls, attempts: int, delay: float | timedelta = 1.0) -> RestartStrategy:
        return cls(kind=RestartKind.FIXED_DELAY, attempts=attempts, delay=seconds(delay, "delay"))

    @classmethod
    def failure_rate(
        cls, max_failures: int, interval: float | timedelta, delay: float | timedelta = 1.0
    ) -> RestartStrategy:
        return cls(
            kind=RestartKind.FAILURE_RATE,
            max_failures=max_failures,
            interval=seconds(interval, "interval"),
            delay=seconds(delay, "delay"),
        )

    @classmethod
    def exponential_delay(
        cls,
        initial_delay: float | timedelta = 1.0,
        *,
        multiplier: float = 1.5,
        max_delay: float | timedelta = 60.0,
        jitter: float = 0.1,
        reset_after: float | timedelta = 3600.0,
        attempts: int | None = None,
    ) -> RestartStrategy:
        """Flink's exponential-delay strategy, with Flink's defaults.

        Args:
            initial_delay: seconds before the first restart (> 0).
            multiplier: each further failure in a row multiplies the delay (>= 1).
            max_delay: the delay never grows past this many seconds (>= initial_delay).
            jitter: each delay is moved by a random fraction up to this (0..1) of itself,
                so jobs that failed together do not all come back at the same moment.
            reset_after: an attempt that ran this many seconds before failing resets the
                delay to ``initial_delay`` and the count of attempts.
            attempts: how many restarts in a row (since the last reset) before the job
                fails; ``None`` (default): no limit.
        """
        return cls(
            kind=RestartKind.EXPONENTIAL_DELAY,
            delay=seconds(initial_delay, "RestartStrategy.exponential_delay initial_delay"),
            multiplier=_number(multiplier, "RestartStrategy.exponential_delay multiplier"),
            max_delay=seconds(max_delay, "RestartStrategy.exponential_delay max_delay"),
            jitter=_number(jitter, "RestartStrategy.exponential_delay jitter"),
            reset_after=seconds(reset_after, "RestartStrategy.exponential_delay reset_after"),
            attempts=attempts,
        )

    def __post_init__(self) -> None:
        if self.kind is RestartKind.EXPONENTIAL_DELAY:
            self._check_exponential()
            return
        if self.delay < 0:
            raise ConfigError(f"RestartStrategy delay must be >= 0 seconds, got {self.delay!r}")
        if self.kind is RestartKind.FIXED_DELAY and not _is_count(self.attempts, 1):
            raise ConfigError(
                f"RestartStrategy.fixed_delay attempts must be an int >= 1, got {self.attempts!r}; "
                "use RestartStrategy.none() for no restarts"
            )
        if self.kind is RestartKind.FAILURE_RATE:
            if self.max_failures < 1:
                raise ConfigError(
                    f"RestartStrategy.failure_rate max_failures must be >= 1, got {self.max_failures!r}"
                )
            if self.interval <= 0:
                raise ConfigError(
                    f"RestartStrategy.failure_rate interval must be > 0 seconds, got {self.interval!r}"
                )

    def _check_exponential(self) -> None:
        where = "RestartStrategy.exponential_delay"
        if self.delay <= 0:
            raise ConfigError(
                f"{where} initial_delay must be > 0 seconds (a zero delay never grows), got {self.delay!r}; "
                "use RestartStrategy.fixed_delay(attempts, 0) for immediate restarts"
            )
        if self.multiplier < 1:
            raise ConfigError(f"{where} multiplier must be >= 1 (1: a constant delay), got {self.multiplier!r}")
        if self.max_delay < self.delay:
            raise ConfigError(
                f"{where} max_delay must be >= initial_delay ({self.delay:g} s), got {self.max_delay!r}"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"{where} jitter must be a fraction from 0 to 1, got {self.jitter!r}")
        if self.reset_after <= 0:
            raise ConfigError(f"{where} reset_after must be > 0 seconds, got {self.reset_after!r}")
        if self.attempts is not None and not _is_count(self.attempts, 1):
            raise ConfigError(f"{where} attempts must be None (no limit) or an int >= 1, got {self.attempts!r}")

    def describe(self) -> str:
        """One line for logs and errors, e.g. ``exponential delay 1s x1.5 up to 60s``."""
        kind = self.kind
        if kind is RestartKind.NONE:
            return "no restarts"
        if kind is RestartKind.FIXED_DELAY:
            return f"fixed delay {self.delay:g}s, {self.attempts} attempts"
        if kind is RestartKind.FAILURE_RATE:
            return f"failure rate: at most {self.max_failures} failures per {self.interval:g}s, delay {self.delay:g}s"
        limit = "no attempt limit" if self.attempts is None else f"{self.attempts} attempts"
        return (
            f"exponential delay {self.delay:g}s x{self.multiplier:g} up to {self.max_delay:g}s, "
            f"jitter {self.jitter:g}, reset after {self.reset_after:g}s without failure, {limit}"
        )


def _number(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return float(value)


def _is_count(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


class RestartTracker:
    """Pure bookkeeping of a :class:`RestartStrategy`: after a failure at ``now``, restart
    or give up, and how long to wait first.

    The executor calls :meth:`attempt_started` when an attempt begins and
    :meth:`on_failure` when it fails; times are monotonic seconds given by the caller,
    and ``random`` (returning a float in [0, 1)) draws the jitter, so the tracker is
    tested without a loop or a clock.
    """

    __slots__ = ("_delay", "_failures", "_in_a_row", "_random", "_started", "strategy")

    def __init__(self, strategy: RestartStrategy, random: Callable[[], float] | None = None) -> None:
        self.strategy = strategy
        self._random = random or _random.random
        self._failures: list[float] = []  # failure times (failure rate: within the interval)
        self._in_a_row = 0  # exponential: restarts since the last reset
        self._delay = strategy.delay  # exponential: the delay before jitter of the next restart
        self._started: float | None = None

    def attempt_started(self, now: float) -> None:
        """An attempt began running at ``now`` (the exponential reset counts from here)."""
        self._started = now

    def on_failure(self, now: float) -> float | None:
        """Record a failure at ``now``: seconds to wait before the next attempt, or None
        when the strategy gives up."""
        strategy = self.strategy
        kind = strategy.kind
        if kind is RestartKind.NONE:
            return None
        if kind is RestartKind.FIXED_DELAY:
            self._failures.append(now)
            assert strategy.attempts is not None  # validated at build time
            return strategy.delay if len(self._failures) <= strategy.attempts else None
        if kind is RestartKind.FAILURE_RATE:
            self._failures = [t for t in (*self._failures, now) if now - t <= strategy.interval]
            return strategy.delay if len(self._failures) <= strategy.max_failures else None
        return self._exponential(now)

    def _exponential(self, now: float) -> float | None:
        strategy = self.strategy
        if self._started is not None and now - self._started >= strategy.reset_after:
            self._in_a_row, self._delay = 0, strategy.delay  # ran stably: start over
        self._in_a_row += 1
        if strategy.attempts is not None and self._in_a_row > strategy.attempts:
            return None
        base = self._delay
        self._delay = min(base * strategy.multiplier, strategy.max_delay)
        spread = base * strategy.jitter * (2 * self._random() - 1)
        return min(max(base + spread, 0.0), strategy.max_delay)

    @property
    def restarts_in_a_row(self) -> int:
        """Exponential: restarts since the last reset (for logs and tests)."""
        return self._in_a_row
