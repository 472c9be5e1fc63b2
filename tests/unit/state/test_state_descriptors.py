"""Descriptors and StateTtlConfig: inert frozen values, refused with a helpful ConfigError."""

from __future__ import annotations

import dataclasses
import operator
from datetime import timedelta
from typing import Any

import pytest

from streamflow.errors import ConfigError
from streamflow.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    TtlUpdateType,
    TtlVisibility,
    ValueStateDescriptor,
)


class Average:
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> float:
        return accumulator[0] / accumulator[1]


def test_descriptors_carry_name_kind_and_defaults() -> None:
    assert ValueStateDescriptor("v", default=5).default == 5
    assert ValueStateDescriptor("v").default is None
    assert ListStateDescriptor("l").kind == "list"
    assert MapStateDescriptor("m").kind == "map"
    assert ReducingStateDescriptor("r", operator.add).reduce_fn is operator.add
    assert ReducingStateDescriptor("r", reduce_fn=operator.add).kind == "reducing"
    assert AggregatingStateDescriptor("a", aggregate_fn=Average()).kind == "aggregating"
    assert ValueStateDescriptor("v").ttl is None


def test_descriptors_are_frozen_and_compare_by_value() -> None:
    descriptor = ValueStateDescriptor("v", default=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        descriptor.name = "w"  # type: ignore[misc]
    assert descriptor == ValueStateDescriptor("v", default=1)
    assert descriptor != ValueStateDescriptor("v", default=2)


def test_only_the_name_is_positional_for_value_state() -> None:
    make: Any = ValueStateDescriptor  # Any: the call below is wrong on purpose
    with pytest.raises(TypeError):
        make("v", 5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ValueStateDescriptor(""),
        lambda: ListStateDescriptor(""),
        lambda: MapStateDescriptor(3),  # type: ignore[arg-type]
    ],
)
def test_empty_or_non_str_name_is_refused(make: Any) -> None:
    with pytest.raises(ConfigError, match="non-empty str name"):
        make()


def test_non_callable_reduce_fn_is_refused() -> None:
    with pytest.raises(ConfigError, match="reduce_fn must be callable"):
        ReducingStateDescriptor("sum", reduce_fn=42)  # type: ignore[arg-type]


def test_aggregate_fn_without_methods_is_refused() -> None:
    with pytest.raises(ConfigError, match="lacks callable create_accumulator, add, get_result"):
        AggregatingStateDescriptor("avg", aggregate_fn=object())  # type: ignore[arg-type]


def test_ttl_must_be_a_state_ttl_config() -> None:
    with pytest.raises(ConfigError, match="wrap the duration"):
        ValueStateDescriptor("v", ttl=60.0)  # type: ignore[arg-type]


def test_ttl_config_defaults_and_timedelta() -> None:
    config = StateTtlConfig(ttl=timedelta(minutes=2))
    assert config.ttl == 120.0
    assert config.update_type is TtlUpdateType.ON_CREATE_AND_WRITE
    assert config.visibility is TtlVisibility.NEVER_RETURN_EXPIRED
    assert config.cleanup_on_read is True
    assert config.cleanup_full_snapshot is False
    assert config.cleanup_incremental == 0
    assert config.incremental_per_record is False
    assert StateTtlConfig(ttl=5) == StateTtlConfig(ttl=5.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": 0}, "ttl must be > 0"),
        ({"ttl": -1.0}, "ttl must be > 0"),
        ({"ttl": "10"}, "seconds"),
        ({"ttl": 1, "update_type": "on_read_and_write"}, "must be a TtlUpdateType"),
        ({"ttl": 1, "visibility": None}, "must be a TtlVisibility"),
        ({"ttl": 1, "cleanup_on_read": 1}, "cleanup_on_read must be True or False"),
        ({"ttl": 1, "cleanup_incremental": -1}, "cleanup_incremental must be an int >= 0"),
        ({"ttl": 1, "cleanup_incremental": True}, "cleanup_incremental must be an int >= 0"),
        ({"ttl": 1, "incremental_per_record": True}, "needs cleanup_incremental > 0"),
    ],
)
def test_invalid_ttl_config_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StateTtlConfig(**kwargs)
