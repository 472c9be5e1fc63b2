"""How the heap backend stores each kind of state, and how that is snapshotted.

Value, reducing and aggregating states store one value per key, list state a list, map
state a dict. A shape knows how its stored form is encoded for a snapshot, decoded on
restore, filtered and purged by TTL, and converted when TTL is switched on or off between
runs. With TTL, each value, list element and map value is stored as ``(value, ts)`` and
encoded as ``[value, ts]``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SHAPES", "ListShape", "MapShape", "Shape", "tuplify"]


def tuplify(value: Any) -> Any:
    """Turn lists back into tuples, recursively (JSON made them lists)."""
    if type(value) is list:
        return tuple(tuplify(item) for item in value)
    return value


class Shape:
    """One value per key (value, reducing and aggregating state); the base of the others.

    Only static functions: a shape is chosen per state kind, never instantiated.
    """

    @staticmethod
    def encode(stored: Any) -> Any:
        return stored

    @staticmethod
    def encode_ttl(stored: Any) -> Any:
        return [stored[0], stored[1]]

    @staticmethod
    def decode(raw: Any) -> Any:
        return raw

    @staticmethod
    def decode_ttl(raw: Any) -> Any:
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
    def encode(stored: Any) -> Any:
        return list(stored)  # a copy: ListState.add appends to the live list in place

    @staticmethod
    def encode_ttl(stored: Any) -> Any:
        return [[value, ts] for value, ts in stored]

    @staticmethod
    def decode(raw: Any) -> Any:
        return list(raw)

    @staticmethod
    def decode_ttl(raw: Any) -> Any:
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
    """A dict; encoded as ``[[map_key, value], ...]`` because map keys need not be str."""

    @staticmethod
    def encode(stored: Any) -> Any:
        return [[map_key, value] for map_key, value in stored.items()]

    @staticmethod
    def encode_ttl(stored: Any) -> Any:
        return [[map_key, [value, ts]] for map_key, (value, ts) in stored.items()]

    @staticmethod
    def decode(raw: Any) -> Any:
        return {tuplify(map_key): value for map_key, value in raw}

    @staticmethod
    def decode_ttl(raw: Any) -> Any:
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
