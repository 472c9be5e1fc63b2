"""The RocksDB key layout: canonical (equal keys, equal bytes), exact (types come back
through the kept originals), and ordered by key group first."""

from __future__ import annotations

import datetime
import enum
import struct
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.errors import StateError
from streamflow.windowing import TimeWindow
from streamflow.state.rocksdb.keys import (
    decode_key,
    encode_key,
    entry_key,
    key_group_bounds,
    read_varint,
    split_entry_key,
    successor,
    varint,
)


class Level(enum.IntEnum):
    LOW = 1


class Colour(str, enum.Enum):
    RED = "red"


class Point(NamedTuple):
    x: Any
    y: Any


UTC = datetime.timezone.utc
PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))

EQUAL_KEYS: list[list[Any]] = [
    [1, True, 1.0, Decimal(1), Decimal("1.00"), Fraction(2, 2), Level.LOW, complex(1, 0)],
    [0, False, 0.0, -0.0, Decimal("-0")],
    [0.5, Decimal("0.5"), Fraction(1, 2)],
    [Decimal("0.1"), Decimal("0.10"), Fraction(1, 10)],
    ["red", Colour.RED],
    [(1, "a"), (True, "a"), (1.0, "a"), Point(1, "a")],
    [frozenset({1, 2}), frozenset({2.0, True})],
    [datetime.datetime(2024, 5, 1, 12, tzinfo=UTC), datetime.datetime(2024, 5, 1, 14, tzinfo=PLUS_TWO)],
    [2**100, Decimal(2**100)],
]


def test_equal_keys_encode_to_equal_bytes_and_unequal_ones_do_not() -> None:
    encodings = []
    for equal in EQUAL_KEYS:
        assert all(a == b and hash(a) == hash(b) for a in equal for b in equal)  # the premise
        found = {encode_key(key)[0] for key in equal}
        assert len(found) == 1, equal
        encodings.append(found.pop())
    assert len(set(encodings)) == len(EQUAL_KEYS)


def test_the_exact_flag_says_whether_decoding_gives_the_same_type_back() -> None:
    for equal in EQUAL_KEYS:
        for key in equal:
            data, exact = encode_key(key)
            decoded = decode_key(data)
            assert decoded == key
            assert exact == _same_types(decoded, key), key


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return all(_same_types(x, y) for x, y in zip(a, b))
    if isinstance(a, frozenset):
        return all(_same_types(x, next(y for y in b if y == x)) for x in a)
    if isinstance(a, datetime.datetime):
        return a.tzinfo is b.tzinfo
    return True


key_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6), st.binary(max_size=6),
    st.decimals(allow_nan=False, places=2), st.fractions(max_denominator=50), st.dates(), st.datetimes(),
    st.datetimes(timezones=st.sampled_from([UTC, PLUS_TWO])), st.uuids(), st.sampled_from(Level),
    st.sampled_from(Colour),
)  # fmt: skip
keys = st.recursive(
    key_leaves,
    lambda inner: st.one_of(st.tuples(inner, inner), st.builds(Point, inner, inner), st.frozensets(inner, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(a=keys, b=keys)
def test_encoding_agrees_with_key_equality(a: Any, b: Any) -> None:
    data_a, exact_a = encode_key(a)
    data_b, _ = encode_key(b)
    assert (data_a == data_b) == (a == b)
    decoded = decode_key(data_a)
    assert decoded == a and hash(decoded) == hash(a)
    if exact_a:
        assert _same_types(decoded, a)


class Tag(enum.Enum):
    A = "a"


def test_other_hashables_fall_back_to_pickle_and_unpicklable_ones_are_refused() -> None:
    data, exact = encode_key(Tag.A)
    assert data[:1] == b"P" and exact and decode_key(data) is Tag.A

    class Local:
        pass

    with pytest.raises(StateError, match="key <.*Local object at .*> of type .*Local cannot be stored in RocksDB "
                       "state: .* it does not pickle"):  # fmt: skip
        encode_key(Local())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 3), keys), min_size=1, max_size=40))
def test_entry_keys_sort_by_key_group_then_state_and_split_back(entries: list[tuple[int, int, Any]]) -> None:
    encoded = [(group, state, encode_key(key)[0]) for group, state, key in entries]
    raw = sorted(entry_key(group, state, data) for group, state, data in encoded)
    groups = [split_entry_key(item)[:2] for item in raw]
    assert groups == sorted(groups)  # a key-group range (and a state in it) is contiguous
    assert sorted(split_entry_key(item)[:3] for item in raw) == sorted(encoded)
    low, high = key_group_bounds(range(10, 20))
    inside = [item for item in raw if low <= item < high]
    assert [split_entry_key(item)[0] for item in inside] == sorted(g for g, _, _ in encoded if 10 <= g < 20)


def test_a_key_is_never_a_prefix_of_another_keys_entries() -> None:
    short = entry_key(3, 1, encode_key("ab")[0])
    longer = entry_key(3, 1, encode_key("abc")[0])
    assert not longer.startswith(short)
    assert short < successor(short) <= longer or not longer.startswith(short)


def test_varints_round_trip() -> None:
    for n in (0, 1, 127, 128, 300, 2**20, 2**40):
        data = varint(n)
        assert read_varint(data + b"rest", 0) == (n, len(data))


def test_uuid_and_date_keys_round_trip() -> None:
    for key in (uuid.UUID(int=7), datetime.date(2020, 2, 29), datetime.datetime(2020, 1, 1, 0, 0, 1, 5)):
        data, exact = encode_key(key)
        assert exact and decode_key(data) == key and type(decode_key(data)) is type(key)


def test_a_time_window_is_sixteen_bytes_of_its_bounds_and_comes_back_exactly() -> None:
    window = TimeWindow(120.0, 180.0)
    data, exact = encode_key(window)
    assert data == b"W" + struct.pack(">dd", 120.0, 180.0)
    back = decode_key(data)
    assert exact and type(back) is TimeWindow and back == window and back.max_timestamp == window.max_timestamp
    nested, nested_exact = encode_key(("user-1", window))
    assert nested_exact and decode_key(nested) == ("user-1", window)
    assert encode_key(TimeWindow(1.5, 2.5))[0] != encode_key(TimeWindow(1.5, 3.5))[0]


def test_a_window_starting_at_minus_zero_is_the_zero_key_and_not_exact() -> None:
    minus, minus_exact = encode_key(TimeWindow(-0.0, 60.0))
    plus, plus_exact = encode_key(TimeWindow(0.0, 60.0))
    assert minus == plus and plus_exact and not minus_exact
