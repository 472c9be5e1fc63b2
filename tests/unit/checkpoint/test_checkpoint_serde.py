"""The snapshot envelope: pickle, exact; old orjson blobs still decode; unpicklable state
named by operator, subtask, state and type."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import math
import pickle
import socket
import threading
import uuid
from typing import Any

import orjson
import pytest

from streamflow.checkpoint import serde
from streamflow.errors import CheckpointCorruptedError, CheckpointError, StateSerializationError


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Holder:
    def __init__(self, inner: Any) -> None:
        self.inner = inner


@pytest.mark.parametrize(
    "value",
    [
        {"t": (1, (2, "x"))},
        {1: "int key", 2.5: "float key", None: "none key", True: "bool key", (1, "a"): "tuple key"},
        {1, 2, 3},
        {"s": frozenset({"a"})},
        2**70,
        b"raw bytes",
        Point(1, 2),
        {"when": datetime.datetime(2024, 1, 2, 3, 4, 5), "day": datetime.date(2024, 1, 2)},
        [decimal.Decimal("1.10"), uuid.UUID(int=7)],
        [math.inf, -0.0],
    ],
    ids=["tuples", "key-types", "set", "frozenset", "bigint", "bytes", "dataclass", "datetimes", "decimal-uuid",
         "floats"],  # fmt: skip
)
def test_encode_is_pickle_and_exact(value: Any) -> None:
    data = serde.encode(value)
    assert data[:1] == serde.PICKLE_TAG
    restored = serde.decode(data)
    assert restored == value
    assert repr(restored) == repr(value)  # types too: a tuple would print as (..), a list as [..]


def test_nan_survives() -> None:
    assert math.isnan(serde.decode(serde.encode({"v": math.nan}))["v"])


def test_old_json_blobs_still_decode() -> None:
    """What the encoder before exact state types wrote for plain state: tag J + orjson."""
    old = serde.JSON_TAG + orjson.dumps({"keyed": {"format": 1, "states": {}}, "t": [1, 2]})
    assert serde.decode(old) == {"keyed": {"format": 1, "states": {}}, "t": [1, 2]}


@pytest.mark.parametrize("data", [b"", b"X{}", b"J{not json", b"Pnot a pickle"])
def test_decode_rejects_damaged_bytes(data: bytes) -> None:
    with pytest.raises(CheckpointCorruptedError, match="damaged"):
        serde.decode(data)


def test_decode_names_missing_class() -> None:
    data = serde.PICKLE_TAG + pickle.dumps(Point(1, 2), protocol=5).replace(b"Point", b"Gone_")
    with pytest.raises(CheckpointError, match="cannot be imported"):
        serde.decode(data)


def keyed_snapshot(value: Any) -> dict[str, Any]:
    return {
        "keyed": {
            "format": 2,
            "states": {
                "fine": {"kind": "value", "ttl": False, "serializer": "pickle", "key_groups": {1: {"a": 1}}},
                "acc": {"kind": "value", "ttl": False, "serializer": "pickle", "key_groups": {3: {"ok": 1, "bob": value}}},
            },
        },
        "timers": {"processing": [], "event": []},
    }


def test_a_lambda_in_keyed_state_names_operator_subtask_state_key_and_type() -> None:
    with pytest.raises(StateSerializationError) as caught:
        serde.encode(keyed_snapshot({"rule": [1, lambda x: x]}), operator="count", subtask=2)
    error = caught.value
    assert (error.operator, error.subtask, error.state, error.value_type) == ("count", 2, "acc", "function")
    assert error.path == "value['rule'][1]"
    assert str(error).startswith(
        "operator 'count' (subtask 2): keyed state 'acc' (key 'bob') holds a value of type function that cannot be "
        "pickled (at value['rule'][1])"
    )
    assert "create them in open()" in str(error)


def test_an_object_attribute_is_followed_to_the_culprit() -> None:
    with pytest.raises(StateSerializationError, match=r"type _thread\.lock .* \(at value\.inner\[0\]\)"):
        serde.encode(keyed_snapshot(Holder([threading.Lock()])), operator="op", subtask=0)


def test_unpicklable_operator_state_source_split_and_timer_key() -> None:
    with socket.socket() as sock:
        operator_state = {"operator": {"format": 2, "states": {"buffer": {"mode": "split", "serializer": "pickle",
                                                                          "items": ["a", ("b", sock)]}}}}  # fmt: skip
        with pytest.raises(StateSerializationError) as caught:
            serde.encode(operator_state, operator="buffering", subtask=0)
        assert caught.value.state == "buffer"
        assert "operator state 'buffer' (item 1) holds a value of type socket.socket" in str(caught.value)
        assert caught.value.path == "item[1]"
    with pytest.raises(StateSerializationError, match="source split 0 holds a value of type generator"):
        serde.encode({"source": [(x for x in ())]}, operator="src", subtask=1)
    lock = threading.Lock()
    with pytest.raises(StateSerializationError, match="a processing-time timer holds a value of type _thread.lock"):
        serde.encode({"timers": {"processing": [(1.0, 3, lock)], "event": []}}, operator="op", subtask=0)
