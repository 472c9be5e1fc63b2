"""The keyed-state contract, run over every state kind x {plain, TTL} x every backend.

Every test runs once per backend of ``STATE_BACKENDS`` (the ``backend_factory``
fixture of tests/conftest.py). Each kind has one scenario that calls every public method of its handle, over two keys,
with tuple values (a TTL handle stores ``(value, timestamp)`` pairs, so a method that
forgot to unwrap one shows up as a wrong tuple). The scenario must give the same,
specified observations with and without TTL, and must have called every public method:
a method added to a handle fails here until the scenario covers it. A static guard adds
that a TTL handle that inherits from its plain twin overrides every public method of it
(or the method is listed as proven safe, with the reason).

Then, per kind: a snapshot (encoded as a checkpoint encodes it) restores every key, into
one backend and into two backends of half the key groups each (rescaling); and values
past their time to live read as absent.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from state_backends import BackendFactory

from streamflow.checkpoint.serde import decode, encode
from streamflow.core.clock import ManualClock
from streamflow.partitioning.keygroups import key_group_for
from streamflow.state import (
    AggregatingStateDescriptor,
    KeyedStateBackend,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from streamflow.state.descriptors import StateDescriptor

MAX_PARALLELISM = 8
LONG_TTL = StateTtlConfig(ttl=3600.0)  # nothing expires within a scenario
KINDS = ["value", "list", "map", "reducing", "aggregating"]
KEYS = range(20)

PROVEN_SAFE: dict[str, str] = {}
"""``"<Class>.<method>"`` a TTL handle may inherit from its plain twin, with the reason
(for instance a method built only on other methods the TTL handle overrides)."""


class Pairs:
    """An aggregate function over tuples: accumulates ``(sum, count)``, reports it."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator


def add_pairs(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b))


def descriptor(kind: str, ttl: StateTtlConfig | None) -> StateDescriptor:
    if kind == "value":
        return ValueStateDescriptor("value", default=("none",), ttl=ttl)
    if kind == "list":
        return ListStateDescriptor("list", ttl=ttl)
    if kind == "map":
        return MapStateDescriptor("map", ttl=ttl)
    if kind == "reducing":
        return ReducingStateDescriptor("reducing", add_pairs, ttl=ttl)
    return AggregatingStateDescriptor("aggregating", aggregate_fn=Pairs(), ttl=ttl)


def new_backend(factory: BackendFactory, clock: ManualClock, groups: range = range(MAX_PARALLELISM)) -> KeyedStateBackend:
    return factory().create_keyed_backend(
        operator_uid="op", subtask_index=0, max_parallelism=MAX_PARALLELISM, key_group_range=groups, clock=clock
    )


def switch(backend: KeyedStateBackend) -> Callable[[Any], None]:
    return lambda key: backend.set_current_key(key, key_group_for(key, MAX_PARALLELISM))


# -- one scenario per kind: every public method, two keys, tuple values ----------------------


def value_scenario(s: Any, use: Callable[[Any], None]) -> list[Any]:
    seen = []
    use("a")
    seen.append(s.value())
    s.update(("x", 1))
    seen.append(s.value())
    use("b")
    seen.append(s.value())
    s.update(("y", 2))
    use("a")
    s.clear()
    seen += [s.value()]
    use("b")
    seen.append(s.value())
    return seen


def list_scenario(s: Any, use: Callable[[Any], None]) -> list[Any]:
    seen = []
    use("a")
    seen.append(s.get())
    s.add(("x", 1))
    s.add_all([("x", 2), ("x", 3)])
    seen.append(s.get())
    use("b")
    s.update([("y", 1)])
    seen.append(s.get())
    use("a")
    s.update([("x", 4)])
    seen.append(s.get())
    s.clear()
    seen.append(s.get())
    use("b")
    seen.append(s.get())
    return seen


def map_scenario(s: Any, use: Callable[[Any], None]) -> list[Any]:
    seen = []
    use("a")
    seen += [s.is_empty(), s.get("k", ("default",)), s.contains("k")]
    s.put("k", ("x", 1))
    s.put_all({("k", 2): ("x", 2), "gone": ("x", 3)})
    s.remove("gone")
    seen += [s.get("k"), s.get(("k", 2)), s.contains("k"), s.contains("gone"), s.is_empty()]
    seen += [sorted(s.keys(), key=repr), sorted(s.values()), sorted(s.items(), key=repr)]
    use("b")
    seen += [s.keys(), s.is_empty()]
    s.put("k", ("y", 1))
    use("a")
    s.clear()
    seen += [s.items(), s.is_empty()]
    use("b")
    seen.append(s.items())
    return seen


def folding_scenario(first: Any, second: Any, other: Any) -> Callable[[Any, Callable[[Any], None]], list[Any]]:
    """The scenario of a reducing or aggregating state: fold two values into key a, one
    into key b, clear a."""

    def scenario(s: Any, use: Callable[[Any], None]) -> list[Any]:
        seen = []
        use("a")
        seen.append(s.get())
        s.add(first)
        s.add(second)
        seen.append(s.get())
        use("b")
        s.add(other)
        use("a")
        s.clear()
        seen.append(s.get())
        use("b")
        seen.append(s.get())
        return seen

    return scenario


SCENARIOS: dict[str, Callable[[Any, Callable[[Any], None]], list[Any]]] = {
    "value": value_scenario,
    "list": list_scenario,
    "map": map_scenario,
    "reducing": folding_scenario((1, 10), (2, 20), (5, 50)),
    "aggregating": folding_scenario(3, 4, 10),
}

EXPECTED: dict[str, list[Any]] = {
    "value": [("none",), ("x", 1), ("none",), ("none",), ("y", 2)],
    "list": [[], [("x", 1), ("x", 2), ("x", 3)], [("y", 1)], [("x", 4)], [], [("y", 1)]],
    "map": [
        True, ("default",), False,
        ("x", 1), ("x", 2), True, False, False,
        sorted(["k", ("k", 2)], key=repr), [("x", 1), ("x", 2)],
        sorted([("k", ("x", 1)), (("k", 2), ("x", 2))], key=repr),
        [], True,
        [], True,
        [("k", ("y", 1))],
    ],
    "reducing": [None, (3, 30), None, (5, 50)],
    "aggregating": [None, (7, 2), None, (10, 1)],
}


def public_methods(cls: type) -> set[str]:
    return {name for name, member in inspect.getmembers(cls, callable) if not name.startswith("_")}


class Recorder:
    """Forwards to a state handle and notes which of its methods were called."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.handle, name)
        if callable(attribute):
            self.called.add(name)
        return attribute


@pytest.mark.parametrize("ttl", [None, LONG_TTL], ids=["plain", "ttl"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_operation_of_every_kind_behaves_as_specified(
    backend_factory: BackendFactory, kind: str, ttl: StateTtlConfig | None
) -> None:
    backend = new_backend(backend_factory, ManualClock(1000.0))
    handle = backend.get_state(descriptor(kind, ttl))
    recorder = Recorder(handle)
    assert SCENARIOS[kind](recorder, switch(backend)) == EXPECTED[kind]
    missing = public_methods(type(handle)) - recorder.called
    assert not missing, f"the {kind} scenario does not call {sorted(missing)}: extend it to cover them"


@pytest.mark.parametrize("kind", KINDS)
def test_a_ttl_handle_overrides_every_method_it_would_inherit_from_its_plain_twin(
    backend_factory: BackendFactory, kind: str
) -> None:
    plain = type(new_backend(backend_factory, ManualClock()).get_state(descriptor(kind, None)))
    timed = type(new_backend(backend_factory, ManualClock()).get_state(descriptor(kind, LONG_TTL)))
    if timed is plain or not issubclass(timed, plain):
        # one class for both (RocksDB's handles decode their stored form themselves), or
        # no inheritance: nothing to inherit by mistake; the scenario above checks behaviour
        return
    inherited = {
        f"{plain.__name__}.{name}"
        for name in public_methods(plain)
        if next(c for c in timed.__mro__ if name in vars(c)) in plain.__mro__
    }
    assert inherited <= set(PROVEN_SAFE), (
        f"{timed.__name__} inherits {sorted(inherited - set(PROVEN_SAFE))} from {plain.__name__}, which would "
        "return raw (value, timestamp) pairs: override them, or list them in PROVEN_SAFE with the reason"
    )


def fill(kind: str, state: Any, key: int) -> None:
    if kind == "value":
        state.update((key, "v"))
    elif kind == "list":
        state.add_all([(key, 1), (key, 2)])
    elif kind == "map":
        state.put_all({(key, "m"): (key,), "shared": key})
    elif kind == "reducing":
        state.add((key, 1))
        state.add((key, 1))
    else:
        state.add(key)
        state.add(1)


def read(kind: str, state: Any) -> Any:
    if kind == "value":
        return state.value()
    if kind == "map":
        return sorted(state.items(), key=repr)
    return state.get()


@pytest.mark.parametrize("ttl", [None, LONG_TTL], ids=["plain", "ttl"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_snapshot_restores_every_key_whole_and_split_by_key_group(
    backend_factory: BackendFactory, kind: str, ttl: StateTtlConfig | None
) -> None:
    clock = ManualClock(1000.0)
    original = new_backend(backend_factory, clock)
    state = original.get_state(descriptor(kind, ttl))
    use = switch(original)
    expected = {}
    for key in KEYS:
        use(key)
        fill(kind, state, key)
        expected[key] = read(kind, state)
    stored = decode(encode(original.snapshot()))  # as a checkpoint stores and reads it

    whole = new_backend(backend_factory, clock)
    whole.restore([stored])
    restored_state = whole.get_state(descriptor(kind, ttl))
    for key in KEYS:
        switch(whole)(key)
        assert read(kind, restored_state) == expected[key]

    halves = [new_backend(backend_factory, clock, range(0, 4)), new_backend(backend_factory, clock, range(4, 8))]
    for half in halves:
        half.restore([decode(encode(original.snapshot()))])
        half_state = half.get_state(descriptor(kind, ttl))
        owned = {key for key, _ in half.keys(descriptor(kind, ttl).name)}
        assert owned == {k for k in KEYS if key_group_for(k, MAX_PARALLELISM) in half.key_group_range}
        for key in owned:
            switch(half)(key)
            assert read(kind, half_state) == expected[key]


ABSENT = {"value": ("none",), "list": [], "map": [], "reducing": None, "aggregating": None}


@pytest.mark.parametrize("kind", KINDS)
def test_a_value_past_its_time_to_live_reads_as_absent(backend_factory: BackendFactory, kind: str) -> None:
    clock = ManualClock(1000.0)
    backend = new_backend(backend_factory, clock)
    state = backend.get_state(descriptor(kind, StateTtlConfig(ttl=10.0)))
    use = switch(backend)
    use(1)
    fill(kind, state, 1)
    clock.advance(5.0)
    assert read(kind, state) != ABSENT[kind]
    clock.advance(10.0)
    assert read(kind, state) == ABSENT[kind]
    assert [key for key, _ in backend.keys(descriptor(kind, None).name)] == []
