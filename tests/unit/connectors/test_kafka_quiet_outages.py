"""Pure parts of riding out a broker outage quietly: the reconnect backoff of a client,
and the filter that rate-limits aiokafka's repeated warnings (times are injected)."""

from __future__ import annotations

import logging

import pytest

from streamflow.connectors.kafka.clients import ReconnectBackoff
from streamflow.connectors.kafka.log_filter import AIOKAFKA_LOGGERS, RepeatFilter, install_log_filter


def test_backoff_doubles_from_the_retry_backoff_to_its_cap_and_marks_the_outage() -> None:
    backoff = ReconnectBackoff(initial=0.1, maximum=1.0)
    assert backoff.succeeded(0.0) is None  # no outage yet
    steps = [backoff.failed(float(t)) for t in range(7)]
    assert [round(delay, 3) for delay, _ in steps] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert [started for _, started in steps] == [True] + [False] * 6  # one outage, announced once
    assert backoff.succeeded(61.5) == (61.5, 7)
    assert backoff.failed(70.0) == (0.1, True)  # a new outage starts over


def test_backoff_keeps_a_sane_delay_after_very_many_failures() -> None:
    backoff = ReconnectBackoff(initial=0.1, maximum=1.0)
    for t in range(10_000):
        delay, _ = backoff.failed(float(t))
    assert delay == 1.0


def record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_first_of_each_kind_passes_then_repeats_are_dropped_for_the_window() -> None:
    now = [0.0]
    repeats = RepeatFilter(window=60.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    assert repeats.filter(record(template, 1, "refused"))
    assert repeats.filter(record("Unable to update metadata from %s", [1]))  # another kind
    assert repeats.filter(record(template, 1, "refused", name="aiokafka.consumer.fetcher"))  # another logger
    for step in range(1, 500):
        now[0] = step * 0.1
        assert not repeats.filter(record(template, 1, "refused"))
    assert repeats.dropped_total == 499


def test_after_the_window_one_passes_with_the_count_of_those_dropped() -> None:
    now = [0.0]
    repeats = RepeatFilter(window=60.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    repeats.filter(record(template, 1, "refused"))
    now[0] = 10.0
    assert not repeats.filter(record(template, 1, "refused"))
    assert not repeats.filter(record(template, 1, "refused"))
    now[0] = 61.0
    later = record(template, 1, "refused again")
    assert repeats.filter(later)
    assert later.getMessage() == (
        "Unable connect to node with id 1: refused again (2 more like it in the last 61 s not logged)"
    )
    now[0] = 200.0
    quiet = record(template, 1, "refused")
    assert repeats.filter(quiet) and quiet.getMessage() == "Unable connect to node with id 1: refused"


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
def test_debug_and_info_pass_untouched(level: int) -> None:
    repeats = RepeatFilter(clock=lambda: 0.0)
    assert all(repeats.filter(record("Discovered coordinator %s", 1, level=level)) for _ in range(10))


def test_the_filter_sits_once_on_every_aiokafka_logger() -> None:
    installed = install_log_filter()
    assert install_log_filter() is installed
    for name in AIOKAFKA_LOGGERS:
        assert logging.getLogger(name).filters.count(installed) == 1
