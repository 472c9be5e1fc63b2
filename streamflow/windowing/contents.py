"""How a window keeps its contents, by window function.

- reduce: the reduced value; aggregate: the accumulator (both incremental, so a window
  holds one value whatever its size);
- process only: the list of elements;
- with an evictor: the list of ``(value, timestamp)`` pairs, folded by the function at
  each firing (evictors need every element and its time, as in Flink).

Each keeper answers ``add`` (a new element), ``merge`` (session windows merging: the
stored forms of several windows into one) and ``results`` (what the window function
gets when the window fires). Stored forms are plain data: they are checkpointed.
"""

from __future__ import annotations

from typing import Any, Callable

from streamflow.windowing.store import ABSENT

__all__ = ["AggregateContents", "Contents", "EvictingContents", "ListContents", "ReduceContents"]


class Contents:
    def add(self, stored: Any, value: Any, timestamp: float | None) -> Any:
        raise NotImplementedError

    def merge(self, stored: list[Any]) -> Any:
        raise NotImplementedError

    def results(self, stored: Any) -> list[Any]:
        raise NotImplementedError

    def fold(self, values: list[Any]) -> list[Any]:
        """What the window function gets for the elements ``values`` (non-empty)."""
        raise NotImplementedError


class ListContents(Contents):
    def add(self, stored: Any, value: Any, timestamp: float | None) -> Any:
        if stored is ABSENT:
            return [value]
        stored.append(value)
        return stored

    def merge(self, stored: list[Any]) -> Any:
        return [value for values in stored for value in values]

    def results(self, stored: Any) -> list[Any]:
        return list(stored)

    def fold(self, values: list[Any]) -> list[Any]:
        return values


class ReduceContents(Contents):
    __slots__ = ("reduce",)

    def __init__(self, reduce: Callable[[Any, Any], Any]) -> None:
        self.reduce = reduce

    def add(self, stored: Any, value: Any, timestamp: float | None) -> Any:
        return value if stored is ABSENT else self.reduce(stored, value)

    def merge(self, stored: list[Any]) -> Any:
        return self.fold(stored)[0]

    def results(self, stored: Any) -> list[Any]:
        return [stored]

    def fold(self, values: list[Any]) -> list[Any]:
        reduce = self.reduce
        result = values[0]
        for value in values[1:]:
            result = reduce(result, value)
        return [result]


class AggregateContents(Contents):
    __slots__ = ("fn",)

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def add(self, stored: Any, value: Any, timestamp: float | None) -> Any:
        fn = self.fn
        return fn.add(value, fn.create_accumulator() if stored is ABSENT else stored)

    def merge(self, stored: list[Any]) -> Any:
        merge = self.fn.merge
        result = stored[0]
        for accumulator in stored[1:]:
            result = merge(result, accumulator)
        return result

    def results(self, stored: Any) -> list[Any]:
        return [self.fn.get_result(stored)]

    def fold(self, values: list[Any]) -> list[Any]:
        fn = self.fn
        accumulator = fn.create_accumulator()
        for value in values:
            accumulator = fn.add(value, accumulator)
        return [fn.get_result(accumulator)]


class EvictingContents(Contents):
    """Every element with its timestamp; ``inner`` folds them when the window fires."""

    __slots__ = ("inner",)

    def __init__(self, inner: Contents) -> None:
        self.inner = inner

    def add(self, stored: Any, value: Any, timestamp: float | None) -> Any:
        if stored is ABSENT:
            return [(value, timestamp)]
        stored.append((value, timestamp))
        return stored

    def merge(self, stored: list[Any]) -> Any:
        return [pair for pairs in stored for pair in pairs]

    def results(self, stored: Any) -> list[Any]:
        return self.inner.fold([value for value, _ in stored]) if stored else []

    def fold(self, values: list[Any]) -> list[Any]:
        return self.inner.fold(values)
