from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import pickle

import pytest

from streamflow.checkpoint import serde
from streamflow.errors import CheckpointCorruptedError, CheckpointError


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serde, "_warned", set())


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def test_json_round_trip_uses_json_tag() -> None:
    value = {"count": 3, "names": ["a", "b"], "nested": {"f": 1.5, "none": None, "ok": True}}
    data = serde.encode(value)
    assert data[:1] == serde.JSON_TAG
    assert serde.decode(data) == value


def test_json_turns_tuples_into_lists_and_int_keys_into_str() -> None:
    assert serde.decode(serde.encode({"t": (1, 2)})) == {"t": [1, 2]}
    assert serde.decode(serde.encode({1: "a"})) == {"1": "a"}


@pytest.mark.parametrize(
    "value",
    [
        {1, 2, 3},
        {"s": frozenset({"a"})},
        2**70,
        {"big": [-(2**80)]},
        {(1, 2): "tuple key"},
        b"raw bytes",
        Point(1, 2),
        {"when": datetime.datetime(2024, 1, 2, 3, 4, 5)},
    ],
    ids=["set", "nested-frozenset", "bigint", "nested-bigint", "tuple-key", "bytes", "dataclass", "datetime"],
)
def test_fallback_to_pickle_round_trips(value: object) -> None:
    data = serde.encode(value)
    assert data[:1] == serde.PICKLE_TAG
    assert pickle.loads(data[1:]) == value
    assert serde.decode(data) == value


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_pickled_not_nulled(bad: float) -> None:
    data = serde.encode({"max": bad, "other": None})
    assert data[:1] == serde.PICKLE_TAG
    restored = serde.decode(data)["max"]
    assert restored == bad or (math.isnan(bad) and math.isnan(restored))


def test_plain_none_stays_json() -> None:
    assert serde.encode({"v": None})[:1] == serde.JSON_TAG


def test_fallback_warns_once_per_type(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=serde.__name__):
        serde.encode({1, 2})
        serde.encode({3})
        serde.encode(Point(0, 0))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "state of type set is not JSON-encodable; stored with pickle" in messages[0]
    assert "same classes importable" in messages[0]
    assert "Point" in messages[1]


def test_no_warning_for_json(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        serde.encode({"a": [1, 2]})
    assert not caplog.records


@pytest.mark.parametrize("data", [b"", b"X{}", b"J{not json", b"Pnot a pickle"])
def test_decode_rejects_damaged_bytes(data: bytes) -> None:
    with pytest.raises(CheckpointCorruptedError, match="damaged"):
        serde.decode(data)


def test_decode_names_missing_class() -> None:
    data = serde.PICKLE_TAG + pickle.dumps(Point(1, 2), protocol=5).replace(b"Point", b"Gone_")
    with pytest.raises(CheckpointError, match="cannot be imported"):
        serde.decode(data)
