"""State descriptors: what a user function asks the backend for.

A descriptor names a piece of state, says its kind (value, list, map, reducing,
aggregating) and optionally its time to live and its serializer (see
:mod:`streamflow.state.serializers`; the default is exact for every picklable value). It
is an inert, frozen value: building one touches no backend, so descriptors can be module
constants. The same name must always be registered with the same kind, TTL and
serializer; the backend refuses anything else because the stored data would be read the
wrong way.

Descriptors are frozen but deliberately not slotted: on Python 3.11 a frozen, slotted,
generic dataclass cannot be built through a subscripted alias (``ListStateDescriptor[int]
("l")`` raises TypeError, because the generated ``__setattr__`` refers to the pre-slots
class), and that spelling is the natural way to type an empty state. They are built a
few times per job, so slots would buy nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from streamflow.errors import ConfigError
from streamflow.state.serializers import DEFAULT_SERIALIZER, StateSerializer, check_serializer
from streamflow.state.ttl import StateTtlConfig

__all__ = [
    "AggregateFunction",
    "AggregatingStateDescriptor",
    "ListStateDescriptor",
    "MapStateDescriptor",
    "ReducingStateDescriptor",
    "StateDescriptor",
    "ValueStateDescriptor",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")
IN_contra = TypeVar("IN_contra", contravariant=True)
OUT_co = TypeVar("OUT_co", covariant=True)


class AggregateFunction(Protocol[IN_contra, ACC, OUT_co]):
    """Folds values into an accumulator and turns the accumulator into a result.

    Used by :class:`AggregatingStateDescriptor`. Unlike a reduce function, the
    accumulator may have a different type than the values (a ``(sum, count)`` pair for an
    average, say). The accumulator is stored in state and snapshotted: with the default
    serializer any picklable value (a tuple, a dataclass) comes back exactly as it was.
    """

    def create_accumulator(self) -> ACC:
        """A fresh, empty accumulator; called when the first value for a key arrives."""
        ...

    def add(self, value: IN_contra, accumulator: ACC) -> ACC:
        """Fold ``value`` into ``accumulator`` and return the new accumulator."""
        ...

    def get_result(self, accumulator: ACC) -> OUT_co:
        """The result the state's ``get()`` returns for ``accumulator``."""
        ...


def _check_common(descriptor: StateDescriptor) -> None:
    # Module-level so subclasses that validate more need not chain __post_init__.
    kind = type(descriptor).__name__
    name = descriptor.name
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{kind} needs a non-empty str name, got {name!r}; "
            f"pass a name that is unique within the operator, e.g. {kind}('count')"
        )
    ttl = descriptor.ttl
    if ttl is not None and not isinstance(ttl, StateTtlConfig):
        raise ConfigError(
            f"{kind} {name!r}: ttl must be a StateTtlConfig or None, got {ttl!r}; "
            "wrap the duration: ttl=StateTtlConfig(ttl=60.0)"
        )
    check_serializer(descriptor.serializer, f"{kind} {name!r}")


@dataclass(frozen=True)
class StateDescriptor:
    """Common part of every descriptor: a name, an optional time to live and serializer.

    Attributes:
        name: identifies the state within its operator; snapshots are keyed by it, so
            renaming a state loses its data on restore.
        ttl: time to live of the state's values, or None to keep them until cleared.
        serializer: how the state's values are written into snapshots; None for the
            default :class:`~streamflow.state.serializers.PickleSerializer`. Recorded in
            every snapshot: restoring with another serializer is refused.
    """

    kind: ClassVar[str] = ""

    name: str
    _: KW_ONLY
    ttl: StateTtlConfig | None = None
    serializer: StateSerializer | None = None

    def __post_init__(self) -> None:
        _check_common(self)

    @property
    def effective_serializer(self) -> StateSerializer:
        """``serializer``, or the default PickleSerializer when it is None."""
        return DEFAULT_SERIALIZER if self.serializer is None else self.serializer


@dataclass(frozen=True)
class ValueStateDescriptor(StateDescriptor, Generic[T]):
    """A single value per key.

    Attributes:
        default: what ``ValueState.value()`` returns while no value is stored. Shared
            between keys, so use an immutable default (0, "", None, a tuple).
    """

    kind: ClassVar[str] = "value"

    _: KW_ONLY
    default: T | None = None


@dataclass(frozen=True)
class ListStateDescriptor(StateDescriptor, Generic[T]):
    """A list of values per key (or per operator subtask, for operator state)."""

    kind: ClassVar[str] = "list"


@dataclass(frozen=True)
class MapStateDescriptor(StateDescriptor, Generic[K, V]):
    """A map per key (or, as broadcast state, per operator). Map keys must be hashable;
    they are stored exactly as they are (a tuple or int key stays one), whatever the
    serializer, which applies to the map's values."""

    kind: ClassVar[str] = "map"


@dataclass(frozen=True)
class ReducingStateDescriptor(StateDescriptor, Generic[T]):
    """One value per key, combined with every added value by ``reduce_fn``.

    Attributes:
        reduce_fn: ``reduce_fn(current, added) -> new``; must be associative, as the
            state may combine values in any grouping.
    """

    kind: ClassVar[str] = "reducing"

    reduce_fn: Callable[[T, T], T]

    def __post_init__(self) -> None:
        _check_common(self)
        if not callable(self.reduce_fn):
            raise ConfigError(
                f"ReducingStateDescriptor {self.name!r}: reduce_fn must be callable as "
                f"reduce_fn(current, added), got {self.reduce_fn!r}; pass a function such as operator.add"
            )


@dataclass(frozen=True)
class AggregatingStateDescriptor(StateDescriptor, Generic[IN, ACC, OUT]):
    """One accumulator per key, folded by an :class:`AggregateFunction`.

    Attributes:
        aggregate_fn: creates, updates and reads out the accumulator.
    """

    kind: ClassVar[str] = "aggregating"

    aggregate_fn: AggregateFunction[IN, ACC, OUT]

    def __post_init__(self) -> None:
        _check_common(self)
        fn = self.aggregate_fn
        missing = [m for m in ("create_accumulator", "add", "get_result") if not callable(getattr(fn, m, None))]
        if missing:
            raise ConfigError(
                f"AggregatingStateDescriptor {self.name!r}: aggregate_fn {self.aggregate_fn!r} lacks "
                f"callable {', '.join(missing)}; pass an object with create_accumulator(), "
                "add(value, accumulator) and get_result(accumulator)"
            )

