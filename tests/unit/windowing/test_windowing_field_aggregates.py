"""The built-in field aggregations (sum, min, max, min_by, max_by, mean, count) in the
window logic, against results computed by hand: tumbling, sliding, session windows whose
merges join sessions, count windows; fields by position, dict key and attribute; what a
bad record raises; what is refused at build time; accumulators kept type for type."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from streamflow.errors import ConfigError
from streamflow.testing.windows import WindowHarness
from streamflow.windowing import (
    Count,
    EventTimeSessionWindows,
    FieldValueError,
    Max,
    MaxBy,
    Mean,
    Min,
    MinBy,
    SlidingEventTimeWindows,
    Sum,
    TumblingEventTimeWindows,
    WindowConfig,
    WindowEmission,
    count_window,
)

MINUTE = TumblingEventTimeWindows.of(60.0)
END_0 = 59.999999
END_1 = 119.999999


@dataclass(frozen=True)
class Order:
    user: str
    cents: int


# (key, record, timestamp): a's minute 0 holds 5, 2, 9; a's minute 1 holds 4; b's minute 0 holds 7
TUPLES = [("a", ("a", 5), 1.0), ("b", ("b", 7), 3.0), ("a", ("a", 2), 30.0), ("a", ("a", 4), 61.0),
          ("a", ("a", 9), 59.0)]


def fired(aggregate: Any, elements: list[tuple[str, Any, float]], assigner: Any = MINUTE) -> list[WindowEmission]:
    harness = WindowHarness(WindowConfig(assigner=assigner, aggregate_fn=aggregate))
    for key, record, timestamp in elements:
        harness.add(key, record, timestamp)
    emitted = harness.advance_watermark(10_000.0)
    assert harness.is_empty
    return emitted


@pytest.mark.parametrize("aggregate,want", [
    (Sum(1), [16, 7, 4]),
    (Min(1), [2, 7, 4]),
    (Max(1), [9, 7, 4]),
    (MinBy(1), [("a", 2), ("b", 7), ("a", 4)]),
    (MaxBy(1), [("a", 9), ("b", 7), ("a", 4)]),
    (Mean(1), [16 / 3, 7.0, 4.0]),
    (Count(), [3, 1, 1]),
])
def test_each_built_in_over_tumbling_windows_of_tuples(aggregate: Any, want: list[Any]) -> None:
    emitted = fired(aggregate, TUPLES)
    assert emitted == [WindowEmission(want[0], END_0), WindowEmission(want[1], END_0), WindowEmission(want[2], END_1)]
    assert [type(e.value) for e in emitted] == [type(w) for w in want]


@pytest.mark.parametrize("record", [
    pytest.param(lambda user, cents: {"user": user, "cents": cents}, id="dict-key"),
    pytest.param(lambda user, cents: Order(user, cents), id="dataclass-attribute"),
])
def test_a_str_field_is_a_dict_key_or_else_an_attribute(record: Any) -> None:
    elements = [(key, record(*value), ts) for key, value, ts in TUPLES]
    assert [e.value for e in fired(Sum("cents"), elements)] == [16, 7, 4]
    assert [e.value for e in fired(MaxBy("cents"), elements)] == [record("a", 9), record("b", 7), record("a", 4)]


def test_the_first_of_equal_values_wins_in_min_by_and_max_by() -> None:
    elements = [("a", ("first", 3), 1.0), ("a", ("second", 3), 2.0), ("a", ("third", 1), 3.0)]
    assert [e.value for e in fired(MaxBy(1), elements)] == [("first", 3)]
    assert [e.value for e in fired(MinBy(1), elements[:2])] == [("first", 3)]


def test_sliding_windows_each_aggregate_the_records_they_hold() -> None:
    # size 60, slide 30: [-30, 30) holds 10; [0, 60) 10 and 20; [30, 90) 20 and 40; [60, 120) 40
    elements = [("k", ("k", 10), 5.0), ("k", ("k", 20), 45.0), ("k", ("k", 40), 70.0)]
    sliding = SlidingEventTimeWindows.of(60.0, 30.0)
    ends = [29.999999, END_0, 89.999999, END_1]
    assert fired(Sum(1), elements, sliding) == [WindowEmission(v, end) for v, end in zip([10, 30, 60, 40], ends)]
    assert [e.value for e in fired(Mean(1), elements, sliding)] == [10.0, 15.0, 30.0, 40.0]
    assert [e.value for e in fired(MinBy(1), elements, sliding)] == [("k", 10), ("k", 10), ("k", 20), ("k", 40)]


@pytest.mark.parametrize("aggregate,want", [
    (Sum(1), 1 + 2 + 3.5), (Min(1), 1), (Max(1), 3.5), (MinBy(1), ("k", 1)), (MaxBy(1), ("k", 3.5)),
    (Mean(1), (1 + 2 + 3.5) / 3), (Count(), 3),
])
def test_a_session_joining_two_sessions_merges_their_accumulators(aggregate: Any, want: Any) -> None:
    # gap 10: [0, 10) and [15, 25) are two sessions until the element at 8 joins them into [0, 25)
    elements = [("k", ("k", 1), 0.0), ("k", ("k", 3.5), 15.0), ("k", ("k", 2), 8.0)]
    emitted = fired(aggregate, elements, EventTimeSessionWindows.with_gap(10.0))
    assert emitted == [WindowEmission(want, 24.999999)]
    assert type(emitted[0].value) is type(want)


def test_merge_of_an_empty_accumulator_keeps_the_other() -> None:
    for aggregate in (Min(0), Max(0), MinBy(0), MaxBy(0)):
        some = aggregate.add((4,), aggregate.create_accumulator())
        assert aggregate.merge(aggregate.create_accumulator(), some) == some
        assert aggregate.merge(some, aggregate.create_accumulator()) == some


def test_count_windows_sum_every_three_records_of_a_key() -> None:
    parts = count_window(3)
    harness = WindowHarness(WindowConfig(
        assigner=parts.assigner, trigger=parts.trigger, evictor=parts.evictor, aggregate_fn=Sum(0),
    ))
    for value in (1, 2, 3, 4, 5, 6, 7):
        harness.add("k", (value,))
    assert [e.value for e in harness.take()] == [6, 15]


@pytest.mark.parametrize("aggregate,record,match", [
    (Sum("cents"), {"user": "a"}, r"sum\('cents'\): the record has no field 'cents' \(KeyError: 'cents'\)"),
    (Sum(2), ("a", 1), r"sum\(2\): the record has no field 2 \(IndexError: tuple index out of range\)"),
    (Min("cents"), Order("a", 1).user, r"min\('cents'\): the record has no field 'cents' \(AttributeError"),
    (Max(1), ("a", "12"), r"max\(1\): field 1 is '12' \(str\), not a number"),
    (Mean(1), ("a", None), r"mean\(1\): field 1 is None \(NoneType\), not a number"),
    (MaxBy(1), ("a", True), r"max_by\(1\): field 1 is True \(bool\), not a number"),
])
def test_a_record_without_the_field_or_with_a_non_number_raises_naming_the_field(
    aggregate: Any, record: Any, match: str
) -> None:
    with pytest.raises(FieldValueError, match=match):
        aggregate.add(record, aggregate.create_accumulator())


def test_decimals_and_fractions_are_numbers() -> None:
    elements = [("k", ("k", Decimal("0.1")), 1.0), ("k", ("k", Decimal("0.2")), 2.0)]
    assert [e.value for e in fired(Sum(1), elements)] == [Decimal("0.3")]
    elements = [("k", ("k", Fraction(1, 3)), 1.0), ("k", ("k", Fraction(1, 6)), 2.0)]
    assert [e.value for e in fired(Mean(1), elements)] == [Fraction(1, 4)]


@pytest.mark.parametrize("field", [1.5, None, True, ("a",), b"cents"])
@pytest.mark.parametrize("kind", [Sum, Min, Max, MinBy, MaxBy, Mean])
def test_a_field_that_is_not_an_int_or_str_is_refused(kind: Any, field: Any) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{kind.name}({field!r}): a field is an int (an item position")):
        kind(field)


@pytest.mark.parametrize("amounts,kind", [([3, 4], int), ([0.5, 1.25], float), ([2, 0.5], float)])
def test_a_checkpoint_keeps_each_sum_type_for_type(amounts: list[Any], kind: type) -> None:
    config = WindowConfig(assigner=MINUTE, aggregate_fn=Sum(0))
    harness = WindowHarness(config)
    harness.add("k", (amounts[0],), 1.0)
    restored = WindowHarness.restored(config, pickle.loads(pickle.dumps(harness.checkpoint())))
    restored.add("k", (amounts[1],), 2.0)
    (result,) = restored.advance_watermark(100.0)
    assert result.value == sum(amounts) and type(result.value) is kind


def test_the_built_ins_pickle_as_their_field() -> None:
    for aggregate in (Sum("x"), Min(0), Max(-1), MinBy("y"), MaxBy(2), Mean("z"), Count()):
        copy = pickle.loads(pickle.dumps(aggregate))
        assert type(copy) is type(aggregate) and repr(copy) == repr(aggregate)
        record = _record()
        assert copy.add(record, copy.create_accumulator()) == aggregate.add(record, aggregate.create_accumulator())


def _record() -> dict[Any, Any]:
    return {"x": 1, 0: 2, -1: 3, "y": 4, 2: 5, "z": 6}
