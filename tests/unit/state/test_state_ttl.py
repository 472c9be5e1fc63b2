"""State TTL: update types, visibility, and the three cleanup strategies, on a ManualClock."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from contract.state_backends import BackendFactory

from streamflow.core.clock import ManualClock
from streamflow.partitioning.keygroups import key_group_for
from streamflow.state import (
    AggregatingStateDescriptor,
    KeyedStateBackend,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    TtlUpdateType,
    TtlVisibility,
    ValueStateDescriptor,
)

MAX_PARALLELISM = 8
NEVER = TtlVisibility.NEVER_RETURN_EXPIRED
RETURN = TtlVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP


class Sum:
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: int, accumulator: int) -> int:
        return accumulator + value

    def get_result(self, accumulator: int) -> str:
        return f"sum={accumulator}"


MakeBackend = Callable[[ManualClock], KeyedStateBackend]


@pytest.fixture
def make_backend(backend_factory: BackendFactory) -> MakeBackend:
    """Fresh keyed backends of the backend under test (each test runs once per backend)."""
    return lambda clock: backend_factory().create_keyed_backend(
        operator_uid="op",
        subtask_index=0,
        max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM),
        clock=clock,
    )


def use(backend: KeyedStateBackend, key: Any) -> None:
    backend.set_current_key(key, key_group_for(key, MAX_PARALLELISM))


def stored(backend: KeyedStateBackend, name: str) -> dict[Any, Any]:
    """What live state holds for ``name`` (expired or not), read through a snapshot."""
    data = backend.snapshot()["states"][name]["key_groups"]
    return {key: value for entries in data.values() for key, value in entries.items()}


def ttl(**kwargs: Any) -> StateTtlConfig:
    return StateTtlConfig(ttl=10.0, **kwargs)


# -- update type --------------------------------------------------------------------


def test_value_expires_ttl_after_the_last_write(make_backend: MakeBackend) -> None:
    clock = ManualClock(100.0)
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor("v", default="none", ttl=ttl()))
    use(backend, "a")
    state.update("x")
    clock.advance(6)
    assert state.value() == "x"  # a read does not refresh under ON_CREATE_AND_WRITE
    clock.advance(3.9)
    assert state.value() == "x"
    clock.advance(0.1)  # exactly ttl after the write: expired
    assert state.value() == "none"


def test_a_write_restarts_the_time_to_live(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl()))
    use(backend, "a")
    state.update("x")
    clock.advance(8)
    state.update("y")
    clock.advance(8)
    assert state.value() == "y"


def test_on_read_and_write_refreshes_on_read(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl(update_type=TtlUpdateType.ON_READ_AND_WRITE)))
    use(backend, "a")
    state.update("x")
    clock.set(8)
    assert state.value() == "x"  # refreshed to 8
    clock.set(17)
    assert state.value() == "x"  # refreshed to 17
    clock.set(27)
    assert state.value() is None


def test_ttl_accepts_a_timedelta(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[int]("v", ttl=StateTtlConfig(ttl=timedelta(seconds=3))))
    use(backend, "a")
    state.update(1)
    clock.advance(2.5)
    assert state.value() == 1
    clock.advance(0.5)
    assert state.value() is None


# -- visibility and cleanup on read -------------------------------------------------


def test_never_return_expired_hides_values_that_are_still_stored(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl(visibility=NEVER, cleanup_on_read=False)))
    use(backend, "a")
    state.update("x")
    clock.advance(20)
    assert state.value() is None
    assert stored(backend, "v") == {"a": ("x", 0.0)}  # hidden, not removed
    assert list(backend.keys("v")) == []  # keys() hides it too


def test_return_expired_if_not_cleaned_up_without_cleanup_keeps_returning_it(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl(visibility=RETURN, cleanup_on_read=False)))
    use(backend, "a")
    state.update("x")
    clock.advance(20)
    assert state.value() == "x"
    assert state.value() == "x"
    assert [key for key, _ in backend.keys("v")] == ["a"]


def test_return_expired_with_cleanup_on_read_returns_it_one_last_time(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl(visibility=RETURN, cleanup_on_read=True)))
    use(backend, "a")
    state.update("x")
    clock.advance(20)
    assert state.value() == "x"
    assert state.value() is None
    assert stored(backend, "v") == {}


def test_cleanup_on_read_removes_the_expired_value(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl(cleanup_on_read=True)))
    use(backend, "a")
    state.update("x")
    use(backend, "b")
    state.update("y")
    clock.advance(20)
    assert state.value() is None
    assert stored(backend, "v") == {"a": ("x", 0.0)}  # only the key that was read is gone


# -- full snapshot ------------------------------------------------------------------


def test_full_snapshot_cleanup_leaves_expired_values_out_of_the_snapshot_only(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    config = ttl(visibility=RETURN, cleanup_on_read=False, cleanup_full_snapshot=True)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=config))
    items = backend.get_state(ListStateDescriptor[str]("l", ttl=config))
    use(backend, "old")
    state.update("o")
    items.add("o1")
    clock.set(5)
    use(backend, "new")
    state.update("n")
    items.add("n1")
    use(backend, "old")
    items.add("o2")
    clock.set(12)
    assert stored(backend, "v") == {"new": ("n", 5.0)}
    assert stored(backend, "l") == {"old": [("o2", 5.0)], "new": [("n1", 5.0)]}
    assert state.value() == "o"  # live state still has it (visible until cleaned up)


def test_without_full_snapshot_cleanup_expired_values_are_snapshotted(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl(cleanup_on_read=False)))
    use(backend, "a")
    state.update("x")
    clock.set(50)
    assert stored(backend, "v") == {"a": ("x", 0.0)}


# -- incremental cleanup ------------------------------------------------------------


def restored_backend(make_backend: MakeBackend, clock: ManualClock, entries: dict[str, float], config: StateTtlConfig) -> KeyedStateBackend:
    """A backend whose value state 'v' holds ``key -> (key, timestamp)``, built by restore
    so that no state access has moved the incremental cursor yet."""
    key_groups: dict[str, list[Any]] = {}
    for key, timestamp in entries.items():
        key_groups.setdefault(str(key_group_for(key, MAX_PARALLELISM)), []).append([key, [key, timestamp]])
    backend = make_backend(clock)
    backend.restore([{"format": 1, "states": {"v": {"kind": "value", "ttl": True, "key_groups": key_groups}}}])
    backend.get_state(ValueStateDescriptor[str]("v", ttl=config))
    return backend


def test_incremental_cleanup_checks_n_entries_per_access(make_backend: MakeBackend) -> None:
    clock = ManualClock(20.0)
    config = ttl(visibility=RETURN, cleanup_on_read=False, cleanup_incremental=2)
    backend = restored_backend(make_backend, clock, {f"k{i}": 0.0 for i in range(6)}, config)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=config))
    assert len(stored(backend, "v")) == 6
    use(backend, "nobody")
    remaining = []
    for _ in range(3):
        state.value()  # each access checks (and here removes) two more entries
        remaining.append(len(stored(backend, "v")))
    assert remaining == [4, 2, 0]


def test_incremental_cleanup_keeps_live_entries_and_wraps_around(make_backend: MakeBackend) -> None:
    clock = ManualClock(20.0)
    config = ttl(visibility=RETURN, cleanup_on_read=False, cleanup_incremental=3)
    entries = {"e1": 0.0, "e2": 1.0, "live1": 15.0, "e3": 2.0, "live2": 19.0}
    backend = restored_backend(make_backend, clock, entries, config)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=config))
    use(backend, "nobody")
    for _ in range(4):
        state.value()
    assert stored(backend, "v") == {"live1": ("live1", 15.0), "live2": ("live2", 19.0)}
    clock.set(30)  # now the other two expire; the cursor starts over
    for _ in range(2):
        state.value()
    assert stored(backend, "v") == {}


def test_incremental_cleanup_per_record(make_backend: MakeBackend) -> None:
    clock = ManualClock(20.0)
    config = ttl(visibility=RETURN, cleanup_on_read=False, cleanup_incremental=1, incremental_per_record=True)
    backend = restored_backend(make_backend, clock, {"a": 0.0, "b": 0.0, "c": 0.0}, config)
    counts = []
    for _ in range(3):
        backend.on_record()  # no state access at all
        counts.append(len(stored(backend, "v")))
    assert counts == [2, 1, 0]


def test_on_record_is_a_no_op_without_per_record_cleanup(make_backend: MakeBackend) -> None:
    clock = ManualClock(20.0)
    config = ttl(visibility=RETURN, cleanup_on_read=False, cleanup_incremental=1)
    backend = restored_backend(make_backend, clock, {"a": 0.0, "b": 0.0}, config)
    for _ in range(5):
        backend.on_record()
    assert len(stored(backend, "v")) == 2


def test_incremental_cleanup_of_list_and_map_removes_expired_elements(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    config = ttl(visibility=RETURN, cleanup_on_read=False, cleanup_incremental=5)
    items = backend.get_state(ListStateDescriptor[str]("l", ttl=config))
    index = backend.get_state(MapStateDescriptor[str, int]("m", ttl=config))
    use(backend, "a")
    items.add("old")
    index.put("old", 1)
    clock.set(8)
    items.add("new")
    index.put("new", 2)
    clock.set(12)
    use(backend, "nobody")
    items.get()
    index.get("x")
    assert stored(backend, "l") == {"a": [("new", 8.0)]}
    assert stored(backend, "m") == {"a": {"new": (2, 8.0)}}


# -- list, map, reducing and aggregating --------------------------------------------


def test_list_state_ttl_is_per_element(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ListStateDescriptor[str]("l", ttl=ttl()))
    use(backend, "a")
    state.add("first")
    clock.set(5)
    state.add_all(["second", "third"])
    clock.set(9)
    assert state.get() == ["first", "second", "third"]
    clock.set(12)
    assert state.get() == ["second", "third"]
    assert stored(backend, "l") == {"a": [("second", 5.0), ("third", 5.0)]}  # cleaned on read
    clock.set(15)
    assert state.get() == []
    state.update(["x"])
    assert stored(backend, "l") == {"a": [("x", 15.0)]}


def test_list_state_ttl_refresh_on_read_and_return_expired(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    refreshed = backend.get_state(ListStateDescriptor[str]("r", ttl=ttl(update_type=TtlUpdateType.ON_READ_AND_WRITE)))
    visible = backend.get_state(ListStateDescriptor[str]("v", ttl=ttl(visibility=RETURN, cleanup_on_read=False)))
    use(backend, "a")
    refreshed.add("x")
    visible.add("y")
    clock.set(9)
    assert refreshed.get() == ["x"]
    clock.set(18)
    assert refreshed.get() == ["x"]
    assert visible.get() == ["y"]  # expired but not cleaned up
    visible.add("z")
    clock.set(25)
    assert visible.get() == ["y", "z"]


def test_map_state_ttl_is_per_entry(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(MapStateDescriptor[int, str]("m", ttl=ttl()))
    use(backend, "a")
    state.put(1, "one")
    clock.set(5)
    state.put_all({2: "two", 3: "three"})
    clock.set(12)
    assert not state.is_empty()
    assert state.get(1) is None
    assert state.get(1, "gone") == "gone"
    assert not state.contains(1)
    assert state.contains(2)
    assert state.keys() == [2, 3]
    assert state.values() == ["two", "three"]
    assert state.items() == [(2, "two"), (3, "three")]
    clock.set(15)
    assert state.is_empty()
    assert state.items() == []
    assert stored(backend, "m") == {}


def test_map_state_ttl_refresh_on_read_is_per_entry(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(MapStateDescriptor[str, int]("m", ttl=ttl(update_type=TtlUpdateType.ON_READ_AND_WRITE)))
    use(backend, "a")
    state.put("read", 1)
    state.put("unread", 2)
    clock.set(9)
    assert state.get("read") == 1
    clock.set(15)
    assert state.items() == [("read", 1)]


def test_map_state_return_expired_if_not_cleaned_up(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(MapStateDescriptor[str, int]("m", ttl=ttl(visibility=RETURN, cleanup_on_read=False)))
    use(backend, "a")
    state.put("k", 1)
    clock.set(30)
    assert state.get("k") == 1
    assert state.contains("k")
    assert not state.is_empty()
    assert state.items() == [("k", 1)]


def test_reducing_state_ttl_starts_over_after_expiry(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ReducingStateDescriptor("sum", operator.add, ttl=ttl()))
    use(backend, "a")
    state.add(1)
    clock.set(5)
    state.add(2)  # refreshes to 5
    clock.set(14)
    assert state.get() == 3
    clock.set(15)
    assert state.get() is None
    state.add(4)
    assert state.get() == 4


def test_reducing_state_never_folds_an_expired_value_even_if_visible(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    config = ttl(visibility=RETURN, cleanup_on_read=False)
    state = backend.get_state(ReducingStateDescriptor("sum", operator.add, ttl=config))
    use(backend, "a")
    state.add(1)
    clock.set(20)
    assert state.get() == 1
    state.add(5)
    assert state.get() == 5


def test_aggregating_state_ttl(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(AggregatingStateDescriptor("agg", aggregate_fn=Sum(), ttl=ttl()))
    use(backend, "a")
    state.add(2)
    state.add(3)
    clock.set(9)
    assert state.get() == "sum=5"
    clock.set(10)
    assert state.get() is None
    state.add(7)
    assert state.get() == "sum=7"
    state.clear()
    assert state.get() is None


def test_ttl_values_are_isolated_per_key(make_backend: MakeBackend) -> None:
    clock = ManualClock()
    backend = make_backend(clock)
    state = backend.get_state(ValueStateDescriptor[str]("v", ttl=ttl()))
    use(backend, "early")
    state.update("e")
    clock.set(5)
    use(backend, "late")
    state.update("l")
    clock.set(11)
    assert state.value() == "l"
    use(backend, "early")
    assert state.value() is None


async def test_runtime_runs_per_record_incremental_cleanup_for_keyed_operators(backend_factory: BackendFactory) -> None:
    """The runtime calls on_record per keyed record, so per-record cleanup removes
    expired entries of keys that are never read again."""
    from streamflow import KeyedProcessFunction, RestartStrategy, StreamEnvironment
    from streamflow.connectors.debug import CollectSink
    from streamflow.core.clock import ManualClock
    from streamflow.state import StateTtlConfig, TtlVisibility, ValueStateDescriptor

    clock = ManualClock(1000.0)
    # expired entries stay visible until cleanup removes them, so only cleanup can empty keys()
    ttl = StateTtlConfig(
        ttl=10.0,
        visibility=TtlVisibility.RETURN_EXPIRED_IF_NOT_CLEANED_UP,
        cleanup_on_read=False,
        cleanup_incremental=4,
        incremental_per_record=True,
    )
    live: list[int] = []

    class Remember(KeyedProcessFunction):
        def open(self, ctx):  # type: ignore[no-untyped-def]
            self.ctx = ctx
            self.seen = ctx.get_state(ValueStateDescriptor("seen", ttl=ttl))

        def process_element(self, value, ctx, out):  # type: ignore[no-untyped-def]
            if value == "tick":
                clock.advance(60.0)  # every key written so far is now expired
            else:
                self.seen.update(True)
            live.append(sum(1 for _ in self.ctx.keyed_backend.keys("seen")))
            out.collect(value)

    env = StreamEnvironment(parallelism=1).set_clock(clock).set_restart_strategy(RestartStrategy.none())
    env.set_state_backend(backend_factory())
    items = [f"k{i}" for i in range(8)] + ["tick"] * 6
    env.from_collection(items).key_by(lambda v: v).process(Remember()).sink_to(CollectSink("ttl-per-record"))
    await env.execute("ttl-per-record")
    assert live[7] == 8  # all eight keys written and live
    assert live[-1] == 0  # the ticks alone swept every expired key
