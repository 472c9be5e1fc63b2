"""WatermarkStrategy: construction, validation at build time, and its generators."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError
from datetime import timedelta
from typing import Any

import pytest

from streamflow.errors import ConfigError
from streamflow.eventtime import (
    BoundedOutOfOrdernessWatermarks,
    WatermarkGenerator,
    WatermarkOutput,
    WatermarkStrategy,
)


class Recorder:
    """A WatermarkOutput that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def emit_watermark(self, timestamp: float) -> None:
        self.calls.append(timestamp)

    def mark_idle(self) -> None:
        self.calls.append("idle")

    def mark_active(self) -> None:
        self.calls.append("active")


def test_bounded_generator_trails_the_newest_timestamp_by_the_bound_and_a_microsecond() -> None:
    generator = WatermarkStrategy.for_bounded_out_of_orderness(5.0).create_generator()
    out = Recorder()
    generator.on_periodic_emit(out)
    assert out.calls == []  # nothing before the first record
    for ts in (10.0, 12.0, 11.0):
        generator.on_event(None, ts, out)
    generator.on_periodic_emit(out)
    assert out.calls == [12.0 - 5.0 - 1e-6]


def test_monotonous_is_bounded_by_zero() -> None:
    generator = WatermarkStrategy.for_monotonous_timestamps().create_generator()
    assert isinstance(generator, BoundedOutOfOrdernessWatermarks)
    out = Recorder()
    generator.on_event(None, 100.0, out)
    generator.on_periodic_emit(out)
    assert out.calls == [100.0 - 1e-6]


def test_each_create_generator_is_a_new_instance() -> None:
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(1)
    first, second = strategy.create_generator(), strategy.create_generator()
    assert first is not second


def test_refinements_return_new_frozen_strategies() -> None:
    base = WatermarkStrategy.for_bounded_out_of_orderness(timedelta(seconds=3))
    refined = base.with_timestamp_assigner(lambda e: e["ts"]).with_idleness(timedelta(minutes=1)).with_emit_interval(0.5)
    assert base.idle_timeout is None and base.timestamp_assigner is None and base.emit_interval == 0.2
    assert refined.idle_timeout == 60.0
    assert refined.emit_interval == 0.5
    assert refined.timestamp_assigner is not None and refined.timestamp_assigner({"ts": 7.0}) == 7.0
    with pytest.raises(FrozenInstanceError):
        refined.idle_timeout = 3.0  # type: ignore[misc]


def test_built_in_strategies_copy_and_pickle_equal() -> None:
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(2.5).with_idleness(10)
    assert copy.deepcopy(strategy) == strategy
    assert pickle.loads(pickle.dumps(strategy)) == strategy


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness(-1), r"for_bounded_out_of_orderness\(bound\) must be finite seconds >= 0, got -1"),
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness(float("nan")), "got nan"),
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness(float("inf")), "got inf"),
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness("5"), r"must be seconds .* got '5'"),  # type: ignore[arg-type]
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness(True), "got True"),  # type: ignore[arg-type]
        (lambda: WatermarkStrategy.for_monotonous_timestamps().with_idleness(0), r"with_idleness\(timeout\) must be finite seconds > 0, got 0"),
        (lambda: WatermarkStrategy.for_monotonous_timestamps().with_idleness(-5), "got -5"),
        (lambda: WatermarkStrategy.for_monotonous_timestamps().with_emit_interval(0), r"with_emit_interval\(interval\) .* got 0"),
        (lambda: WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner("ts"), "with_timestamp_assigner needs fn"),  # type: ignore[arg-type]
        (lambda: WatermarkStrategy.for_generator(42), r"for_generator\(factory\) needs a callable"),  # type: ignore[arg-type]
        (lambda: WatermarkStrategy.for_generator(lambda: "nope"), "returned 'nope', which lacks on_event"),  # type: ignore[arg-type,return-value]
    ],
)
def test_bad_configuration_is_refused_at_build_time_saying_what_to_change(make: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_error_names_the_strategy_it_refines() -> None:
    with pytest.raises(ConfigError, match=r"WatermarkStrategy\.for_bounded_out_of_orderness\(2\.0\)\.with_idleness"):
        WatermarkStrategy.for_bounded_out_of_orderness(2).with_idleness(-1)


class EveryTenth(WatermarkGenerator):
    """A punctuated generator: a watermark on every record whose id ends in 0."""

    def on_event(self, event: Any, timestamp: float, output: WatermarkOutput) -> None:
        if event["id"] % 10 == 0:
            output.emit_watermark(timestamp)


def test_for_generator_makes_the_users_generator() -> None:
    strategy = WatermarkStrategy.for_generator(EveryTenth)
    generator = strategy.create_generator()
    assert isinstance(generator, EveryTenth)
    out = Recorder()
    generator.on_event({"id": 9}, 1.0, out)
    generator.on_event({"id": 10}, 2.0, out)
    generator.on_periodic_emit(out)  # the base class does nothing periodically
    assert out.calls == [2.0]
