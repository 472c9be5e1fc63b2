"""Built-in window aggregations over one field of the records: sum, min, max, min_by,
max_by, mean, and count (no field).

They are what most windows compute (totals per user per minute, the largest order of a
session), so they come ready-made, as Flink's ``WindowedStream.sum(field)`` and Quix
Streams' ``Sum("amount")`` do, and the tumbling fast path folds a sum or a count without
a Python call per record (see :meth:`FieldAggregate.batch_values`).

A field names where the number is in a record:

- an ``int`` is an item position: ``record[2]`` of a tuple or list (negative counts from
  the end);
- a ``str`` is a mapping key, ``record["amount"]`` of a dict; a record that cannot be
  indexed by a string (a dataclass, a named tuple, any object) gives its attribute of
  that name instead, ``record.amount``.

Anything else is refused when the pipeline is built. A record without the field, or
whose field is not a number (``int``, ``float``, ``Decimal``, ``Fraction``; not
``bool``), is a :class:`FieldValueError` for the window operator's error policy, which
names the operator and the record's source position; this message names the field.

Each is a plain :class:`~streamflow.windowing.functions.AggregateFunction` with
``merge``, so it works on every window and backend (sessions merge their accumulators).
The accumulators are plain data, kept type for type in checkpoints: a sum of ints stays
an int, of floats a float. What each emits per window (its ``get_result``) is the
Pythonic value, not Flink's: ``sum``, ``min``, ``max`` the number, ``mean`` the sum
divided by the count, ``count`` an int, ``min_by`` / ``max_by`` the whole record holding
the least / greatest value (the first such record on ties). Flink's ``sum`` / ``min``
emit the window's first record with the field replaced by the aggregate; here a
``window_function`` (a ProcessWindowFunction after the aggregate) labels the number with
its key and window when that is wanted.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from operator import attrgetter, itemgetter
from typing import Any, Callable, Final

from streamflow.errors import ConfigError
from streamflow.windowing.functions import AggregateFunction

__all__ = ["Count", "FieldAggregate", "FieldValueError", "Max", "MaxBy", "Mean", "Min", "MinBy", "Sum", "field_of"]

Field = int | str

_NUMBERS: Final = (int, float, Decimal, Fraction)
_FAST_NUMBERS: Final = frozenset({int, float})  # the types a batch is folded in the fast loop with


class FieldValueError(ValueError):
    """A record lacks the field an aggregation reads, or the field is not a number."""


def field_of(field: Any, function: str) -> Callable[[Any], Any]:
    """The reader of ``field`` from a record (see the module docstring), or a
    ConfigError naming ``function`` and what a field may be."""
    if type(field) is int:
        return itemgetter(field)
    if type(field) is str:
        by_key, by_attribute = itemgetter(field), attrgetter(field)

        def read(record: Any) -> Any:
            try:
                return by_key(record)
            except TypeError:  # not indexable by a string: a dataclass, named tuple, object
                return by_attribute(record)

        return read
    raise ConfigError(
        f"{function}({field!r}): a field is an int (an item position in tuples and lists) or a str (a dict key, "
        f"or an attribute name for dataclasses and other objects), not {type(field).__name__}; "
        f"e.g. {function}('amount') or {function}(2)"
    )


class FieldAggregate(AggregateFunction[Any, Any, Any]):
    """An aggregation of one numeric field (see the module docstring).

    Subclasses fold a record's checked value into the accumulator (``add``); reading
    and checking the field is shared, one record at a time (:meth:`value_of`) or a
    whole batch in C (:meth:`batch_values`, for the fast path's sums and counts).
    """

    name: str = "aggregate"

    def __init__(self, field: Field) -> None:
        self.field = field
        self._read = field_of(field, self.name)
        self._batch_read: Callable[[Any], Any] = itemgetter(field)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.field!r})"

    def __reduce__(self) -> tuple[type[FieldAggregate], tuple[Field]]:
        return (type(self), (self.field,))  # (its readers are rebuilt, not pickled)

    def value_of(self, record: Any) -> Any:
        """The number in ``record``'s field, or a FieldValueError saying what is wrong."""
        try:
            value = self._read(record)
        except (KeyError, IndexError, AttributeError, TypeError) as exc:
            raise FieldValueError(
                f"{self.name}({self.field!r}): the record has no field {self.field!r} ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(value, _NUMBERS) or type(value) is bool:
            raise FieldValueError(
                f"{self.name}({self.field!r}): field {self.field!r} is {value!r} ({type(value).__name__}), not a number"
            )
        return value

    def batch_values(self, records: list[Any]) -> list[Any] | None:
        """The field of every record, read and checked in C: None unless every record
        has the field by item (key or position) and every value is an int or a float
        (then the caller goes record by record, through :meth:`add`)."""
        try:
            values = list(map(self._batch_read, records))
        except Exception:  # (a record without it, or read by attribute: the slow way decides)
            return None
        return values if set(map(type, values)) <= _FAST_NUMBERS else None

    def get_result(self, accumulator: Any) -> Any:
        return accumulator


class Sum(FieldAggregate):
    """The sum of the field per window: an int for ints, a float once a float is in."""

    name = "sum"

    def create_accumulator(self) -> Any:
        return 0

    def add(self, value: Any, accumulator: Any) -> Any:
        return accumulator + self.value_of(value)

    def merge(self, a: Any, b: Any) -> Any:
        return a + b


class Min(FieldAggregate):
    """The least value of the field per window (the first of equal ones)."""

    name = "min"

    def create_accumulator(self) -> Any:
        return None

    def add(self, value: Any, accumulator: Any) -> Any:
        number = self.value_of(value)
        return number if accumulator is None or number < accumulator else accumulator

    def merge(self, a: Any, b: Any) -> Any:
        return a if b is None else b if a is None or b < a else a


class Max(Min):
    """The greatest value of the field per window (the first of equal ones)."""

    name = "max"

    def add(self, value: Any, accumulator: Any) -> Any:
        number = self.value_of(value)
        return number if accumulator is None or number > accumulator else accumulator

    def merge(self, a: Any, b: Any) -> Any:
        return a if b is None else b if a is None or b > a else a


class MinBy(FieldAggregate):
    """The record with the least value of the field per window (the first on ties).

    The accumulator is ``(value, record)``: the value is not read again per record."""

    name = "min_by"

    def create_accumulator(self) -> Any:
        return None

    def add(self, value: Any, accumulator: Any) -> Any:
        number = self.value_of(value)
        return (number, value) if accumulator is None or number < accumulator[0] else accumulator

    def merge(self, a: Any, b: Any) -> Any:
        return a if b is None else b if a is None or b[0] < a[0] else a

    def get_result(self, accumulator: Any) -> Any:
        return accumulator[1]


class MaxBy(MinBy):
    """The record with the greatest value of the field per window (the first on ties)."""

    name = "max_by"

    def add(self, value: Any, accumulator: Any) -> Any:
        number = self.value_of(value)
        return (number, value) if accumulator is None or number > accumulator[0] else accumulator

    def merge(self, a: Any, b: Any) -> Any:
        return a if b is None else b if a is None or b[0] > a[0] else a


class Mean(FieldAggregate):
    """The arithmetic mean of the field per window; the accumulator is ``(sum, count)``."""

    name = "mean"

    def create_accumulator(self) -> Any:
        return (0, 0)

    def add(self, value: Any, accumulator: Any) -> Any:
        return (accumulator[0] + self.value_of(value), accumulator[1] + 1)

    def merge(self, a: Any, b: Any) -> Any:
        return (a[0] + b[0], a[1] + b[1])

    def get_result(self, accumulator: Any) -> Any:
        return accumulator[0] / accumulator[1]


class Count(AggregateFunction[Any, int, int]):
    """The number of records per window, an int (any record counts)."""

    name = "count"

    def __repr__(self) -> str:
        return "Count()"

    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + 1

    def batch_values(self, records: list[Any]) -> list[int]:
        """A 1 per record: what each adds (the fast loop folds counts as sums)."""
        return [1] * len(records)

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b
