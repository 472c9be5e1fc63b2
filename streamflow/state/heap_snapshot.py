"""The heap backend's keyed state in snapshots: format 2 (exact types) and format 1 (read only).

Format 2, the data of one subtask's keyed state::

    {"format": 2,
     "states": {name: {"kind": "value" | "list" | "map" | "reducing" | "aggregating",
                       "ttl": bool,
                       "serializer": "<serializer name>",
                       "key_groups": {<key group (int)>: {key: stored}}}}}

``stored`` is what the state holds per key (see :mod:`streamflow.state.shapes`). A state
with the default serializer puts its live dicts in as they are: the task pickles the
whole snapshot at once, in the same synchronous step, and that pickle is the copy (so
keys and values come back with exactly their types). A state with another serializer
puts in each value, list element and map value as ``serializer.dumps(value)`` bytes, the
TTL timestamp beside them. Keys are never serialized by the state's serializer.

Format 1 (before exact types; orjson) is still read: per state
``{"kind", "ttl", "key_groups": {"<key group>": [[key, encoded], ...]}}``, lists where
keys were tuples (turned back into tuples), maps as ``[[map_key, value], ...]``, TTL
values as ``[value, ts]``. Its key groups are recomputed for keys other than str and int:
``stable_hash`` gives bools, integral floats and tuples holding them the key group of the
equal int (tuple) now, so such a key may belong to another group than it was saved in.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from streamflow.errors import StateError
from streamflow.partitioning.keygroups import key_group_for
from streamflow.state.descriptors import StateDescriptor
from streamflow.state.keyed import KeyedState, Table
from streamflow.state.serializers import (
    PickleSerializer,
    StateSerializer,
    serializer_failure,
    serializer_mismatch,
    stores_in_place,
)
from streamflow.state.shapes import SHAPES, Shape, tuplify
from streamflow.state.ttl import TtlPolicy

__all__ = ["LEGACY_FORMAT", "SNAPSHOT_FORMAT", "StoredState", "read_snapshot", "register_serializer", "write_state"]

SNAPSHOT_FORMAT = 2
LEGACY_FORMAT = 1
_IN_PLACE = PickleSerializer.name


class StoredState:
    """One state name's table and, once ``get_state`` registered it, its descriptor.

    A restored state that no ``get_state`` asked for yet has ``descriptor`` None: it
    keeps the serializer name it was saved with (``recorded``) and, for a serializer
    other than the default, its values as the bytes that serializer wrote (``encoded``)
    until a descriptor says how to read them. It snapshots and iterates like any other.
    """

    __slots__ = (
        "name", "kind", "shape", "has_ttl", "table", "descriptor", "policy", "handle", "serializer", "recorded",
        "encoded",
    )  # fmt: skip

    def __init__(self, name: str, kind: str, has_ttl: bool) -> None:
        self.name = name
        self.kind = kind
        self.shape: type[Shape] = SHAPES[kind]
        self.has_ttl = has_ttl
        self.table: Table = {}
        self.descriptor: StateDescriptor | None = None
        self.policy: TtlPolicy | None = None
        self.handle: KeyedState | None = None
        self.serializer: StateSerializer | None = None  # the registered descriptor's
        self.recorded: str | None = None  # serializer name in the restored snapshot; None: none or format 1
        self.encoded = False  # the table holds serializer bytes, not values


def write_state(state: StoredState, now: float, *, operator: str, subtask: int) -> dict[str, Any]:
    """The format-2 entry of ``state``: its live dicts, or copies where TTL full-snapshot
    cleanup leaves expired values out or the serializer turns values into bytes.

    Raises:
        StateSerializationError: the state's serializer refused a value.
    """
    serializer = state.serializer
    policy = state.policy
    ttl = policy.ttl if policy is not None and policy.config.cleanup_full_snapshot else None
    if serializer is None:  # restored and not registered: saved again as it came
        name = state.recorded or _IN_PLACE
        in_place = True
    else:
        name = serializer.name
        in_place = stores_in_place(serializer)
    shape = state.shape
    key_groups: dict[int, dict[Any, Any]] = {}
    if in_place and ttl is None:
        key_groups = {key_group: group for key_group, group in state.table.items() if group}
    else:
        convert = None if in_place else _serialize(state, operator=operator, subtask=subtask)
        for key_group, group in state.table.items():
            entries: dict[Any, Any] = {}
            for key, stored in group.items():
                if ttl is not None:
                    stored = shape.live(stored, now, ttl)
                    if stored is None:
                        continue
                entries[key] = stored if convert is None else convert(key, stored)
            if entries:
                key_groups[key_group] = entries
    return {"kind": state.kind, "ttl": state.has_ttl, "serializer": name, "key_groups": key_groups}


def _serialize(state: StoredState, *, operator: str, subtask: int) -> Callable[[Any, Any], Any]:
    serializer = state.serializer
    assert serializer is not None
    shape = state.shape
    has_ttl = state.has_ttl
    write = shape.serialize_ttl if has_ttl else shape.serialize
    dumps = serializer.dumps

    def convert(key: Any, stored: Any) -> Any:
        try:
            return write(stored, dumps)
        except Exception as exc:  # noqa: BLE001 - a user serializer may raise anything
            where, value = _refused_value(shape, stored, has_ttl, dumps) or ("", stored)
            at = f", {where}" if where else ""
            raise serializer_failure(
                exc, serializer=serializer, value=value, where=f"keyed state {state.name!r} (key {key!r}{at})",
                state=state.name, operator=operator, subtask=subtask,
            ) from exc

    return convert


def _refused_value(shape: type[Shape], stored: Any, has_ttl: bool, dumps: Callable[[Any], bytes]) -> Any:
    for where, value in shape.user_values(stored, has_ttl):
        try:
            dumps(value)
        except Exception:  # noqa: BLE001 - looking for the value that made it raise
            return where, value
    return None


def register_serializer(state: StoredState, serializer: StateSerializer, *, operator: str) -> None:
    """Bind ``state`` to the serializer of the descriptor that registers it; decode values
    a restore left as bytes.

    Raises:
        StateError: the state was saved with a serializer of another name, registered
            with another one already, or its bytes do not load.
    """
    if state.serializer is not None:
        if state.serializer.name != serializer.name:
            raise StateError(
                f"state {state.name!r} of {operator!r} is registered with serializer {state.serializer.name!r}, "
                f"not {serializer.name!r}; use one serializer per state name",
                operator=operator,
                state=state.name,
            )
        return
    if state.recorded is not None and state.recorded != serializer.name:
        raise serializer_mismatch(
            f"keyed state {state.name!r}", state.name, state.recorded, serializer.name, operator=operator
        )
    if state.encoded:  # all or nothing: a value that does not load leaves the bytes as they were
        load = partial(state.shape.deserialize_ttl if state.has_ttl else state.shape.deserialize, loads=serializer.loads)
        decoded = {
            key_group: {key: _load(load, raw, state, serializer, key, operator) for key, raw in group.items()}
            for key_group, group in state.table.items()
        }
        state.table.clear()
        state.table.update(decoded)
        state.encoded = False
    state.serializer = serializer


def _load(load: Callable[[Any], Any], raw: Any, state: StoredState, serializer: StateSerializer, key: Any,
          operator: str) -> Any:  # fmt: skip
    try:
        return load(raw)
    except Exception as exc:  # noqa: BLE001 - a user serializer may raise anything
        raise StateError(
            f"operator {operator!r}: the value of key {key!r} in keyed state {state.name!r} does not load with "
            f"serializer {serializer.name!r} ({type(exc).__name__}: {exc}); the snapshot is damaged or the "
            "serializer cannot read what it wrote",
            operator=operator,
            state=state.name,
        ) from exc


Target = Callable[[str, Any, bool], StoredState]


def read_snapshot(
    snapshot: dict[str, Any],
    *,
    target: Target,
    key_groups: range,
    max_parallelism: int,
    now: float,
    operator: str,
) -> None:
    """Load the key groups in ``key_groups`` of one old subtask's ``snapshot`` (format 1
    or 2) into the states ``target(name, kind, had_ttl)`` returns.

    Takes ownership of what it keeps: the dicts and values of those key groups become
    live state, so hand it a freshly decoded snapshot (each key group goes to one
    subtask only, so subtasks restoring from the same old snapshot share nothing).
    """
    version = snapshot.get("format") if isinstance(snapshot, dict) else None
    if version not in (SNAPSHOT_FORMAT, LEGACY_FORMAT):
        raise StateError(
            f"keyed state snapshot of {operator!r} has format {version!r}; this version of streamflow reads "
            f"formats {LEGACY_FORMAT} and {SNAPSHOT_FORMAT}",
            operator=operator,
        )
    for name, data in snapshot["states"].items():
        had_ttl = bool(data["ttl"])
        state = target(name, data["kind"], had_ttl)
        fix = _ttl_fix(state, had_ttl, now)
        if version == LEGACY_FORMAT:
            _read_legacy(state, data, fix, had_ttl, key_groups, max_parallelism)
        else:
            _read(state, data, fix, had_ttl, key_groups, operator)


def _ttl_fix(state: StoredState, had_ttl: bool, now: float) -> Callable[[Any], Any] | None:
    """Converts stored values saved with(out) TTL for a state now registered without (with) it."""
    if had_ttl == state.has_ttl:
        return None
    if had_ttl:
        return state.shape.strip
    return partial(state.shape.stamp, now=now)


def _read(
    state: StoredState, data: dict[str, Any], fix: Callable[[Any], Any] | None, had_ttl: bool, key_groups: range,
    operator: str,
) -> None:  # fmt: skip
    saved = data["serializer"]
    load: Callable[[Any], Any] | None = None
    if state.serializer is not None:  # registered before the restore: values are read now
        if saved != state.serializer.name:
            raise serializer_mismatch(
                f"keyed state {state.name!r}", state.name, saved, state.serializer.name, operator=operator
            )
        if not stores_in_place(state.serializer):
            shape = state.shape
            load = partial(shape.deserialize_ttl if had_ttl else shape.deserialize, loads=state.serializer.loads)
    else:
        if state.recorded is not None and state.recorded != saved:
            raise StateError(
                f"old subtasks of {operator!r} saved state {state.name!r} with two serializers, {state.recorded!r} "
                f"and {saved!r}; the snapshots are inconsistent",
                operator=operator,
                state=state.name,
            )
        state.recorded = saved
        state.encoded = saved != _IN_PLACE
    table = state.table
    for key_group, entries in data["key_groups"].items():
        if key_group not in key_groups:
            continue
        group = table.get(key_group)
        if load is None and fix is None:
            if group is None:
                table[key_group] = entries
            else:
                group.update(entries)
            continue
        if group is None:
            group = table[key_group] = {}
        for key, stored in entries.items():
            if load is not None:
                assert state.serializer is not None
                stored = _load(load, stored, state, state.serializer, key, operator)
            group[key] = stored if fix is None else fix(stored)


def _read_legacy(
    state: StoredState, data: dict[str, Any], fix: Callable[[Any], Any] | None, had_ttl: bool, key_groups: range,
    max_parallelism: int,
) -> None:  # fmt: skip
    decode = state.shape.legacy_ttl if had_ttl else state.shape.legacy
    table = state.table
    for key_group_str, entries in data["key_groups"].items():
        saved_group = int(key_group_str)
        for key, raw in entries:
            key = tuplify(key)
            kind = type(key)
            key_group = saved_group if kind is str or kind is int else key_group_for(key, max_parallelism)
            if key_group not in key_groups:
                continue
            stored = decode(raw)
            group = table.get(key_group)
            if group is None:
                group = table[key_group] = {}
            group[key] = stored if fix is None else fix(stored)
