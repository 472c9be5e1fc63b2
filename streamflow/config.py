"""Job configuration: small frozen dataclasses, validated when they are built.

A bad value is refused at build time with a :class:`ConfigError` that names the field,
shows the value and says what would be accepted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
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
    """

    interval: float
    mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE
    timeout: float = 60.0
    min_pause: float = 0.0
    max_concurrent: int = 1
    tolerable_failures: int = 0
    retained: int = 2
    retention_on_cancel: RetentionOnCancel = RetentionOnCancel.RETAIN

    def __post_init__(self) -> None:
        for name in ("interval", "timeout", "min_pause"):
            object.__setattr__(self, name, seconds(getattr(self, name), f"CheckpointConfig.{name}"))
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


class RestartKind(enum.Enum):
    NONE = "none"
    FIXED_DELAY = "fixed_delay"
    FAILURE_RATE = "failure_rate"


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartStrategy:
    """What to do when a job attempt fails. Build it with the class methods.

    ``fixed_delay(attempts, delay)``: restart up to ``attempts`` times, waiting
    ``delay`` seconds. ``failure_rate(max_failures, interval, delay)``: restart unless
    more than ``max_failures`` failures happened within ``interval`` seconds.
    ``none()``: the first failure fails the job.
    """

    kind: RestartKind
    attempts: int = 0
    delay: float = 0.0
    max_failures: int = 0
    interval: float = 0.0

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

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ConfigError(f"RestartStrategy delay must be >= 0 seconds, got {self.delay!r}")
        if self.kind is RestartKind.FIXED_DELAY and self.attempts < 1:
            raise ConfigError(
                f"RestartStrategy.fixed_delay attempts must be >= 1, got {self.attempts!r}; "
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


@dataclass(slots=True)
class RestartTracker:
    """Pure bookkeeping of a :class:`RestartStrategy`: may the job restart after a failure at ``now``?"""

    strategy: RestartStrategy
    failures: list[float] = field(default_factory=list)

    def on_failure(self, now: float) -> bool:
        """Record a failure; True when the strategy allows another attempt."""
        self.failures.append(now)
        kind = self.strategy.kind
        if kind is RestartKind.NONE:
            return False
        if kind is RestartKind.FIXED_DELAY:
            return len(self.failures) <= self.strategy.attempts
        recent = [t for t in self.failures if now - t <= self.strategy.interval]
        self.failures = recent
        return len(recent) <= self.strategy.max_failures
