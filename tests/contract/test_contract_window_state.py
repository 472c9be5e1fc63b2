"""The window operator on keyed state, over every backend in ``STATE_BACKENDS``, against
the pure window logic on its in-memory store (``WindowHarness``).

For each window kind (tumbling with lateness and late data, sliding aggregate, sessions
with a ProcessWindowFunction and its per-key state, count windows, an early-firing
trigger, and the built-in field aggregations on each, whose tumbling fast path folds the
batch's values without a call per record) the same input, out of order and with late
elements, goes through a real
:class:`~streamflow.runtime.operators.window.WindowOperator` (its fast path where it has
one, and forced onto the general path) and through the harness: the results, their
timestamps and what went to the late-data output must be the same. Halfway, the
operator's snapshot is restored into two new subtasks that split the key groups
(rescaling), which finish the input: the union of what they emit must still be the
harness's. Finally no window state and no timer may be left: every window was cleaned
up.

On RocksDB the timers live in the database: through an incremental checkpoint (a real
shared folder) they travel in its files alone, restored into RocksDB or into the heap.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from native_parts import upload_native
from state_backends import STATE_BACKENDS, BackendFactory, rocksdb
from streamflow.api.errors_policy import FAIL, ErrorPolicy
from streamflow.api.side_outputs import OutputTag
from streamflow.checkpoint.serde import PickledPart, decode
from streamflow.checkpoint.shared_files import SharedFileStore
from streamflow.checkpoint.snapshot import OperatorSnapshot, SnapshotType
from streamflow.core.clock import ManualClock
from streamflow.core.elements import Batch, Watermark
from streamflow.errors import UserFunctionError
from streamflow.graph.spec import OperatorKind, OperatorSpec
from streamflow.partitioning.keygroups import KeyGroupAssigner, key_group_range
from streamflow.runtime.operators import make_operator
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.operators.window import WindowOperator
from streamflow.state import HashMapStateBackend
from streamflow.state.descriptors import ValueStateDescriptor
from streamflow.testing.windows import WindowHarness
from streamflow.windowing import (
    AggregateFunction,
    ContinuousEventTimeTrigger,
    EventTimeSessionWindows,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
    WindowConfig,
    WindowEmission,
    Count,
    MaxBy,
    Mean,
    Min,
    Sum,
    count_window,
)

MAX_PARALLELISM = 16
LATE = OutputTag("late")
KEYS = ["a", "b", "c", "d", "e"]
# (key, value, timestamp) in arrival order: out of order, some far behind; a watermark of
# the newest timestamp less 15 s after every fourth element
ELEMENTS = [
    (KEYS[i % 5], i, float((i * 37) % 200 + (i // 20) * 60)) for i in range(80)
]


def add(a: int, b: int) -> int:
    return a + b


class SumAndCount(AggregateFunction[int, tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class Sessions(ProcessWindowFunction):
    """(window, sorted elements, how often this key's windows fired)."""

    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        fired = context.global_state(ValueStateDescriptor("fired", default=0))
        fired.update(fired.value() + 1)
        out.collect((key, context.window.start, context.window.end, sorted(elements), fired.value()))


def as_pair(value: int) -> tuple[int, float]:
    """The record the built-in aggregations read: an int field and a float field."""
    return (value, value % 7 * 0.5)


def as_is(value: int) -> int:
    return value


@dataclass(frozen=True)
class Case:
    name: str
    config: Callable[[], WindowConfig]
    fast: bool  # whether the operator takes its fast path for it
    record: Callable[[int], Any] = as_is  # the record each element's value stands for


COUNTS = count_window(4, 2)
CASES = [
    Case("tumbling-reduce-lateness", lambda: WindowConfig(
        assigner=TumblingEventTimeWindows.of(60.0), reduce_fn=add, allowed_lateness=30.0, late_data_tag=LATE), True),
    Case("sliding-aggregate", lambda: WindowConfig(
        assigner=SlidingEventTimeWindows.of(60.0, 20.0), aggregate_fn=SumAndCount()), True),
    Case("session-process", lambda: WindowConfig(
        assigner=EventTimeSessionWindows.with_gap(25.0), process_fn=Sessions(), late_data_tag=LATE), False),
    Case("session-aggregate", lambda: WindowConfig(
        assigner=EventTimeSessionWindows.with_gap(25.0), aggregate_fn=SumAndCount(), allowed_lateness=20.0), True),
    Case("count-sliding", lambda: WindowConfig(
        assigner=COUNTS.assigner, trigger=COUNTS.trigger, evictor=COUNTS.evictor, reduce_fn=add), False),
    Case("continuous-trigger", lambda: WindowConfig(
        assigner=TumblingEventTimeWindows.of(60.0), trigger=ContinuousEventTimeTrigger.of(15.0), reduce_fn=add), False),
    Case("tumbling-sum-lateness", lambda: WindowConfig(
        assigner=TumblingEventTimeWindows.of(60.0), aggregate_fn=Sum(0), allowed_lateness=30.0, late_data_tag=LATE),
        True, as_pair),
    Case("tumbling-float-sum", lambda: WindowConfig(
        assigner=TumblingEventTimeWindows.of(60.0), aggregate_fn=Sum(1), late_data_tag=LATE), True, as_pair),
    Case("tumbling-max-by", lambda: WindowConfig(
        assigner=TumblingEventTimeWindows.of(60.0), aggregate_fn=MaxBy(1), allowed_lateness=30.0), True, as_pair),
    Case("tumbling-count", lambda: WindowConfig(assigner=TumblingEventTimeWindows.of(60.0), aggregate_fn=Count()),
         True, as_pair),
    Case("sliding-mean", lambda: WindowConfig(
        assigner=SlidingEventTimeWindows.of(60.0, 20.0), aggregate_fn=Mean(1)), True, as_pair),
    Case("session-min", lambda: WindowConfig(
        assigner=EventTimeSessionWindows.with_gap(25.0), aggregate_fn=Min(1), allowed_lateness=20.0), True, as_pair),
    Case("count-sum", lambda: WindowConfig(
        assigner=COUNTS.assigner, trigger=COUNTS.trigger, evictor=COUNTS.evictor, aggregate_fn=Sum(0)), False, as_pair),
]


def key_of(element: int) -> str:
    return KEYS[element % 5]  # (batches come keyed; this is what a chained hash edge would call)


class Subtask:
    """One WindowOperator subtask: feeds it batches and watermarks, keeps what it emits."""

    def __init__(
        self, config: WindowConfig, backend: BackendFactory, index: int, parallelism: int, general: bool,
        error_policy: ErrorPolicy = FAIL, record: Callable[[int], Any] = as_is,
    ) -> None:
        spec = OperatorSpec(node_id=1, kind=OperatorKind.WINDOW, name="window", function=config, key_selector=key_of,
                            error_policy=error_policy)
        self.owned = key_group_range(MAX_PARALLELISM, parallelism, index)
        keyed = backend().create_keyed_backend(
            operator_uid="window", subtask_index=index, max_parallelism=MAX_PARALLELISM, key_group_range=self.owned,
            clock=ManualClock(),
        )
        ctx = OperatorContext(
            job_name="contract", spec=spec, subtask_index=index, parallelism=parallelism,
            max_parallelism=MAX_PARALLELISM, clock=ManualClock(), keyed_backend=keyed, checkpointing=True,
            checkpoint_interval=1.0,
        )
        operator = make_operator(spec, ctx)
        assert isinstance(operator, WindowOperator)
        self.operator = operator
        self.general = general
        self.record = record
        self.out: list[tuple[Any, float | None]] = []
        self.late: list[tuple[Any, float | None]] = []

        async def emit(batch: Batch) -> None:
            stamps = batch.timestamps or [None] * len(batch.records)
            self.out.extend(zip(batch.records, stamps))

        async def emit_late(batch: Batch) -> None:
            stamps = batch.timestamps or [None] * len(batch.records)
            self.late.extend(zip(batch.records, stamps))

        async def ignore(element: Any) -> None:
            return None

        operator.emit = emit
        operator.emit_watermark = ignore
        operator.emit_watermark_status = ignore
        operator.side_outputs = {LATE.name: emit_late}

    async def open(self, restored: list[Any] | None) -> None:
        await self.operator.open(restored)
        if self.general:
            self.operator.fast = None

    async def feed(self, elements: list[tuple[str, int, float]]) -> None:
        groups = KeyGroupAssigner(MAX_PARALLELISM)
        mine = [e for e in elements if groups(e[0]) in self.owned]
        if mine:
            keys = [key for key, _, _ in mine]
            await self.operator.process(
                Batch([self.record(value) for _, value, _ in mine], None, None, keys, [groups(k) for k in keys],
                      [ts for _, _, ts in mine])
            )

    async def watermark(self, time: float) -> None:
        await self.operator.process_watermark(Watermark(time))


async def canonical_snapshot(operator: WindowOperator, checkpoint_id: int) -> OperatorSnapshot:
    """The operator's savepoint snapshot, its keyed part finished (RocksDB reads the
    canonical form from its native snapshot in the background)."""
    snapshot = await operator.snapshot(checkpoint_id, SnapshotType.SAVEPOINT)
    assert snapshot is not None
    if snapshot.pending is None:
        return snapshot
    try:
        await snapshot.pending.ready()
        finished = await snapshot.pending.finish(None)  # type: ignore[arg-type]  # a canonical snapshot stores no file
    finally:
        await snapshot.pending.discard()
    keyed = finished.keyed
    if isinstance(keyed, PickledPart):  # encoded by a forked child (a large heap state)
        keyed = decode(keyed.data)
    return dataclasses.replace(snapshot, keyed=keyed, pending=None)


async def incremental_snapshot(operator: WindowOperator, checkpoint_id: int, checkpoints: Path) -> OperatorSnapshot:
    """The operator's checkpoint snapshot, as a restore reads it back: on RocksDB a native
    one, its files uploaded into ``checkpoints``' shared folder and located there."""
    snapshot = await operator.snapshot(checkpoint_id, SnapshotType.CHECKPOINT)
    assert snapshot is not None and snapshot.keyed is not None
    if snapshot.pending is None:
        return snapshot
    keyed = await upload_native(snapshot.keyed, snapshot.pending, SharedFileStore(checkpoints), checkpoint_id, "window")
    return dataclasses.replace(snapshot, keyed=keyed, pending=None)


def harness_run(config: WindowConfig, record: Callable[[int], Any] = as_is) -> tuple[Counter[Any], Counter[Any]]:
    harness = WindowHarness(config)
    emitted: list[WindowEmission] = []
    for step, (key, value, ts) in enumerate(ELEMENTS):
        harness.add(key, record(value), ts)
        emitted += harness.take()
        if step % 4 == 3:
            emitted += harness.advance_watermark(max(t for _, _, t in ELEMENTS[: step + 1]) - 15.0)
    emitted += harness.advance_watermark(float("inf"))
    main = Counter((_hashable(e.value), e.timestamp) for e in emitted if e.tag is None)
    late = Counter((_hashable(e.value), e.timestamp) for e in emitted if e.tag is not None)
    return main, late


def _hashable(value: Any) -> Any:
    return repr(value)  # lists and tuples alike, each shown exactly


async def operator_run(
    config: Callable[[], WindowConfig], backend: BackendFactory, general: bool,
    then: tuple[BackendFactory, bool] | None = None, *, checkpoints: Path | None = None,
    record: Callable[[int], Any] = as_is,
) -> tuple[Counter[Any], Counter[Any], list[Subtask]]:
    """Half the input through one subtask, its snapshot restored into two that split its
    key groups, the rest through them; ``then``: the backend and path of the two, when
    not the first's. The snapshot is a savepoint, or with ``checkpoints`` an incremental
    checkpoint there. The elements between two watermarks go in one batch."""
    half = len(ELEMENTS) // 2
    first = Subtask(config(), backend, 0, 1, general, record=record)
    await first.open(None)
    newest = float("-inf")
    for step in range(0, half, 4):
        chunk = ELEMENTS[step : step + 4]
        await first.feed(chunk)
        newest = max(newest, *(element[2] for element in chunk))
        await first.watermark(newest - 15.0)
    if checkpoints is None:
        taken = await canonical_snapshot(first.operator, 1)
    else:
        taken = await incremental_snapshot(first.operator, 1, checkpoints)
        assert taken.timers is None, "the native files hold the timers"
    snapshot = pickle.loads(pickle.dumps(taken.to_stored()))
    restored = [OperatorSnapshot.from_stored(snapshot)]
    backend, general = then or (backend, general)
    second = [Subtask(config(), backend, index, 2, general, record=record) for index in range(2)]
    for subtask in second:
        await subtask.open(restored)
    for step in range(half, len(ELEMENTS), 4):
        chunk = ELEMENTS[step : step + 4]
        for subtask in second:
            await subtask.feed(chunk)
        newest = max(newest, *(element[2] for element in chunk))
        for subtask in second:
            await subtask.watermark(newest - 15.0)
    for subtask in second:
        await subtask.watermark(float("inf"))
    everyone = [first, *second]
    main = Counter((_hashable(v), t) for s in everyone for v, t in s.out)
    late = Counter((_hashable(v), t) for s in everyone for v, t in s.late)
    return main, late, second


RUNS = [pytest.param(case, path, id=f"{case.name}-{path}") for case in CASES for path in ("fast", "general")
        if path == "general" or case.fast]


FAST_CASES = [pytest.param(case, id=case.name) for case in CASES if case.fast]


@pytest.mark.parametrize("then", [
    pytest.param((HashMapStateBackend, True), id="heap-general"), pytest.param((rocksdb, False), id="rocksdb"),
])
@pytest.mark.parametrize("case", FAST_CASES)
async def test_a_fast_path_savepoint_restores_into_the_general_path_and_into_rocksdb(
    case: Case, then: tuple[BackendFactory, bool]
) -> None:
    """The windows the fast path keeps open without timers are in its savepoint as the
    general path's timers: the general path restored from it fires every one of them."""
    want_main, want_late = harness_run(case.config(), case.record)
    got_main, got_late, last = await operator_run(
        case.config, HashMapStateBackend, general=False, then=then, record=case.record
    )
    assert all(s.operator.fast is None for s in last)
    assert got_main == want_main
    assert got_late == want_late


@pytest.mark.parametrize("case", FAST_CASES)
async def test_a_general_path_savepoint_restores_into_the_fast_path(case: Case) -> None:
    want_main, want_late = harness_run(case.config(), case.record)
    got_main, got_late, last = await operator_run(
        case.config, HashMapStateBackend, general=True, then=(HashMapStateBackend, False), record=case.record
    )
    assert all(s.operator.fast is not None for s in last)
    assert got_main == want_main
    assert got_late == want_late


@pytest.mark.parametrize("backend", STATE_BACKENDS)
@pytest.mark.parametrize("case,path", RUNS)
async def test_the_window_operator_on_keyed_state_gives_what_the_pure_logic_gives_across_a_rescale(
    case: Case, path: str, backend: BackendFactory
) -> None:
    want_main, want_late = harness_run(case.config(), case.record)
    assert want_main and sum(want_main.values()) > 10
    got_main, got_late, last = await operator_run(
        case.config, backend, general=path == "general", record=case.record
    )
    # the fast path works on the heap backend's live table; on RocksDB the operator
    # declines it and runs the general path, with the same results
    fast = path == "fast" and backend is HashMapStateBackend
    assert all((s.operator.fast is not None) == fast for s in last)
    assert got_main == want_main
    assert got_late == want_late
    for subtask in last:  # after the final watermark: every window of every key cleaned up
        snapshot = await canonical_snapshot(subtask.operator, 2)
        assert snapshot.timers is not None
        if not case.name.startswith("count-"):  # global windows never end: their state stays, as in Flink
            assert snapshot.timers.event == [] and snapshot.timers.processing == []
            states = (snapshot.keyed or {}).get("states", {})
            assert not states["window-contents"]["key_groups"]
            left = [entry for group in states["window-state"]["key_groups"].values()
                    for entries in group.values() for entry in entries]
            # only a ProcessWindowFunction's per-key state outlives the windows, as in Flink
            assert all(namespace is None and name.startswith("global:") for namespace, name in left), left


class ResultRaises(SumAndCount):
    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        raise ValueError("no result")


@pytest.mark.parametrize("general", [False, True], ids=["fast", "general"])
async def test_a_window_function_that_raises_while_its_window_fires_fails_naming_the_key_and_window(
    general: bool,
) -> None:
    subtask = Subtask(WindowConfig(assigner=TumblingEventTimeWindows.of(60.0), aggregate_fn=ResultRaises()),
                      HashMapStateBackend, 0, 1, general)
    await subtask.open(None)
    assert (subtask.operator.fast is None) == general
    await subtask.feed([("b", 1, 10.0), ("a", 0, 70.0)])
    with pytest.raises(UserFunctionError, match=(
        r"window operator 'window#1' \(subtask 0\) failed firing window TimeWindow\(start=0.0, end=60.0\) of key 'b' "
        r"at 59.999999: ValueError: no result"
    )):
        await subtask.watermark(100.0)


@pytest.mark.parametrize("general", [False, True], ids=["into-fast", "into-general"])
async def test_a_session_grown_on_the_fast_path_since_the_last_watermark_is_saved_with_its_timers(
    general: bool,
) -> None:
    """The fast path moves a grown session's timers lazily; a snapshot taken before any
    watermark moved them still holds them at the session's new end."""
    def config() -> WindowConfig:
        return WindowConfig(assigner=EventTimeSessionWindows.with_gap(10.0), aggregate_fn=SumAndCount())

    first = Subtask(config(), HashMapStateBackend, 0, 1, general=False)
    await first.open(None)
    assert first.operator.fast is not None
    for element in [("a", 1, 0.0), ("a", 2, 5.0), ("a", 3, 12.0)]:  # [0, 10) grows to [0, 15), then [0, 22)
        await first.feed([element])
    restored = [OperatorSnapshot.from_stored(pickle.loads(pickle.dumps(
        (await canonical_snapshot(first.operator, 1)).to_stored()
    )))]
    second = Subtask(config(), HashMapStateBackend, 0, 1, general)
    await second.open(restored)
    await second.watermark(15.0)  # past the first element's session end: nothing fires
    assert second.out == []
    await second.watermark(100.0)
    assert second.out == [((6, 3), 21.999999)]
    assert (await canonical_snapshot(second.operator, 2)).timers.event == []  # type: ignore[union-attr]


class RefusesNegative(SumAndCount):
    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        if value < 0:
            raise ValueError("negative")
        return super().add(value, accumulator)


@pytest.mark.parametrize("general", [False, True], ids=["fast", "general"])
async def test_a_refused_late_firing_record_leaves_its_other_sliding_window_to_fire(general: bool) -> None:
    """A record late for one sliding window (a late firing, through the logic) and on
    time for another, whose aggregate raises: neither window changes, and the on-time
    one still fires at its end."""
    config = WindowConfig(assigner=SlidingEventTimeWindows.of(60.0, 30.0), aggregate_fn=RefusesNegative(),
                          allowed_lateness=60.0)
    subtask = Subtask(config, HashMapStateBackend, 0, 1, general, error_policy=ErrorPolicy.skip())
    await subtask.open(None)
    await subtask.feed([("a", 1, 50.0)])  # windows [0, 60) and [30, 90)
    await subtask.watermark(70.0)
    assert subtask.out == [((1, 1), 59.999999)]
    await subtask.feed([("a", -5, 55.0)])  # late for [0, 60) (within the lateness), on time for [30, 90)
    await subtask.watermark(200.0)
    assert subtask.out == [((1, 1), 59.999999), ((1, 1), 89.999999)]


@pytest.mark.parametrize("into", STATE_BACKENDS)
@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
async def test_window_timers_held_in_rocksdb_go_through_an_incremental_checkpoint(
    case: Case, into: BackendFactory, tmp_path: Path
) -> None:
    want_main, want_late = harness_run(case.config(), case.record)
    got_main, got_late, last = await operator_run(
        case.config, rocksdb, True, (into, True), checkpoints=tmp_path / "chk", record=case.record
    )
    assert got_main == want_main
    assert got_late == want_late
    if not case.name.startswith("count-"):  # (global windows never end)
        for subtask in last:
            assert len(subtask.operator.event_timers) == 0 and len(subtask.operator.processing_timers) == 0
