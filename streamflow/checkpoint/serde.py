"""Encoding of a task's per-operator snapshot into checkpoint bytes.

Every encoded snapshot starts with a one-byte format tag, so :func:`decode` needs no
side information:

- ``b"P"``: pickle protocol 5 of the whole snapshot, what :func:`encode` writes. Exact:
  tuples stay tuples, dict keys keep their types, sets, bytes, datetimes, Decimals,
  UUIDs, enums, dataclasses and user classes come back as themselves, in keyed state,
  operator state, timers, source splits and sink handles alike. One ``pickle.dumps`` per
  snapshot; it runs in the task's synchronous snapshot step, so it is also the copy that
  later changes to live state cannot reach (or in a child forked at that step, which
  sees the same memory: a large heap state; its bytes come back as a
  :class:`PickledPart`).
- ``b"J"``: orjson, written before exact state types. Still decoded, so checkpoints and
  savepoints of earlier versions restore (their state is in format 1, which the state
  stores read; tuples came back from it as lists).

A value that cannot be pickled (a lambda, a socket, a lock) makes :func:`encode` raise
:class:`~streamflow.errors.StateSerializationError` naming the operator, the subtask,
the state and the value's type and place; the search for it runs on that error path
only.

Checkpoint directories are trusted input: decoding runs pickle, so never point a job at
checkpoints or savepoints from an untrusted source.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from streamflow.errors import CheckpointCorruptedError, CheckpointError, StateSerializationError
from streamflow.state.serializers import type_name

__all__ = ["JSON_TAG", "PICKLE_TAG", "PickledPart", "decode", "encode"]

JSON_TAG = b"J"
PICKLE_TAG = b"P"


def encode(snapshot: Any, *, operator: str | None = None, subtask: int | None = None) -> bytes:
    """The checkpoint bytes of ``snapshot``, the state of subtask ``subtask`` of ``operator``
    (both only name them in an error).

    Raises:
        StateSerializationError: something in it cannot be pickled.
    """
    try:
        return PICKLE_TAG + pickle.dumps(snapshot, protocol=5)
    except Exception as exc:  # noqa: BLE001 - pickle raises TypeError, AttributeError, PicklingError...
        raise _unpicklable(snapshot, exc, operator, subtask) from exc


class PickledPart:
    """A part of a snapshot already encoded by :func:`encode` (a keyed snapshot a forked
    child pickled): pickling it embeds the bytes as they are, and unpickling decodes them,
    so a snapshot holding one reads back with the part itself in its place."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
        return decode, (self.data,)

    def __repr__(self) -> str:
        return f"PickledPart({len(self.data):,} bytes)"


def decode(data: bytes) -> Any:
    """Decode bytes written by :func:`encode` (or, before exact state types, by orjson).

    Raises:
        CheckpointCorruptedError: the tag is unknown or the payload does not parse.
        CheckpointError: a pickled value names a class that cannot be imported here.
    """
    tag, payload = data[:1], data[1:]
    if tag == PICKLE_TAG:
        try:
            return pickle.loads(payload)
        except (ImportError, AttributeError) as exc:
            raise CheckpointError(
                f"state was stored with pickle and needs a class that cannot be imported "
                f"here ({exc}); run with the same code (modules and classes) that wrote it"
            ) from exc
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise CheckpointCorruptedError(
                f"state bytes tagged pickle do not unpickle ({exc!r}); the checkpoint is "
                "damaged, restore from an earlier checkpoint or savepoint",
                checkpoint_id=None,
                file=None,
            ) from exc
    if tag == JSON_TAG:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise CheckpointCorruptedError(
                f"state bytes tagged JSON do not parse ({exc}); the checkpoint is damaged, "
                "restore from an earlier checkpoint or savepoint",
                checkpoint_id=None,
                file=None,
            ) from exc
    raise CheckpointCorruptedError(
        f"state bytes start with unknown format tag {tag!r} (expected {PICKLE_TAG!r} or "
        f"{JSON_TAG!r}); the checkpoint is damaged or was not written by streamflow",
        checkpoint_id=None,
        file=None,
    )


# -- the error path: which value did not pickle ----------------------------------------

Step = tuple[str, Any]  # ("item", index or key) | ("key", dict key) | ("attr", name) | ("member", None)


def _unpicklable(
    snapshot: Any, exc: Exception, operator: str | None, subtask: int | None
) -> StateSerializationError:
    path, culprit = _find_culprit(snapshot)
    where, state, inner = _describe(path)
    value_type = type_name(culprit)
    prefix = "" if operator is None else f"operator {operator!r} (subtask {subtask}): "
    return StateSerializationError(
        f"{prefix}{where} holds a value of type {value_type} that cannot be "
        f"pickled{f' (at {inner})' if inner else ''}: {type(exc).__name__}: {exc}. State must be picklable to "
        "be checkpointed: keep such objects out of state (create them in open()) and store the plain data "
        "that rebuilds them, or give the class __getstate__/__setstate__",
        operator=operator,
        subtask=subtask,
        state=state,
        value_type=value_type,
        path=inner or None,
    )


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=5)
    except Exception:  # noqa: BLE001 - any failure marks the culprit's branch
        return False
    return True


def _find_culprit(root: Any) -> tuple[list[Step], Any]:
    """The path to the innermost value that does not pickle while its parts do."""
    path: list[Step] = []
    current = root
    while True:
        for step, child in _parts(current):
            if not _pickles(child):
                path.append(step)
                current = child
                break
        else:
            return path, current


def _parts(value: Any) -> Iterator[tuple[Step, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield ("key", key), key
            yield ("item", key), item
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield ("item", index), item
    elif isinstance(value, (set, frozenset)):
        for item in value:
            yield ("member", None), item
    elif not isinstance(value, type) and isinstance(getattr(value, "__dict__", None), dict):
        for name, item in vars(value).items():
            yield ("attr", name), item


def _describe(path: list[Step]) -> tuple[str, str | None, str]:
    """``(where, state name, path inside the value)`` for a path from the snapshot root.

    Knows the parts of an operator's snapshot: ``keyed`` (heap keyed state),
    ``operator`` (operator list and broadcast state), ``timers``, ``source``, ``sink``.
    """
    names = [value for _, value in path]
    head = names[:1]
    if head == ["keyed"] and len(path) >= 6 and names[1] == "states" and names[3] == "key_groups":
        state = names[2]
        kind, key = path[5]
        if kind == "key":
            return f"keyed state {state!r} (a key)", state, ""
        return f"keyed state {state!r} (key {key!r})", state, _render("value", path[6:])
    if head == ["operator"] and len(path) >= 5 and names[1] == "states" and names[3] == "items":
        state = names[2]
        return f"operator state {state!r} (item {names[4]!r})", state, _render("item", path[5:])
    if head == ["timers"] and len(path) >= 3:
        return f"a {names[1]}-time timer", None, _render("timer", path[3:])
    if head in (["source"], ["sink"]) and len(path) >= 2:
        what = "source split" if head == ["source"] else "sink transaction handle"
        return f"{what} {names[1]!r}", None, _render(what.split()[-1], path[2:])
    return "its snapshot", None, _render("snapshot", path)


def _render(root: str, path: list[Step]) -> str:
    text = root
    for kind, value in path:
        if kind == "item":
            text += f"[{value!r}]"
        elif kind == "attr":
            text += f".{value}"
        elif kind == "key":
            text += f" (dict key {value!r})"
        else:
            text += " (set member)"
    return text if path else ""
