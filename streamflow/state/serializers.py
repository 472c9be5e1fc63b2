"""State serializers: how the values of a state become bytes in a snapshot.

Flink's TypeSerializer idea, in Python manners. Every state descriptor takes
``serializer=``; ``None`` means the default, :class:`PickleSerializer`.

- :class:`PickleSerializer` (name ``"pickle"``, the default) is exact for every value
  pickle can store: tuples stay tuples (nested too), NamedTuples, dataclasses, enums and
  user classes stay themselves, dicts keep their key types, sets stay sets. Values of a
  state that uses it are not serialized one by one: they stay as they are inside the
  task's snapshot, which is pickled in one call (the fast path).
- :class:`JsonSerializer` (name ``"json"``, opt-in) is portable: it accepts only values
  that come back from JSON exactly (dicts with str keys, lists, str, 64-bit ints, finite
  floats, bools, None; those exact types, no subclasses) and refuses anything else when
  the snapshot is taken, saying where in the value and why. Nothing is converted.
- Your own: any object with a ``name`` and ``dumps`` / ``loads`` (msgpack, protobuf...).

A serializer other than the default is called once per value, list element and map
value. Keys (state keys and map keys) never go through it: the snapshot's pickle stores
them, exactly. A TTL timestamp stays beside the serialized value.

Every snapshot records each state's serializer name; a restore whose descriptor names
another serializer is refused, as the stored bytes would be read the wrong way. The name
``"pickle"`` belongs to :class:`PickleSerializer` alone, because the snapshot treats
values of such states as stored in place rather than as bytes.

Checkpoints and savepoints are trusted input: restoring pickled state runs pickle, so
never restore from a checkpoint of unknown origin.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson

from streamflow.errors import ConfigError, StateError, StateSerializationError

__all__ = [
    "DEFAULT_SERIALIZER",
    "JsonSerializer",
    "PickleSerializer",
    "StateSerializer",
    "check_serializer",
    "serializer_failure",
    "serializer_mismatch",
    "stores_in_place",
    "type_name",
]


class StateSerializer(Protocol):
    """Turns one state value into bytes and back. Implementations must be stateless or
    at least safe to share: one serializer object serves every subtask of a job."""

    @property
    def name(self) -> str:
        """Recorded in every snapshot beside the state's data; a restore checks it against
        the descriptor's serializer. Keep it stable across releases of your serializer, and
        change it when the byte format changes incompatibly. A class attribute will do."""
        ...

    def dumps(self, value: Any) -> bytes:
        """The bytes of ``value``; raise (any exception) for a value it cannot store."""
        ...

    def loads(self, data: bytes) -> Any:
        """The value ``dumps`` turned into ``data``, equal and of the same type."""
        ...


@dataclass(frozen=True, slots=True)
class PickleSerializer:
    """The default: pickle protocol 5, exact for every picklable value.

    A value that cannot be pickled (a lambda, a socket, a lock) fails the checkpoint with
    a :class:`~streamflow.errors.StateSerializationError` naming operator, state and type.
    """

    name: ClassVar[str] = "pickle"

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=5)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


_INT_MIN = -(1 << 63)  # orjson writes signed and unsigned 64-bit ints, nothing wider
_INT_MAX = (1 << 64) - 1
_MAX_DEPTH = 254  # orjson refuses deeper nesting


@dataclass(frozen=True, slots=True)
class JsonSerializer:
    """Portable JSON (orjson) for values that round-trip through JSON exactly.

    Accepted: ``dict`` with ``str`` keys, ``list``, ``str``, ``int`` within 64 bits,
    finite ``float``, ``bool`` and ``None``, of exactly those types. Anything else is
    refused at snapshot time (a tuple would come back as a list, an int key as a str, a
    subclass as its base), with the path inside the value and what to do.
    """

    name: ClassVar[str] = "json"

    def dumps(self, value: Any) -> bytes:
        refusal = _json_refusal(value, 0)
        if refusal is not None:
            path, offender, reason = refusal
            raise StateSerializationError(
                f"value{path} is {reason}",
                value_type=type_name(offender),
                path=f"value{path}",
            )
        return orjson.dumps(value)

    def loads(self, data: bytes) -> Any:
        return orjson.loads(data)


DEFAULT_SERIALIZER: StateSerializer = PickleSerializer()


def stores_in_place(serializer: StateSerializer) -> bool:
    """Whether values of a state with ``serializer`` stay as they are in the snapshot
    (the snapshot's own pickle stores them) instead of becoming bytes one by one."""
    return type(serializer) is PickleSerializer


def check_serializer(serializer: Any, owner: str) -> None:
    """Refuse, at build time, a ``serializer=`` that cannot serve (``owner`` names the
    descriptor in the message).

    Raises:
        ConfigError: no non-empty str ``name``, no callable ``dumps`` / ``loads``, or the
            reserved name ``"pickle"`` on another class than PickleSerializer.
    """
    if serializer is None:
        return
    name = getattr(serializer, "name", None)
    missing = [m for m in ("dumps", "loads") if not callable(getattr(serializer, m, None))]
    if not isinstance(name, str) or not name or missing:
        lacks = ([] if isinstance(name, str) and name else ["a non-empty str name"]) + [
            f"a callable {m}" for m in missing
        ]
        raise ConfigError(
            f"{owner}: serializer {serializer!r} lacks {' and '.join(lacks)}; pass an object with name (str), "
            "dumps(value) -> bytes and loads(bytes) -> value, e.g. JsonSerializer(), or leave serializer=None "
            "for the default PickleSerializer"
        )
    if name == PickleSerializer.name and type(serializer) is not PickleSerializer:
        raise ConfigError(
            f"{owner}: serializer {serializer!r} is named 'pickle', the name of the default PickleSerializer, "
            "whose values snapshots store in place; give your serializer another name"
        )


def type_name(value: Any) -> str:
    """``int``, ``tuple`` for builtins; ``module.Class`` for everything else."""
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def serializer_failure(
    exc: Exception,
    *,
    serializer: StateSerializer,
    value: Any,
    where: str,
    state: str,
    operator: str | None = None,
    subtask: int | None = None,
) -> StateSerializationError:
    """The error for ``serializer.dumps(value)`` raising ``exc``, in the state ``where``
    describes (e.g. ``"keyed state 'totals' (key 'alice')"``)."""
    if isinstance(exc, StateSerializationError):
        detail = exc.message
        value_type = exc.fields.get("value_type", type_name(value))
        path = exc.fields.get("path", "value")
    else:
        detail = f"{type(exc).__name__}: {exc}"
        value_type = type_name(value)
        path = "value"
    if isinstance(serializer, JsonSerializer):
        hint = (
            "convert the value to JSON types before storing it (tuple -> list, keys -> str, ...), or drop "
            "serializer=JsonSerializer() from the descriptor to use the default PickleSerializer, which is "
            "exact for every picklable value"
        )
    else:
        hint = (
            "fix the serializer or convert the value, or drop serializer= from the descriptor to use the "
            "default PickleSerializer, which is exact for every picklable value"
        )
    prefix = "" if operator is None else f"operator {operator!r} (subtask {subtask}): "
    return StateSerializationError(
        f"{prefix}{where} cannot be written to the snapshot by its serializer {serializer.name!r} "
        f"(a value of type {value_type}): {detail}; {hint}",
        operator=operator,
        subtask=subtask,
        state=state,
        value_type=value_type,
        path=path,
    )


def serializer_mismatch(where: str, state: str, saved: str, now: str, operator: str | None = None) -> StateError:
    """The error for the state ``where`` describes, saved with serializer ``saved`` and
    registered by a descriptor whose serializer is ``now``."""
    prefix = "" if operator is None else f"operator {operator!r}: "
    return StateError(
        f"{prefix}{where} was saved with serializer {saved!r}, but its descriptor now uses {now!r}; a state is "
        f"read with the serializer that wrote it: pass the serializer named {saved!r} to the descriptor again "
        "(serializer=None is 'pickle'), or move the data to a state of another name",
        operator=operator,
        state=state,
    )


# -- what JSON cannot round-trip -------------------------------------------------------

_NO_JSON_TYPE: dict[type, str] = {
    tuple: "JSON has arrays only: it would come back as a list",
    set: "JSON has no sets",
    frozenset: "JSON has no sets",
    bytes: "JSON has no bytes",
    bytearray: "JSON has no bytes",
}


def _json_refusal(value: Any, depth: int) -> tuple[str, Any, str] | None:
    """None if ``value`` comes back from JSON equal and of the same types; else
    ``(path, offender, reason)``. The path is built only on the way out of a refusal."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return None
    if kind is int:
        return None if _INT_MIN <= value <= _INT_MAX else ("", value, f"an int beyond 64 bits ({value!r})")
    if kind is float:
        return None if math.isfinite(value) else ("", value, f"{value!r}: JSON has no NaN or infinity")
    if depth >= _MAX_DEPTH:
        return "", value, f"nested deeper than {_MAX_DEPTH} levels, more than the JSON encoder allows"
    if kind is list:
        for index, item in enumerate(value):
            refusal = _json_refusal(item, depth + 1)
            if refusal is not None:
                return f"[{index}]{refusal[0]}", refusal[1], refusal[2]
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return "", key, (
                    f"a dict with the key {key!r} of type {type_name(key)}: JSON object keys are str, it would "
                    "come back as a str"
                )
            refusal = _json_refusal(item, depth + 1)
            if refusal is not None:
                return f"[{key!r}]{refusal[0]}", refusal[1], refusal[2]
        return None
    return "", value, _describe_non_json(value)


def _describe_non_json(value: Any) -> str:
    kind = type(value)
    for base, reason in _NO_JSON_TYPE.items():
        if isinstance(value, base):
            return f"a {type_name(value)} ({reason})"
    for base in (bool, int, float, str, list, dict):
        if isinstance(value, base):
            return f"a {type_name(value)}, a subclass of {base.__name__}: it would come back as a plain {base.__name__}"
    return f"a {type_name(value)}, which JSON cannot store ({kind.__name__} is not a JSON type)"
