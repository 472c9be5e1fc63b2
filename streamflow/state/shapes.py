"""How the heap backend stores each kind of state, and how that goes into a snapshot.

Value, reducing and aggregating states store one value per key, list state a list, map
state a dict. With TTL, each value, list element and map value is stored as
``(value, last_update_timestamp)``. A shape knows how its stored form is filtered and
purged by TTL, converted when TTL is switched on or off between runs, and serialized
value by value for a state whose serializer is not the default (the TTL timestamp stays
beside the bytes: ``(bytes, ts)``). States with the default serializer need none of
that: their stored form goes into the snapshot as it is.

``legacy`` and ``legacy_ttl`` read the format-1 snapshots written before exact state
types (orjson): tuples came back as lists there, and a map was a list of pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["SHAPES", "ListShape", "MapShape", "Shape", "tuplify"]

Dumps = Callable[[Any], bytes]
Loads = Callable[[bytes], Any]


def tuplify(value: Any) -> Any:
    """Turn lists back into tuples, recursively: in a format-1 (JSON) snapshot a list where
    a hashable key belongs can only have been a tuple."""
    if type(value) is list:
        return tuple(tuplify(item) for item in value)
    return value


class Shape:
    """One value per key (value, reducing and aggregating state); the base of the others.

    Only static functions: a shape is chosen per state kind, never instantiated.
    """

    @staticmethod
    def serialize(stored: Any, dumps: Dumps) -> Any:
        return dumps(stored)

    @staticmethod
    def serialize_ttl(stored: Any, dumps: Dumps) -> Any:
        return (dumps(stored[0]), stored[1])

    @staticmethod
    def deserialize(raw: Any, loads: Loads) -> Any:
        return loads(raw)

    @staticmethod
    def deserialize_ttl(raw: Any, loads: Loads) -> Any:
        return (loads(raw[0]), raw[1])

    @staticmethod
    def user_values(stored: Any, ttl: bool) -> Iterator[tuple[str, Any]]:
        """``(where, value)`` of each user value in ``stored``: finds the one a serializer
        refused, on the error path."""
        yield "", stored[0] if ttl else stored

    @staticmethod
    def legacy(raw: Any) -> Any:
        return raw

    @staticmethod
    def legacy_ttl(raw: Any) -> Any:
        return (raw[0], raw[1])

    @staticmethod
    def live(stored: Any, now: float, ttl: float) -> Any:
        """``stored`` without its expired parts, or None if nothing is left."""
        return stored if stored[1] + ttl > now else None

    @staticmethod
    def purge(group: dict[Any, Any], key: Any, now: float, ttl: float) -> None:
        """Remove the expired parts of ``group[key]`` (the whole entry if nothing is left)."""
        if group[key][1] + ttl <= now:
            del group[key]

    @staticmethod
    def strip(stored: Any) -> Any:
        return stored[0]

    @staticmethod
    def stamp(stored: Any, now: float) -> Any:
        return (stored, now)


class ListShape(Shape):
    """A list of values; with TTL a list of ``(value, ts)`` elements."""

    @staticmethod
    def serialize(stored: Any, dumps: Dumps) -> Any:
        return [dumps(value) for value in stored]

    @staticmethod
    def serialize_ttl(stored: Any, dumps: Dumps) -> Any:
        return [(dumps(value), ts) for value, ts in stored]

    @staticmethod
    def deserialize(raw: Any, loads: Loads) -> Any:
        return [loads(data) for data in raw]

    @staticmethod
    def deserialize_ttl(raw: Any, loads: Loads) -> Any:
        return [(loads(data), ts) for data, ts in raw]

    @staticmethod
    def user_values(stored: Any, ttl: bool) -> Iterator[tuple[str, Any]]:
        for index, entry in enumerate(stored):
            yield f"element {index}", entry[0] if ttl else entry

    @staticmethod
    def legacy(raw: Any) -> Any:
        return list(raw)

    @staticmethod
    def legacy_ttl(raw: Any) -> Any:
        return [(value, ts) for value, ts in raw]

    @staticmethod
    def live(stored: Any, now: float, ttl: float) -> Any:
        kept = [entry for entry in stored if entry[1] + ttl > now]
        return kept or None

    @staticmethod
    def purge(group: dict[Any, Any], key: Any, now: float, ttl: float) -> None:
        items = group[key]
        kept = [entry for entry in items if entry[1] + ttl > now]
        if not kept:
            del group[key]
        elif len(kept) != len(items):
            group[key] = kept

    @staticmethod
    def strip(stored: Any) -> Any:
        return [value for value, _ in stored]

    @staticmethod
    def stamp(stored: Any, now: float) -> Any:
        return [(value, now) for value in stored]


class MapShape(Shape):
    """A dict; map keys stay keys, only map values are serialized.

    Format 1 stored ``[[map_key, value], ...]`` pairs (JSON has no non-str keys).
    """

    @staticmethod
    def serialize(stored: Any, dumps: Dumps) -> Any:
        return {map_key: dumps(value) for map_key, value in stored.items()}

    @staticmethod
    def serialize_ttl(stored: Any, dumps: Dumps) -> Any:
        return {map_key: (dumps(value), ts) for map_key, (value, ts) in stored.items()}

    @staticmethod
    def deserialize(raw: Any, loads: Loads) -> Any:
        return {map_key: loads(data) for map_key, data in raw.items()}

    @staticmethod
    def deserialize_ttl(raw: Any, loads: Loads) -> Any:
        return {map_key: (loads(data), ts) for map_key, (data, ts) in raw.items()}

    @staticmethod
    def user_values(stored: Any, ttl: bool) -> Iterator[tuple[str, Any]]:
        for map_key, entry in stored.items():
            yield f"map key {map_key!r}", entry[0] if ttl else entry

    @staticmethod
    def legacy(raw: Any) -> Any:
        return {tuplify(map_key): value for map_key, value in raw}

    @staticmethod
    def legacy_ttl(raw: Any) -> Any:
        return {tuplify(map_key): (entry[0], entry[1]) for map_key, entry in raw}

    @staticmethod
    def live(stored: Any, now: float, ttl: float) -> Any:
        kept = {map_key: entry for map_key, entry in stored.items() if entry[1] + ttl > now}
        return kept or None

    @staticmethod
    def purge(group: dict[Any, Any], key: Any, now: float, ttl: float) -> None:
        entries = group[key]
        for map_key in [k for k, entry in entries.items() if entry[1] + ttl <= now]:
            del entries[map_key]
        if not entries:
            del group[key]

    @staticmethod
    def strip(stored: Any) -> Any:
        return {map_key: entry[0] for map_key, entry in stored.items()}

    @staticmethod
    def stamp(stored: Any, now: float) -> Any:
        return {map_key: (value, now) for map_key, value in stored.items()}


SHAPES: dict[str, type[Shape]] = {
    "value": Shape,
    "list": ListShape,
    "map": MapShape,
    "reducing": Shape,
    "aggregating": Shape,
}
