"""Property: whatever a user puts in state comes back equal and of exactly the same type,
recursively, through every state kind and both snapshot paths.

Generated values mix nested tuples, NamedTuples, dataclasses, dicts with int / float /
bool / None / tuple keys, sets, frozensets, bytes, Decimals, dates and datetimes, UUIDs,
enums and big ints. Each example puts one value into every keyed state kind (value, list
elements, map key and value, reducing, aggregating accumulator; with and without TTL),
operator list, union and broadcast state, a timer key, a source split and a sink handle,
then writes the snapshots as checkpoint files and as a savepoint and restores both, once
per state backend of ``STATE_BACKENDS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import tempfile
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from contract.state_backends import BackendFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamflow.checkpoint import serde
from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta
from streamflow.checkpoint.snapshot import OperatorSnapshot, TimerSnapshot
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.core.clock import ManualClock
from streamflow.core.ids import CheckpointId
from streamflow.partitioning.keygroups import key_group_for
from streamflow.runtime.timers import TimerQueue
from streamflow.savepoint.location import locate_snapshot
from streamflow.savepoint.restore import read_snapshot_state
from streamflow.savepoint.writer import write_savepoint
from streamflow.state import (
    AggregatingStateDescriptor,
    KeyedStateBackend,
    ListStateDescriptor,
    MapStateDescriptor,
    OperatorStateStore,
    ReducingStateDescriptor,
    StateBackend,
    StateTtlConfig,
    ValueStateDescriptor,
    restore_operator_state,
)

MAX_PARALLELISM = 32


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Pair(NamedTuple):
    left: Any
    right: Any


@dataclasses.dataclass(frozen=True)
class Box:
    content: Any
    label: str


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=2**200),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.dates(),
    st.datetimes(),
    st.uuids().map(lambda u: uuid.UUID(int=u.int)),
    st.sampled_from(Colour),
    st.sampled_from(Level),
)
hashables = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.builds(Pair, inner, inner),
        st.frozensets(inner, max_size=3),
        st.builds(Box, inner, st.text(max_size=3)),
    ),
    max_leaves=6,
)
key_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8),
    st.dates(), st.datetimes(), st.uuids().map(lambda u: uuid.UUID(int=u.int)), st.sampled_from(Level),
)  # fmt: skip
# What key_by may return (a stable hash exists for it); map keys may be any hashable.
state_keys = st.recursive(
    key_leaves, lambda inner: st.one_of(st.tuples(inner, inner), st.builds(Pair, inner, inner)), max_leaves=4
)
values = st.recursive(
    hashables,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner, inner),
        st.builds(Pair, inner, inner),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.builds(Box, inner, st.text(max_size=3)),
    ),
    max_leaves=12,
)


def assert_exact(restored: Any, saved: Any, path: str = "value") -> None:
    """Equal, and of exactly the same type at every level."""
    assert type(restored) is type(saved), f"{path}: {type(restored).__name__} came back for {type(saved).__name__}"
    if isinstance(saved, dict):
        assert len(restored) == len(saved), path
        for (rk, rv), (sk, sv) in zip(restored.items(), saved.items()):
            assert_exact(rk, sk, f"{path} key {sk!r}")
            assert_exact(rv, sv, f"{path}[{sk!r}]")
    elif isinstance(saved, (list, tuple)):
        assert len(restored) == len(saved), path
        for index, (r, s) in enumerate(zip(restored, saved)):
            assert_exact(r, s, f"{path}[{index}]")
    elif isinstance(saved, (set, frozenset)):
        assert restored == saved, path
        for member in saved:
            assert_exact(next(m for m in restored if m == member), member, f"{path} member {member!r}")
    elif dataclasses.is_dataclass(saved):
        for f in dataclasses.fields(saved):
            assert_exact(getattr(restored, f.name), getattr(saved, f.name), f"{path}.{f.name}")
    else:
        assert restored == saved, path


def latest(_current: Any, added: Any) -> Any:
    return added


class Keep:
    """An aggregate function whose accumulator is the last value added."""

    def create_accumulator(self) -> Any:
        return None

    def add(self, value: Any, accumulator: Any) -> Any:
        return value

    def get_result(self, accumulator: Any) -> Any:
        return accumulator


def keyed_descriptors(ttl: StateTtlConfig | None) -> list[Any]:
    return [
        ValueStateDescriptor[Any]("value", ttl=ttl),
        ListStateDescriptor[Any]("list", ttl=ttl),
        MapStateDescriptor[Any, Any]("map", ttl=ttl),
        ReducingStateDescriptor[Any]("reducing", latest, ttl=ttl),
        AggregatingStateDescriptor[Any, Any, Any]("aggregating", aggregate_fn=Keep(), ttl=ttl),
    ]


LIST = ListStateDescriptor[Any]("split")
UNION = ListStateDescriptor[Any]("union")
BROADCAST = MapStateDescriptor[Any, Any]("broadcast")
TTL = StateTtlConfig(ttl=1000.0)


def new_backend(state_backend: StateBackend) -> KeyedStateBackend:
    return state_backend.create_keyed_backend(
        operator_uid="op", subtask_index=0, max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM), clock=ManualClock(5.0),
    )  # fmt: skip


def snapshots(
    state_backend: StateBackend, key: Any, map_key: Any, value: Any, other: Any, ttl: StateTtlConfig | None
) -> dict[str, dict[str, Any]]:
    """Per operator uid, what a task would snapshot with ``value`` in every kind of state."""
    backend = new_backend(state_backend)
    v, items, index, reducing, aggregating = (backend.get_state(d) for d in keyed_descriptors(ttl))
    backend.set_current_key(key, key_group_for(key, MAX_PARALLELISM))
    v.update(value)
    items.add_all([value, other])
    index.put(map_key, value)
    index.put(("other",), other)
    reducing.add(other)
    reducing.add(value)
    aggregating.add(value)
    timers = TimerQueue()
    timers.register(7.5, key, key_group_for(key, MAX_PARALLELISM))
    store = OperatorStateStore()
    store.get_list_state(LIST).add_all([value, other])
    store.get_union_list_state(UNION).add(value)
    store.get_broadcast_state(BROADCAST).put(map_key, value)
    keyed = backend.snapshot()
    backend.close()
    return {
        "op": OperatorSnapshot(keyed=keyed, timers=TimerSnapshot(processing=timers.snapshot(), event=[]),
                               operator=store.snapshot()),
        "source": OperatorSnapshot(source=[value]),
        "sink": OperatorSnapshot(sink=[{"handle": value}]),
    }  # fmt: skip


async def write_and_read_back(
    taken: dict[str, OperatorSnapshot], directory: Path
) -> list[dict[str, list[OperatorSnapshot]]]:
    """The snapshots as restored from checkpoint files, and from a savepoint of them."""
    storage = CheckpointStorage(directory / "chk")
    operators = {}
    for uid, state in taken.items():
        handle = await storage.write_state(1, f"{uid}-0", serde.encode(state.to_stored(), operator=uid, subtask=0))
        operators[uid] = OperatorStateMeta(parallelism=1, max_parallelism=MAX_PARALLELISM, subtasks={0: handle})
    metadata = CheckpointMetadata(job_name="prop", checkpoint_id=CheckpointId(1), timestamp=0.0, operators=operators)
    savepoint = await write_savepoint(storage, 1, metadata, directory / "savepoints")
    await storage.write_metadata(1, metadata)
    completed = await storage.latest_complete()
    assert completed is not None
    located = await locate_snapshot(savepoint)
    return [
        await read_snapshot_state(storage, completed),
        await read_snapshot_state(located.storage, located.completed),
    ]


def check_restored(
    state_backend: StateBackend,
    restored: dict[str, list[OperatorSnapshot]], key: Any, map_key: Any, value: Any, other: Any, ttl: Any,
) -> None:
    op = restored["op"]
    backend = new_backend(state_backend)
    backend.restore([s.keyed for s in op if s.keyed is not None])
    v, items, index, reducing, aggregating = (backend.get_state(d) for d in keyed_descriptors(ttl))
    [(restored_key, key_group)] = list(backend.keys("value"))
    assert_exact(restored_key, key, "state key")
    backend.set_current_key(restored_key, key_group)
    assert_exact(v.value(), value)
    assert_exact(items.get(), [value, other])
    expected = [(map_key, value), (("other",), other)] if map_key != ("other",) else [(map_key, other)]
    by_key = lambda pair: repr(pair[0])  # noqa: E731 - the order of a map is the backend's (test_map_order.py)
    assert_exact(sorted(index.items(), key=by_key), sorted(expected, key=by_key))
    assert_exact(reducing.get(), value)
    assert_exact(aggregating.get(), value)
    timers = TimerQueue()
    assert op[0].timers is not None
    timers.restore(op[0].timers.processing, range(MAX_PARALLELISM), MAX_PARALLELISM)
    [(_, _, timer_key)] = timers.pop_due(10.0)
    assert_exact(timer_key, key, "timer key")
    store = restore_operator_state([s.operator or {} for s in op], 0, 1)
    assert_exact(store.get_list_state(LIST).get(), [value, other])
    assert_exact(store.get_union_list_state(UNION).get(), [value])
    assert_exact(store.get_broadcast_state(BROADCAST).items(), [(map_key, value)])
    assert_exact(restored["source"][0].source, [value], "source split")
    assert_exact(restored["sink"][0].sink, [{"handle": value}], "sink handle")
    backend.close()


# the fixture makes fresh backends on each call: sharing it across examples is safe
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(key=state_keys, map_key=hashables, value=values, other=values, with_ttl=st.booleans())
def test_state_restores_exactly_through_checkpoints_and_savepoints(
    backend_factory: BackendFactory, key: Any, map_key: Any, value: Any, other: Any, with_ttl: bool
) -> None:
    ttl = TTL if with_ttl else None
    taken = snapshots(backend_factory(), key, map_key, value, other, ttl)
    with tempfile.TemporaryDirectory() as scratch:
        for restored in asyncio.run(write_and_read_back(taken, Path(scratch))):
            check_restored(backend_factory(), restored, key, map_key, value, other, ttl)


def test_the_strategies_reach_every_type_named_in_the_contract() -> None:
    """The property above is only as good as what it generates: make sure of the types."""
    seen: set[type] = set()

    def walk(value: Any) -> None:
        seen.add(type(value))
        if isinstance(value, dict):
            seen.update(type(k) for k in value)
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item)
        elif isinstance(value, Box):
            walk(value.content)

    @settings(max_examples=300, deadline=None, database=None)
    @given(values)
    def collect(value: Any) -> None:
        walk(value)

    collect()
    wanted = {tuple, Pair, dict, set, frozenset, bytes, decimal.Decimal, datetime.date, datetime.datetime,
              uuid.UUID, Colour, Level, Box, int, float, bool, type(None), list}  # fmt: skip
    assert wanted <= seen, wanted - seen
