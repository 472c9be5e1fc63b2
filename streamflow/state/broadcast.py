"""Broadcast state: a map that every subtask of an operator holds an identical copy of.

Flink's broadcast state pattern: rules, thresholds or configuration arrive on a broadcast
stream, every subtask of the connected operator receives every one of them, and each
subtask keeps them in a :class:`BroadcastState`. The copies stay identical only because
every subtask applies the same updates, in the same order, from the broadcast side, so
the element side gets a :class:`ReadOnlyBroadcastState`: writing there would make one
subtask's copy differ from the others', silently, and which copy survives a rescale is
arbitrary. It raises :class:`~streamflow.errors.StateError` instead.

Broadcast state is operator state (it belongs to a subtask, not to a key); the
:class:`~streamflow.state.operator.OperatorStateStore` holds it under the mode
``"broadcast"``, as a list of ``(map_key, value)`` pairs, keys and values exactly as
they were (the snapshot is pickled). On restore, :func:`redistribute_broadcast` gives each new subtask the copy of one old
subtask: copied on scale-up, the surplus dropped on scale-down.

Values are handed out by reference, not copied: do not mutate a value obtained from
a read-only view (put a new value from the broadcast side instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NoReturn, TypeVar

from streamflow.errors import ConfigError, StateError

__all__ = ["BroadcastState", "ReadOnlyBroadcastState", "redistribute_broadcast"]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class _BroadcastReads(Generic[K, V]):
    """The read methods both views share; ``_entries`` is the one dict behind them."""

    __slots__ = ("name", "_entries")

    def __init__(self, name: str, entries: dict[K, V]) -> None:
        self.name = name
        self._entries = entries

    def get(self, map_key: K, default: V | None = None) -> V | None:
        """The value under ``map_key``, or ``default``."""
        return self._entries.get(map_key, default)

    def contains(self, map_key: K) -> bool:
        """Whether ``map_key`` has a value."""
        return map_key in self._entries

    def keys(self) -> list[K]:
        """The map keys, in insertion order (a new list)."""
        return list(self._entries)

    def values(self) -> list[V]:
        """The values, in insertion order (a new list)."""
        return list(self._entries.values())

    def items(self) -> list[tuple[K, V]]:
        """The ``(map_key, value)`` pairs, in insertion order (a new list)."""
        return list(self._entries.items())

    def is_empty(self) -> bool:
        """Whether the map has no entries."""
        return not self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, map_key: object) -> bool:
        return map_key in self._entries

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self._entries)} entries)"


class BroadcastState(_BroadcastReads[K, V]):
    """The read-write map of one subtask: what ``process_broadcast_element`` gets."""

    __slots__ = ()

    def __init__(self, name: str, entries: Iterable[tuple[K, V]] = ()) -> None:
        super().__init__(name, dict(entries))

    def put(self, map_key: K, value: V) -> None:
        """Set ``map_key`` to ``value``."""
        self._entries[map_key] = value

    def put_all(self, mapping: Mapping[K, V]) -> None:
        """Set every entry of ``mapping``."""
        self._entries.update(mapping)

    def remove(self, map_key: K) -> None:
        """Remove ``map_key`` (no error if absent)."""
        self._entries.pop(map_key, None)

    def clear(self) -> None:
        """Remove every entry."""
        self._entries.clear()

    def read_only(self) -> ReadOnlyBroadcastState[K, V]:
        """A view of this map that refuses writes (it sees later writes made here)."""
        return ReadOnlyBroadcastState(self)

    def snapshot_items(self) -> list[tuple[Any, Any]]:
        """The entries as ``(map_key, value)`` pairs: the persisted form."""
        return list(self._entries.items())

    @classmethod
    def from_items(
        cls, name: str, items: Iterable[Sequence[Any]], key: Callable[[Any], Any] | None = None
    ) -> BroadcastState[Any, Any]:
        """The inverse of :meth:`snapshot_items`: keys and values are taken as they are,
        or each key as ``key(saved key)``."""
        try:
            if key is None:
                return cls(name, ((k, value) for k, value in items))
            return cls(name, ((key(k), value) for k, value in items))
        except (TypeError, ValueError) as exc:
            raise StateError(
                f"broadcast state {name!r} in the snapshot is not a list of [key, value] pairs ({exc}); "
                "the snapshot is damaged or was written by another kind of state",
                state=name,
            ) from exc


class ReadOnlyBroadcastState(_BroadcastReads[K, V]):
    """What the element side (``process_element``, ``on_timer``) sees: reads only.

    The write methods exist only to fail with a message that says where the write
    belongs; they never change the map.
    """

    __slots__ = ()

    def __init__(self, state: BroadcastState[K, V]) -> None:
        super().__init__(state.name, state._entries)

    def _refuse(self, method: str) -> NoReturn:
        raise StateError(
            f"broadcast state {self.name!r} is read-only here: {method}() was called from the element side "
            "(process_element or on_timer). Only process_broadcast_element may change broadcast state: every "
            "subtask sees every broadcast element, so updates made there keep all copies identical. Move the "
            f"{method}() call into process_broadcast_element, or keep per-key data in keyed state.",
            state=self.name,
        )

    def put(self, map_key: K, value: V) -> NoReturn:
        """Refused: raises StateError."""
        self._refuse("put")

    def put_all(self, mapping: Mapping[K, V]) -> NoReturn:
        """Refused: raises StateError."""
        self._refuse("put_all")

    def remove(self, map_key: K) -> NoReturn:
        """Refused: raises StateError."""
        self._refuse("remove")

    def clear(self) -> NoReturn:
        """Refused: raises StateError."""
        self._refuse("clear")


def redistribute_broadcast(copies: Sequence[Sequence[T] | None], subtask_index: int) -> list[T]:
    """The copy of broadcast state new subtask ``subtask_index`` restores.

    Every old subtask held the same map, so any copy will do; new subtask ``i`` takes old
    subtask ``i % old_parallelism``'s: with unchanged parallelism each subtask keeps its
    own, on scale-up copies are reused, on scale-down the surplus is dropped. ``None``
    marks an old subtask whose snapshot lacks the state; it is passed over (the choice is
    made among those that have it). Returns a new list; no copy at all gives ``[]``.

    Raises:
        ConfigError: ``subtask_index`` is negative.
    """
    if subtask_index < 0:
        raise ConfigError(f"redistribute_broadcast needs subtask_index >= 0, got {subtask_index!r}")
    present = [copy for copy in copies if copy is not None]
    if not present:
        return []
    return list(present[subtask_index % len(present)])
