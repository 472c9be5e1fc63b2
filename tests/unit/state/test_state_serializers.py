"""The serializers themselves: pickle exact, JSON only for what JSON round-trips, and
descriptors that refuse a serializer that cannot serve."""

from __future__ import annotations

import collections
import enum
import math
import operator
from typing import Any

import pytest

from streamflow.errors import ConfigError, StateSerializationError
from streamflow.state import (
    AggregatingStateDescriptor,
    JsonSerializer,
    ListStateDescriptor,
    MapStateDescriptor,
    PickleSerializer,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)

JSON = JsonSerializer()


class Colour(enum.Enum):
    RED = "red"


class Tag(str):
    pass


class Counts(collections.Counter[str]):
    pass


JSON_EXACT: list[Any] = [
    None,
    True,
    0,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.0,
    1e300,
    "",
    "tekst ✓",
    [],
    {},
    [1, "a", None, [2.5, {"k": [True]}]],
    {"a": {"b": {"c": [1, 2, {"d": None}]}}},
]


@pytest.mark.parametrize("value", JSON_EXACT, ids=[repr(v)[:30] for v in JSON_EXACT])
def test_json_accepts_and_round_trips_what_json_holds_exactly(value: Any) -> None:
    back = JSON.loads(JSON.dumps(value))
    assert back == value and repr(back) == repr(value)


REFUSED: list[tuple[Any, str, str, str]] = [
    ((1, 2), "value", "tuple", "JSON has arrays only: it would come back as a list"),
    ([1, (2, 3)], "value[1]", "tuple", "it would come back as a list"),
    ({"a": {1: "x"}}, "value['a']", "int", "a dict with the key 1 of type int: JSON object keys are str"),
    ({None: 1}, "value", "NoneType", "JSON object keys are str"),
    ({"s": {1, 2}}, "value['s']", "set", "JSON has no sets"),
    (frozenset(), "value", "frozenset", "JSON has no sets"),
    ([math.nan], "value[0]", "float", "nan: JSON has no NaN or infinity"),
    ({"x": -math.inf}, "value['x']", "float", "-inf: JSON has no NaN or infinity"),
    (2**64, "value", "int", "an int beyond 64 bits"),
    ([-(2**63) - 1], "value[0]", "int", "an int beyond 64 bits"),
    (b"raw", "value", "bytes", "JSON has no bytes"),
    (Tag("x"), "value", "Tag", "a subclass of str: it would come back as a plain str"),
    (Counts(a=1), "value", "Counts", "a subclass of dict"),
    (collections.OrderedDict(a=1), "value", "collections.OrderedDict", "a subclass of dict"),
    (Colour.RED, "value", "Colour", "which JSON cannot store"),
]


@pytest.mark.parametrize(("value", "path", "type_name", "reason"), REFUSED, ids=[repr(r[0])[:30] for r in REFUSED])
def test_json_refuses_what_would_not_come_back_exactly(value: Any, path: str, type_name: str, reason: str) -> None:
    with pytest.raises(StateSerializationError) as caught:
        JSON.dumps(value)
    assert caught.value.path == path
    assert caught.value.value_type.endswith(type_name)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"{path} is ")


def test_json_refuses_nesting_deeper_than_the_encoder_allows() -> None:
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(StateSerializationError, match="nested deeper than 254 levels"):
        JSON.dumps(deep)


def test_pickle_is_exact_and_the_default() -> None:
    value = {(1, "a"): [frozenset({1}), Colour.RED, Tag("t"), 2**100]}
    back = PickleSerializer().loads(PickleSerializer().dumps(value))
    assert back == value and type(back[(1, "a")][2]) is Tag
    assert ValueStateDescriptor("v").effective_serializer == PickleSerializer()
    assert ValueStateDescriptor("v", serializer=JSON).effective_serializer is JSON
    assert (PickleSerializer().name, JSON.name) == ("pickle", "json")


class Msgpackish:
    name = "reversed-json"

    def dumps(self, value: Any) -> bytes:
        return JSON.dumps(value)[::-1]

    def loads(self, data: bytes) -> Any:
        return JSON.loads(data[::-1])


class Avg:
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + value, acc[1] + 1)

    def get_result(self, acc: tuple[int, int]) -> float:
        return acc[0] / acc[1]


def every_descriptor(serializer: Any) -> list[Any]:
    return [
        ValueStateDescriptor("v", serializer=serializer),
        ListStateDescriptor("l", serializer=serializer),
        MapStateDescriptor("m", serializer=serializer),
        ReducingStateDescriptor("r", operator.add, serializer=serializer),
        AggregatingStateDescriptor("a", aggregate_fn=Avg(), serializer=serializer),
    ]


def test_every_descriptor_takes_a_serializer_of_your_own() -> None:
    for descriptor in every_descriptor(Msgpackish()):
        assert descriptor.effective_serializer.name == "reversed-json"


class NoName:
    def dumps(self, value: Any) -> bytes:
        return b""

    def loads(self, data: bytes) -> Any:
        return None


class NotCallable:
    name = "x"
    dumps = b""


class FakePickle(Msgpackish):
    name = "pickle"


@pytest.mark.parametrize(
    ("serializer", "message"),
    [
        (NoName(), "lacks a non-empty str name"),
        (NotCallable(), "lacks a callable dumps and a callable loads"),
        ("json", "lacks a non-empty str name and a callable dumps and a callable loads"),
        (FakePickle(), "is named 'pickle', the name of the default PickleSerializer"),
    ],
    ids=["no-name", "not-callable", "a-string", "reserved-name"],
)
def test_a_serializer_that_cannot_serve_is_refused_at_build_time(serializer: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ValueStateDescriptor("v", serializer=serializer)
    with pytest.raises(ConfigError, match=r"MapStateDescriptor 'm': serializer .* lacks|MapStateDescriptor 'm': .*'pickle'"):
        MapStateDescriptor("m", serializer=serializer)
