"""RestartStrategy validation and RestartTracker decisions, without a loop: times are
given, jitter comes from an injected random function."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.config import RestartKind, RestartTracker
from streamflow.errors import ConfigError


def delays(tracker: RestartTracker, failures: int, *, at: float = 0.0) -> list[float | None]:
    """The delays the tracker asks for after ``failures`` failures in a row, each attempt
    failing at once (no time passes)."""
    out = []
    for _ in range(failures):
        tracker.attempt_started(at)
        out.append(tracker.on_failure(at))
    return out


def no_jitter() -> float:
    return 0.5  # the middle of [0, 1): spread 0


# -- exponential delay ---------------------------------------------------------------------


def test_exponential_delay_defaults_are_flinks() -> None:
    strategy = RestartStrategy.exponential_delay()
    assert strategy.kind is RestartKind.EXPONENTIAL_DELAY
    assert (strategy.delay, strategy.multiplier, strategy.max_delay) == (1.0, 1.5, 60.0)
    assert (strategy.jitter, strategy.reset_after, strategy.attempts) == (0.1, 3600.0, None)


def test_exponential_delay_grows_by_the_multiplier_up_to_the_cap() -> None:
    strategy = RestartStrategy.exponential_delay(1.0, multiplier=2.0, max_delay=10.0, jitter=0.0)
    assert delays(RestartTracker(strategy), 7) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_exponential_delay_without_an_attempt_limit_never_gives_up() -> None:
    tracker = RestartTracker(RestartStrategy.exponential_delay(0.5, jitter=0.0))
    got = delays(tracker, 1000)
    assert None not in got and got[-1] == 60.0
    assert tracker.restarts_in_a_row == 1000


def test_exponential_delay_rides_out_a_minute_of_failures() -> None:
    """The default keeps restarting through a 60 s outage whose attempts fail at once,
    and the first attempt after the outage starts within one max delay of its end."""
    tracker = RestartTracker(RestartStrategy.exponential_delay(), random=no_jitter)
    now, outage_end = 0.0, 60.0
    while now < outage_end:
        tracker.attempt_started(now)
        delay = tracker.on_failure(now)
        assert delay is not None
        now += delay
    assert now - outage_end <= 60.0
    assert tracker.restarts_in_a_row >= 8  # 1, 1.5, 2.25, ... : about 9 restarts in a minute


def test_exponential_delay_gives_up_after_its_attempts_in_a_row() -> None:
    strategy = RestartStrategy.exponential_delay(1.0, multiplier=2.0, jitter=0.0, attempts=3)
    assert delays(RestartTracker(strategy), 5) == [1.0, 2.0, 4.0, None, None]


def test_exponential_delay_resets_after_an_attempt_ran_stably() -> None:
    strategy = RestartStrategy.exponential_delay(1.0, multiplier=2.0, jitter=0.0, reset_after=30.0, attempts=3)
    tracker = RestartTracker(strategy)
    assert delays(tracker, 3) == [1.0, 2.0, 4.0]
    tracker.attempt_started(100.0)
    assert tracker.on_failure(129.0) is None  # ran 29 s: not stable, so the 4th restart of 3
    tracker = RestartTracker(strategy)
    assert delays(tracker, 3) == [1.0, 2.0, 4.0]
    tracker.attempt_started(100.0)
    assert tracker.on_failure(130.0) == 1.0  # ran 30 s: back to the initial delay
    assert tracker.restarts_in_a_row == 1
    assert delays(tracker, 3, at=131.0) == [2.0, 4.0, None]  # and the attempt count starts over


def test_exponential_delay_jitter_spreads_each_delay_within_its_fraction() -> None:
    strategy = RestartStrategy.exponential_delay(10.0, multiplier=1.0, max_delay=10.0, jitter=0.2)
    low = RestartTracker(strategy, random=lambda: 0.0)
    high = RestartTracker(strategy, random=lambda: 0.999999)
    assert delays(low, 1) == [8.0]
    assert delays(high, 1)[0] == pytest.approx(10.0)  # never beyond max_delay
    drawn = delays(RestartTracker(strategy), 200)
    assert all(d is not None and 8.0 <= d <= 10.0 for d in drawn)
    # really random: about half are clamped to the cap, the others all differ
    assert len({round(d or 0, 6) for d in drawn if d is not None and d < 10.0}) > 50


def test_exponential_delay_jitter_below_the_cap_goes_both_ways() -> None:
    strategy = RestartStrategy.exponential_delay(4.0, multiplier=1.0, max_delay=100.0, jitter=0.5)
    assert delays(RestartTracker(strategy, random=lambda: 0.0), 1) == [2.0]
    assert delays(RestartTracker(strategy, random=lambda: 0.75), 1) == [5.0]


def test_exponential_delay_takes_timedeltas() -> None:
    strategy = RestartStrategy.exponential_delay(
        timedelta(milliseconds=500), max_delay=timedelta(minutes=2), reset_after=timedelta(minutes=10)
    )
    assert (strategy.delay, strategy.max_delay, strategy.reset_after) == (0.5, 120.0, 600.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_delay": 0}, r"initial_delay must be > 0 seconds .*got 0\.0"),
        ({"initial_delay": -1}, r"initial_delay must be > 0 seconds"),
        ({"multiplier": 0.5}, r"multiplier must be >= 1 .*got 0\.5"),
        ({"multiplier": "2"}, r"multiplier must be a number, got '2'"),
        ({"max_delay": 0.5}, r"max_delay must be >= initial_delay \(1 s\), got 0\.5"),
        ({"jitter": 1.5}, r"jitter must be a fraction from 0 to 1, got 1\.5"),
        ({"jitter": -0.1}, r"jitter must be a fraction from 0 to 1"),
        ({"reset_after": 0}, r"reset_after must be > 0 seconds"),
        ({"attempts": 0}, r"attempts must be None \(no limit\) or an int >= 1, got 0"),
        ({"attempts": True}, r"attempts must be None \(no limit\) or an int >= 1, got True"),
        ({"max_delay": "1m"}, r"max_delay must be seconds \(float\) or a timedelta, got '1m'"),
    ],
)
def test_exponential_delay_refuses_bad_settings_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RestartStrategy.exponential_delay(**kwargs)  # type: ignore[arg-type]


def test_describe_says_what_the_strategy_does() -> None:
    assert RestartStrategy.exponential_delay().describe() == (
        "exponential delay 1s x1.5 up to 60s, jitter 0.1, reset after 3600s without failure, no attempt limit"
    )
    assert RestartStrategy.fixed_delay(3, 0.5).describe() == "fixed delay 0.5s, 3 attempts"
    assert RestartStrategy.none().describe() == "no restarts"


def test_the_environment_default_is_exponential_delay() -> None:
    env = StreamEnvironment()
    assert env._restart == RestartStrategy.exponential_delay()


# -- the other strategies ---------------------------------------------------------------------


def test_fixed_delay_waits_its_delay_and_gives_up_after_its_attempts() -> None:
    assert delays(RestartTracker(RestartStrategy.fixed_delay(2, 0.25)), 3) == [0.25, 0.25, None]


def test_fixed_delay_refuses_no_attempts() -> None:
    with pytest.raises(ConfigError, match=r"fixed_delay attempts must be an int >= 1, got 0; use RestartStrategy.none"):
        RestartStrategy.fixed_delay(0)


def test_failure_rate_counts_failures_within_its_interval() -> None:
    tracker = RestartTracker(RestartStrategy.failure_rate(max_failures=2, interval=10, delay=0.5))
    assert [tracker.on_failure(t) for t in (0.0, 1.0)] == [0.5, 0.5]
    assert tracker.on_failure(2.0) is None  # a third within 10 s
    tracker = RestartTracker(RestartStrategy.failure_rate(max_failures=2, interval=10, delay=0.5))
    assert [tracker.on_failure(t) for t in (0.0, 1.0, 11.5, 12.0, 12.5)] == [0.5, 0.5, 0.5, 0.5, None]


def test_none_never_restarts() -> None:
    assert delays(RestartTracker(RestartStrategy.none()), 1) == [None]
