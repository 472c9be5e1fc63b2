"""The function operator's contract, run over every kind x sync/async x keyed/not x path.

Every combination gets the same input in two batches, with two records the function
raises on, and must give what a plain-Python model of the kind gives: the outputs in
order, each output's source position, the keyed state left behind, the counters, and
the error policy at work (fail naming operator, subtask and position; skip and count;
dead-letter with the error and the position). Where a kind has a fast path (a
synchronous map that is not keyed, a synchronous keyed reduce) it runs once on the fast
path and once forced onto the general one: the two must not differ in anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from state_backends import STATE_BACKENDS, BackendFactory, ClosingBackends

from streamflow import ErrorPolicy, KeyedProcessFunction, ProcessFunction, UserFunctionError
from streamflow.connectors import DiscardingSink
from streamflow.core.clock import ManualClock
from streamflow.core.elements import Batch, SourceRef
from streamflow.graph.spec import OperatorKind, OperatorSpec
from streamflow.partitioning.keygroups import KeyGroupAssigner
from streamflow.runtime.operators import make_operator
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.operators.function import FunctionOperator, RecordPath
from streamflow.state import HashMapStateBackend, StateBackend, StateTtlConfig, ValueStateDescriptor
from streamflow.state.heap import HeapKeyedStateBackend

MAX_PARALLELISM = 128
RECORDS = list(range(12))
BAD = {3, 8}  # the function raises on these
ORIGIN = SourceRef("src", 0, "split")
POSITIONS = [f"p{i}" for i in RECORDS]


def key_of(x: int) -> int:
    return x % 2


def check(x: int) -> None:
    if x in BAD:
        raise ValueError(f"bad record {x}")


# -- the user functions, sync and async, per kind -------------------------------------------


def times_ten(x: int) -> int:
    check(x)
    return x * 10


async def times_ten_async(x: int) -> int:
    check(x)
    return x * 10


def twice(x: int) -> list[int]:
    check(x)
    return [x, -x]


async def twice_async(x: int) -> list[int]:
    check(x)
    return [x, -x]


def every_third(x: int) -> bool:
    check(x)
    return x % 3 == 0


async def every_third_async(x: int) -> bool:
    check(x)
    return x % 3 == 0


def add(a: int, b: int) -> int:
    check(b)
    return a + b


async def add_async(a: int, b: int) -> int:
    check(b)
    return a + b


class PlusOne(ProcessFunction):
    def process_element(self, value: int, ctx: Any, out: Any) -> None:
        check(value)
        out.collect(value + 1)


class PlusOneAsync(ProcessFunction):
    async def process_element(self, value: int, ctx: Any, out: Any) -> None:
        check(value)
        out.collect(value + 1)


class CountPerKey(KeyedProcessFunction):
    """Emits (key, value, how many records of this key so far), from keyed ValueState."""

    def open(self, ctx: Any) -> None:
        self.seen = ctx.get_state(ValueStateDescriptor("seen", default=0))

    def process_element(self, value: int, ctx: Any, out: Any) -> None:
        check(value)
        self.seen.update(self.seen.value() + 1)
        out.collect((ctx.get_current_key(), value, self.seen.value()))


class CountPerKeyAsync(CountPerKey):
    async def process_element(self, value: int, ctx: Any, out: Any) -> None:  # type: ignore[override]
        check(value)
        self.seen.update(self.seen.value() + 1)
        out.collect((ctx.get_current_key(), value, self.seen.value()))


# -- the model: what each kind must give for the good records ------------------------------


def model(kind: OperatorKind, keyed: bool) -> tuple[list[Any], list[str], dict[int, Any]]:
    """Outputs, their positions, and the keyed state per key the good records lead to."""
    out: list[Any] = []
    positions: list[str] = []
    state: dict[int, Any] = {}
    for x, position in zip(RECORDS, POSITIONS):
        if x in BAD:
            continue
        key = key_of(x)
        if kind is OperatorKind.MAP:
            produced = [x * 10]
        elif kind is OperatorKind.FLAT_MAP:
            produced = [x, -x]
        elif kind is OperatorKind.FILTER:
            produced = [x] if x % 3 == 0 else []
        elif kind is OperatorKind.PROCESS and not keyed:
            produced = [x + 1]
        elif kind is OperatorKind.PROCESS:
            state[key] = state.get(key, 0) + 1
            produced = [(key, x, state[key])]
        else:  # REDUCE: a running sum per key
            state[key] = state.get(key, 0) + x
            produced = [state[key]]
        out += produced
        positions += [position] * len(produced)
    return out, positions, state


@dataclass(frozen=True)
class Case:
    kind: OperatorKind
    is_async: bool
    keyed: bool
    path: str  # "fast" or "general"
    function: Callable[[], Any]

    @property
    def id(self) -> str:
        return "-".join(
            [self.kind.value, "async" if self.is_async else "sync", "keyed" if self.keyed else "plain", self.path]
        )


FUNCTIONS: dict[tuple[OperatorKind, bool, bool], Callable[[], Any]] = {
    (OperatorKind.MAP, False, False): lambda: times_ten,
    (OperatorKind.MAP, True, False): lambda: times_ten_async,
    (OperatorKind.FLAT_MAP, False, False): lambda: twice,
    (OperatorKind.FLAT_MAP, True, False): lambda: twice_async,
    (OperatorKind.FILTER, False, False): lambda: every_third,
    (OperatorKind.FILTER, True, False): lambda: every_third_async,
    (OperatorKind.PROCESS, False, False): PlusOne,
    (OperatorKind.PROCESS, True, False): PlusOneAsync,
    (OperatorKind.PROCESS, False, True): CountPerKey,
    (OperatorKind.PROCESS, True, True): CountPerKeyAsync,
    (OperatorKind.REDUCE, False, True): lambda: add,
    (OperatorKind.REDUCE, True, True): lambda: add_async,
}


def cases() -> list[Case]:
    found = []
    for kind in (OperatorKind.MAP, OperatorKind.FLAT_MAP, OperatorKind.FILTER, OperatorKind.PROCESS, OperatorKind.REDUCE):
        for is_async in (False, True):
            for keyed in (False, True):
                make = FUNCTIONS.get((kind, is_async, keyed)) or FUNCTIONS.get((kind, is_async, False))
                if make is None or (kind is OperatorKind.REDUCE and not keyed):
                    continue  # reduce is keyed only
                fast = RecordPath.for_operator(kind, keyed, is_async) is not RecordPath.GENERAL
                for path in ("fast", "general") if fast else ("general",):
                    found.append(Case(kind, is_async, keyed, path, make))
    return found


CASES = cases()


def test_every_kind_is_covered_sync_and_async_keyed_and_not_and_on_each_path() -> None:
    ids = {case.id for case in CASES}
    assert len(ids) == len(CASES) == 20
    assert {"map-sync-plain-fast", "map-sync-plain-general", "reduce-sync-keyed-fast", "reduce-async-keyed-general"} <= ids


@dataclass
class Run:
    operator: FunctionOperator
    emitted: list[Batch]
    dead: list[Batch]

    @property
    def records(self) -> list[Any]:
        return [r for b in self.emitted for r in b.records]

    @property
    def positions(self) -> list[Any]:
        return [p for b in self.emitted for p in (b.positions or [])]


def batches(keyed: bool, with_keys: bool) -> list[Batch]:
    """The input in two batches; keyed ones carry keys and key groups, as a hash exchange
    hands them over (``with_keys=False``: the operator applies the key selector itself)."""
    assign = KeyGroupAssigner(MAX_PARALLELISM)
    made = []
    for part in (slice(0, 5), slice(5, None)):
        records, positions = RECORDS[part], POSITIONS[part]
        if keyed and with_keys:
            keys = [key_of(x) for x in records]
            made.append(Batch(records, positions, ORIGIN, keys, [assign(k) for k in keys]))
        else:
            made.append(Batch(records, positions, ORIGIN))
    return made


async def run(
    case: Case, policy: ErrorPolicy, *, with_keys: bool = True, state_backend: StateBackend | None = None
) -> Run:
    spec = OperatorSpec(
        node_id=1,
        kind=case.kind,
        name=case.kind.value,
        function=case.function(),
        key_selector=key_of if case.keyed else None,
        error_policy=policy,
    )
    backend = (
        (state_backend or HashMapStateBackend()).create_keyed_backend(
            operator_uid=spec.effective_uid, subtask_index=0, max_parallelism=MAX_PARALLELISM,
            key_group_range=range(MAX_PARALLELISM), clock=ManualClock(),
        )
        if case.keyed
        else None
    )
    ctx = OperatorContext(
        job_name="contract", spec=spec, subtask_index=0, parallelism=1, max_parallelism=MAX_PARALLELISM,
        clock=ManualClock(), keyed_backend=backend, checkpointing=False, checkpoint_interval=None,
    )
    operator = make_operator(spec, ctx)
    assert isinstance(operator, FunctionOperator)
    if case.path == "general":
        operator.path = RecordPath.GENERAL
    assert (operator.path is RecordPath.GENERAL) == (case.path == "general")
    emitted: list[Batch] = []
    dead: list[Batch] = []

    async def emit(batch: Batch) -> None:
        emitted.append(batch)

    async def dead_letter(batch: Batch) -> None:
        dead.append(batch)

    operator.emit = emit
    operator.dead_letter = dead_letter
    await operator.open(None)
    for batch in batches(case.keyed, with_keys):
        await operator.process(batch)
    return Run(operator, emitted, dead)


def keyed_state(run: Run, case: Case) -> dict[int, Any]:
    backend = run.operator.ctx.keyed_backend
    if backend is None:
        return {}
    name = "reduce" if case.kind is OperatorKind.REDUCE else "seen"
    state = backend.get_state(ValueStateDescriptor[Any](name, default=0 if name == "seen" else None))
    found = {}
    for key, key_group in list(backend.keys(name)):
        backend.set_current_key(key, key_group)
        found[key] = state.value()
    return found


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_skip_gives_the_models_output_positions_state_and_counts(case: Case) -> None:
    result = await run(case, ErrorPolicy.skip())
    out, positions, state = model(case.kind, case.keyed)
    assert result.records == out
    assert result.positions == positions
    assert all(b.origin == ORIGIN for b in result.emitted)
    assert keyed_state(result, case) == state
    metrics = result.operator.metrics
    assert (metrics.records_in, metrics.records_out) == (len(RECORDS), len(out))
    assert (metrics.records_skipped, metrics.records_dead_lettered) == (len(BAD), 0)
    assert result.dead == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_dead_letter_routes_each_failed_record_with_its_error_and_position(case: Case) -> None:
    result = await run(case, ErrorPolicy.dead_letter(DiscardingSink()))
    out, _, _ = model(case.kind, case.keyed)
    assert result.records == out
    letters = [letter for b in result.dead for letter in b.records]
    assert letters == [
        {"operator": case.kind.value + "#1", "subtask": 0, "position": f"src[0] split @ 'p{x}'",
         "error": f"ValueError: bad record {x}", "record": x}
        for x in sorted(BAD)
    ]
    assert (result.operator.metrics.records_skipped, result.operator.metrics.records_dead_lettered) == (0, len(BAD))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_fail_names_the_operator_the_subtask_and_the_source_position(case: Case) -> None:
    with pytest.raises(UserFunctionError) as failed:
        await run(case, ErrorPolicy.fail())
    error = failed.value
    assert (error.operator, error.subtask, error.position, error.record) == (
        case.kind.value + "#1", 0, "src[0] split @ 'p3'", "3"
    )
    assert "ValueError: bad record 3" in str(error) and isinstance(error.__cause__, ValueError)


@pytest.mark.parametrize("case", [c for c in CASES if c.keyed], ids=lambda c: c.id)
async def test_keyed_operators_apply_the_key_selector_when_the_batch_has_no_keys(case: Case) -> None:
    result = await run(case, ErrorPolicy.skip(), with_keys=False)
    out, positions, state = model(case.kind, case.keyed)
    assert (result.records, result.positions, keyed_state(result, case)) == (out, positions, state)


REDUCE_FAST = next(case for case in CASES if case.id == "reduce-sync-keyed-fast")


@pytest.mark.parametrize("with_keys", [True, False], ids=["keys-given", "keys-computed"])
@pytest.mark.parametrize("factory", STATE_BACKENDS)
async def test_the_fast_reduce_gives_the_model_on_every_state_backend(factory: BackendFactory, with_keys: bool) -> None:
    """The heap hands the reduce its value table (dict operations per record); other
    backends go through the state handle: the two loops must not differ in anything."""
    backends = ClosingBackends(factory)
    try:
        result = await run(REDUCE_FAST, ErrorPolicy.skip(), with_keys=with_keys, state_backend=backends())
        backend = result.operator.ctx.keyed_backend
        assert backend is not None
        assert backend.get_current_key() == key_of(RECORDS[-1])  # as if each record had set it
        out, positions, state = model(REDUCE_FAST.kind, REDUCE_FAST.keyed)
        assert (result.records, result.positions, keyed_state(result, REDUCE_FAST)) == (out, positions, state)
    finally:
        backends.close_all()


class CountingRecords(HeapKeyedStateBackend):
    """The heap backend, counting the runtime's per-record calls."""

    calls = 0

    def on_record(self) -> None:
        self.calls += 1
        super().on_record()


class CountingHeap:
    def create_keyed_backend(self, **kwargs: Any) -> CountingRecords:
        return CountingRecords(**kwargs)


async def test_the_fast_reduce_runs_per_record_ttl_cleanup_when_a_state_asks_for_it() -> None:
    class SweepingSum:
        def open(self, ctx: Any) -> None:  # a state with per-record incremental cleanup
            ttl = StateTtlConfig(ttl=60.0, cleanup_incremental=2, incremental_per_record=True)
            ctx.get_state(ValueStateDescriptor[int]("swept", ttl=ttl))

        def __call__(self, a: int, b: int) -> int:
            check(b)
            return a + b

    case = Case(OperatorKind.REDUCE, False, True, "fast", SweepingSum)
    result = await run(case, ErrorPolicy.skip(), state_backend=CountingHeap())
    out, _, state = model(OperatorKind.REDUCE, True)
    assert (result.records, keyed_state(result, case)) == (out, state)
    backend = result.operator.ctx.keyed_backend
    assert isinstance(backend, CountingRecords) and backend.calls == len(RECORDS)
    plain = await run(REDUCE_FAST, ErrorPolicy.skip(), state_backend=CountingHeap())
    assert isinstance(plain.operator.ctx.keyed_backend, CountingRecords)
    assert plain.operator.ctx.keyed_backend.calls == 0  # nothing to clean: the table loop, no call per record
