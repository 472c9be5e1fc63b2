"""End-to-end pipelines on CollectionSource -> CollectSink, in one process.

Parametrized over parallelism 1 and 2, and parallelism 2 with chaining disabled (every
operator its own task, every hop a channel): the results must not change. Outputs are
compared as exact multisets. Function objects are copied per subtask (as Flink ships a
copy to each subtask), so what a function observes is recorded in class-level fields.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamflow import (
    CheckpointingMode,
    KeyedProcessFunction,
    ProcessFunction,
    RestartStrategy,
    StreamEnvironment,
)
from streamflow.api.connector import SinkWriterBase
from streamflow.checkpoint.serde import decode
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.core.faults import FaultInjector
from streamflow.runtime.channel import InputGate
from streamflow.state import EmbeddedRocksDBStateBackend, ListStateDescriptor, ValueStateDescriptor

faults = FaultInjector()  # the faults these tests arm; every job built here gets it

CONFIGS = [
    pytest.param((1, True), id="p1"),
    pytest.param((2, True), id="p2"),
    pytest.param((2, False), id="p2-unchained"),
]

@dataclass(frozen=True)
class Setup:
    """One parametrization: environments of this parallelism, chained or not."""

    parallelism: int
    chaining: bool

    def __call__(self) -> StreamEnvironment:
        env = StreamEnvironment(parallelism=self.parallelism).set_fault_injector(faults)
        env.set_restart_strategy(RestartStrategy.none())
        if not self.chaining:
            env.disable_operator_chaining()
        return env


@pytest.fixture(params=CONFIGS)
def make_env(request: pytest.FixtureRequest) -> Setup:
    parallelism, chaining = request.param
    return Setup(parallelism, chaining)


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    """A CollectSink name private to this test."""
    name = f"pipelines::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


@pytest.fixture(autouse=True)
def _no_armed_faults() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


def results(name: str) -> Counter[Any]:
    return Counter(CollectSink.results(name))


# -- stateless transformations ---------------------------------------------------------


async def test_map_filter_flat_map(make_env: Setup, out: str) -> None:
    env = make_env()
    (
        env.from_source(CollectionSource(list(range(100)), batch_size=7)).uid("src")
        .map(lambda x: x * 3)
        .filter(lambda x: x % 2 == 0)
        .flat_map(lambda x: [x, -x] if x else [0])
        .sink_to(CollectSink(out))
    )
    result = await env.execute("map-filter-flat-map")
    evens = [x * 3 for x in range(100) if (x * 3) % 2 == 0]
    expected = Counter([0] + [v for x in evens if x for v in (x, -x)])
    assert results(out) == expected
    assert result.attempts == 1


async def test_async_map_filter_flat_map(make_env: Setup, out: str) -> None:
    async def slow_double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def keep_small(x: int) -> bool:
        await asyncio.sleep(0)
        return x < 100

    async def twice(x: int) -> list[int]:
        await asyncio.sleep(0)
        return [x, x]

    env = make_env()
    (
        env.from_source(CollectionSource(list(range(80)), batch_size=9)).uid("src")
        .map(slow_double).filter(keep_small).flat_map(twice)
        .sink_to(CollectSink(out))
    )
    await env.execute("async-functions")
    assert results(out) == Counter([2 * x for x in range(50)] * 2)


async def test_union_of_two_sources(make_env: Setup, out: str) -> None:
    env = make_env()
    letters = env.from_source(CollectionSource(["a", "b", "c", "d", "e"], batch_size=2)).uid("letters")
    numbers = env.from_source(CollectionSource(list(range(20)), batch_size=3)).uid("numbers").map(str)
    letters.union(numbers).map(lambda s: f"<{s}>").sink_to(CollectSink(out))
    await env.execute("union")
    assert results(out) == Counter([f"<{s}>" for s in ["a", "b", "c", "d", "e", *map(str, range(20))]])


async def test_rebalance_spreads_batches_round_robin(make_env: Setup, out: str) -> None:
    env = make_env()
    env.set_source_batch_size(10)
    (
        env.from_source(CollectionSource(list(range(100)), batch_size=10)).uid("src").set_parallelism(1)
        .rebalance().map(lambda x: x + 1000).uid("m")
        .sink_to(CollectSink(out))
    )
    result = await env.execute("rebalance")
    assert results(out) == Counter(range(1000, 1100))
    p = make_env.parallelism
    per_subtask = [result.metrics["operators"][f"m[{i}]"]["records_in"] for i in range(p)]
    assert sum(per_subtask) == 100
    assert all(n == 100 // p for n in per_subtask)  # 10 batches of 10, dealt round robin


async def test_broadcast_sends_every_record_to_every_subtask(make_env: Setup, out: str) -> None:
    env = make_env()
    (
        env.from_source(CollectionSource(list(range(30)), batch_size=4)).uid("src").set_parallelism(1)
        .broadcast().map(lambda x: x).uid("m")
        .sink_to(CollectSink(out))
    )
    await env.execute("broadcast")
    p = make_env.parallelism
    assert results(out) == Counter({x: p for x in range(30)})


# -- keyed ---------------------------------------------------------------------------


def running(values: list[tuple[str, int]]) -> Counter[tuple[str, int]]:
    """Running sum per key of (key, value) pairs, in input order."""
    totals: dict[str, int] = {}
    emitted = []
    for key, value in values:
        totals[key] = totals.get(key, 0) + value
        emitted.append((key, totals[key]))
    return Counter(emitted)


async def test_key_by_reduce_running_per_key(make_env: Setup, out: str) -> None:
    data = [(f"k{i % 5}", i) for i in range(200)]
    env = make_env()
    (
        # one source subtask: every key's records arrive in input order
        env.from_source(CollectionSource(data, batch_size=11)).uid("src").set_parallelism(1)
        .key_by(lambda r: r[0])
        .reduce(lambda acc, r: (acc[0], acc[1] + r[1])).uid("reduce")
        .sink_to(CollectSink(out))
    )
    await env.execute("reduce")
    assert results(out) == running(data)


async def test_key_by_sum_on_dict_field(make_env: Setup, out: str) -> None:
    data = [{"user": f"u{i % 3}", "amount": i, "tag": i % 2} for i in range(60)]
    env = make_env()
    (
        env.from_source(CollectionSource(data, batch_size=8)).uid("src").set_parallelism(1)
        .key_by(lambda r: r["user"]).sum("amount").uid("sum")
        .map(lambda r: (r["user"], r["amount"], r["tag"]))
        .sink_to(CollectSink(out))
    )
    await env.execute("sum-dict")
    totals: dict[str, int] = {}
    expected = []
    for r in data:
        totals[r["user"]] = totals.get(r["user"], 0) + r["amount"]
        expected.append((r["user"], totals[r["user"]], r["tag"]))  # the latest record, field summed
    assert results(out) == Counter(expected)


async def test_key_by_sum_on_tuple_position(make_env: Setup, out: str) -> None:
    data = [(f"k{i % 4}", i * 10) for i in range(40)]
    env = make_env()
    (
        env.from_source(CollectionSource(data, batch_size=6)).uid("src").set_parallelism(1)
        .key_by(lambda r: r[0]).sum(1).uid("sum")
        .sink_to(CollectSink(out))
    )
    await env.execute("sum-tuple")
    assert results(out) == running(data)


async def test_keyed_reduce_final_values_with_parallel_sources(make_env: Setup, out: str) -> None:
    data = [(f"k{i % 13}", 1) for i in range(1000)]
    env = make_env()
    (
        env.from_source(CollectionSource(data, batch_size=17)).uid("src")
        .key_by(lambda r: r[0]).sum(1).uid("sum")
        .sink_to(CollectSink(out))
    )
    await env.execute("sum-parallel")
    got = CollectSink.results(out)
    assert len(got) == 1000
    # whatever the interleaving, each key emits 1..n exactly once
    expected = Counter((f"k{k}", n) for k in range(13) for n in range(1, 1000 // 13 + (1 if k < 1000 % 13 else 0) + 1))
    assert Counter(got) == expected


class Explode(ProcessFunction):
    """Emits each word of a line with the operator's subtask; drops empty lines."""

    def open(self, ctx: Any) -> None:
        self.prefix = ctx.operator_uid

    def process_element(self, value: str, ctx: Any, out: Any) -> None:
        for word in value.split():
            out.collect(f"{self.prefix}:{word}")


async def test_process_function(make_env: Setup, out: str) -> None:
    lines = ["a b c", "", "d", "e f", "  ", "g h i j"] * 5
    env = make_env()
    (
        env.from_source(CollectionSource(lines, batch_size=4)).uid("src")
        .process(Explode()).uid("explode")
        .sink_to(CollectSink(out))
    )
    await env.execute("process")
    assert results(out) == Counter(f"explode:{w}" for line in lines for w in line.split())


class CountWithTimer(KeyedProcessFunction):
    """Keyed ValueState count per key; a processing-time timer 20 ms after a key's first record."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect(("count", ctx.get_current_key(), n))
        if n == 1:
            ctx.timer_service.register_processing_time_timer(ctx.timer_service.current_processing_time() + 0.02)

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        assert self.count.value() >= 1  # the timer runs with its key's state in scope
        out.collect(("timer", ctx.get_current_key()))


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
async def test_keyed_process_function_state_and_processing_time_timer(
    make_env: Setup, out: str, backend: str, tmp_path: Path
) -> None:
    """Each key's first record comes early; the input keeps flowing for well over the 20 ms
    timer delay (an async map paces it), so every timer fires before the end of input
    (timers still pending at the end of input are not guaranteed to fire). On RocksDB
    the state and the timers are in its database."""

    async def paced(x: str) -> str:
        await asyncio.sleep(0.004)
        return x

    keys = ["a", "b", "c"]
    data = [keys[i % 3] for i in range(60)]
    env = make_env()
    if backend == "rocksdb":
        env.set_state_backend(EmbeddedRocksDBStateBackend(tmp_path, memory_budget=16 << 20))
    env.set_source_batch_size(2)
    (
        env.from_source(CollectionSource(data, batch_size=2)).uid("src")
        .map(paced)
        .key_by(lambda k: k)
        .process(CountWithTimer()).uid("count")
        .sink_to(CollectSink(out))
    )
    await env.execute("keyed-process")
    expected = Counter([("count", k, n) for k in keys for n in range(1, 21)] + [("timer", k) for k in keys])
    assert results(out) == expected


# -- checkpoints seen by user functions ------------------------------------------------


class Buffering(ProcessFunction):
    """Emits records in groups of 3; the partial group is operator ListState (Flink's
    BufferingSink pattern): saved at each barrier, restored after a failure."""

    restored: list[list[Any]] = []

    def __init__(self) -> None:
        self.buffer: list[Any] = []

    def initialize_state(self, ctx: Any) -> None:
        self.state = ctx.operator_state_store.get_list_state(ListStateDescriptor("buffer"))
        if ctx.is_restored:
            self.buffer = list(self.state.get())
            Buffering.restored.append(list(self.buffer))

    def snapshot_state(self, ctx: Any) -> None:
        self.state.update(self.buffer)

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.buffer.append(value)
        if len(self.buffer) == 3:
            out.collect(tuple(self.buffer))
            self.buffer = []


async def test_checkpointed_function_buffer_is_restored_after_a_failure(
    make_env: Setup, out: str, tmp_path: Path
) -> None:
    async def paced(x: int) -> int:
        await asyncio.sleep(0.002)
        return x

    Buffering.restored = []
    items = list(range(96))  # 48 per subtask at p=2: whole groups of 3 on every subtask
    env = make_env()
    env.enable_checkpointing(0.01, directory=tmp_path)
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=2, delay=0))
    env.set_source_batch_size(4)
    env.set_channel_capacity(1)  # barriers wait behind at most one batch per hop
    (
        env.from_source(CollectionSource(items, batch_size=4)).uid("src")
        .map(paced)
        .process(Buffering()).uid("buffer")
        .sink_to(CollectSink(out))
    )
    faults.arm("records", 16, action="raise")  # once 16 of 32 groups reached the sink
    result = await env.execute("buffering")

    assert result.attempts == 2
    assert result.restored_from is not None
    assert len(Buffering.restored) == make_env.parallelism
    groups = set(CollectSink.results(out))  # the sink is at-least-once: replays repeat groups
    flat = [x for group in groups for x in group]
    # the distinct groups partition the input: no record lost with a buffer, none regrouped
    assert sorted(flat) == items


class Listener:
    """A map function that records the checkpoint notifications of its subtask."""

    completed: list[tuple[int, int]] = []
    aborted: list[tuple[int, int]] = []

    def open(self, ctx: Any) -> None:
        self.subtask = ctx.subtask_index

    def __call__(self, value: Any) -> Any:
        return value

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        Listener.completed.append((self.subtask, checkpoint_id))

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        Listener.aborted.append((self.subtask, checkpoint_id))


async def test_checkpoint_listener_hears_every_completed_checkpoint(
    make_env: Setup, out: str, tmp_path: Path
) -> None:
    async def paced(x: int) -> int:
        await asyncio.sleep(0.002)
        return x

    Listener.completed = []
    Listener.aborted = []
    env = make_env()
    env.enable_checkpointing(0.01, directory=tmp_path)
    env.set_source_batch_size(2)
    (
        env.from_source(CollectionSource(list(range(40)), batch_size=2)).uid("src")
        .map(paced).map(Listener()).uid("listener")
        .sink_to(CollectSink(out))
    )
    result = await env.execute("listener")
    assert results(out) == Counter(range(40))
    history = result.metrics["checkpoints"]["history"]
    completed_ids = [h["id"] for h in history if h["status"] == "completed"]
    assert result.checkpoints_completed == len(completed_ids) >= 2  # periodic ones and the final one
    assert history[-1]["final"] and history[-1]["status"] == "completed"
    p = make_env.parallelism
    for subtask in range(p):
        heard = [n for s, n in Listener.completed if s == subtask]
        assert heard == completed_ids  # every completion, in order, including the final one
    assert Listener.aborted == []


async def test_source_yields_so_checkpoints_run_during_a_fully_chained_job(out: str, tmp_path: Path) -> None:
    """A collection source chained to its sink never blocks; it must still yield to the
    loop between batches, or no checkpoint (nor anything else) runs until it is done."""
    ticks_at: dict[int, int] = {}
    ticks = 0

    def probe(x: int) -> int:
        if x in (0, 19_999):
            ticks_at[x] = ticks
        return x

    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    env.enable_checkpointing(0.001, directory=tmp_path)
    env.set_source_batch_size(100)
    env.from_source(CollectionSource(list(range(20_000)), batch_size=100)).uid("src").map(probe).sink_to(
        CollectSink(out)
    )
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        await env.execute("chained")
    finally:
        done = True
        await ticking
    assert ticks_at[19_999] - ticks_at[0] >= 100  # one yield per batch of 100: 199 batches later
    assert len(CollectSink.results(out)) == 20_000


# -- barrier alignment end to end ----------------------------------------------------------


class SeenAtSnapshot(KeyedProcessFunction):
    """Records, at each barrier, every record its subtask has processed so far."""

    snapshots: dict[tuple[int, int], frozenset[Any]] = {}

    def open(self, ctx: Any) -> None:
        self.subtask = ctx.subtask_index
        self.seen: set[Any] = set()

    def initialize_state(self, ctx: Any) -> None:
        return None

    def snapshot_state(self, ctx: Any) -> None:
        SeenAtSnapshot.snapshots[(self.subtask, ctx.checkpoint_id)] = frozenset(self.seen)

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.seen.add(value)
        out.collect(value)


async def _source_positions(directory: Path, checkpoint_id: int, sizes: dict[str, int]) -> dict[str, int]:
    """The next position of each (parallelism 1) collection source stored in a checkpoint."""
    storage = CheckpointStorage(directory, retained=1000)
    metadata = await storage.read_metadata(checkpoint_id)
    positions = {}
    for uid, size in sizes.items():
        handle = metadata.operators[uid].subtasks[0]
        splits = decode(await storage.read_state(checkpoint_id, handle))["source"]
        positions[uid] = splits[0]["next"] if splits else size  # no split left: all read
    return positions


async def _run_two_sources_into_keyed(
    mode: CheckpointingMode, keyed_parallelism: int, directory: Path, out: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], int]:
    holds = 0
    original_hold = InputGate.hold

    def counting_hold(self: InputGate, index: int) -> None:
        nonlocal holds
        holds += 1
        original_hold(self, index)

    monkeypatch.setattr(InputGate, "hold", counting_hold)

    async def slow(record: Any) -> Any:
        await asyncio.sleep(0.001)
        return record

    SeenAtSnapshot.snapshots = {}
    env = StreamEnvironment(parallelism=keyed_parallelism)
    env.set_restart_strategy(RestartStrategy.none())
    env.enable_checkpointing(0.005, mode=mode, directory=directory, retained=1000)
    env.set_channel_capacity(2)
    fast = env.from_source(CollectionSource([("a", i) for i in range(400)], batch_size=5), name="a").uid("a")
    fast = fast.set_parallelism(1)
    slow_src = env.from_source(CollectionSource([("b", i) for i in range(120)], batch_size=2), name="b").uid("b")
    slow_src = slow_src.set_parallelism(1)
    paced = slow_src.map(slow).uid("slow").set_parallelism(1)
    (
        fast.union(paced)
        .key_by(lambda r: r[1] % 7)
        .process(SeenAtSnapshot()).uid("seen")
        .sink_to(CollectSink(out))
    )
    result = await env.execute("alignment")
    assert results(out) == Counter([("a", i) for i in range(400)] + [("b", i) for i in range(120)])
    completed = sorted(h["id"] for h in result.metrics["checkpoints"]["history"] if h["status"] == "completed")
    return completed, holds


@pytest.mark.parametrize("keyed_parallelism", [1, 2])
async def test_exactly_once_snapshot_holds_exactly_the_records_before_the_barriers(
    keyed_parallelism: int, out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At every completed checkpoint n, the keyed operator's snapshot reflects exactly the
    records each source emitted before its barrier n (its stored position), no more."""
    completed, holds = await _run_two_sources_into_keyed(
        CheckpointingMode.EXACTLY_ONCE, keyed_parallelism, tmp_path, out, monkeypatch
    )
    mid_stream = 0
    for n in completed:
        positions = await _source_positions(tmp_path, n, {"a": 400, "b": 120})
        expected = {("a", i) for i in range(positions["a"])} | {("b", i) for i in range(positions["b"])}
        seen = frozenset().union(*(SeenAtSnapshot.snapshots[(s, n)] for s in range(keyed_parallelism)))
        assert seen == expected, f"checkpoint {n}: snapshot differs from the source positions {positions}"
        if 0 < positions["b"] < 120:
            mid_stream += 1
    assert mid_stream >= 2
    assert holds > 0  # the fast input was held while aligning


async def test_at_least_once_never_holds_and_snapshots_cover_the_positions(
    out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    completed, holds = await _run_two_sources_into_keyed(CheckpointingMode.AT_LEAST_ONCE, 2, tmp_path, out, monkeypatch)
    assert holds == 0
    assert len(completed) >= 2
    for n in completed:
        positions = await _source_positions(tmp_path, n, {"a": 400, "b": 120})
        expected = {("a", i) for i in range(positions["a"])} | {("b", i) for i in range(positions["b"])}
        seen = frozenset().union(*(SeenAtSnapshot.snapshots[(s, n)] for s in range(2)))
        assert seen >= expected  # records may overtake a barrier, never fall behind it


# -- metrics -------------------------------------------------------------------------------


class SlowSink:
    """A sink whose writes take ``delay`` seconds per batch: it backpressures its input."""

    def __init__(self, name: str, delay: float) -> None:
        self.name = name
        self.delay = delay

    def create_writer(self, ctx: Any) -> Any:
        return _SlowWriter(self.name, self.delay)


class _SlowWriter(SinkWriterBase):
    def __init__(self, name: str, delay: float) -> None:
        self.inner = CollectSink(name).create_writer(None)  # type: ignore[arg-type]
        self.delay = delay

    async def write(self, records: list[Any]) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.write(records)


async def test_metrics_while_running_show_backpressure_behind_a_slow_sink(out: str) -> None:
    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    env.set_channel_capacity(2)
    env.set_source_batch_size(5)
    (
        env.from_source(CollectionSource(list(range(300)), batch_size=5)).uid("src")
        .map(lambda x: x).uid("m")
        .sink_to(SlowSink(out, delay=0.002)).uid("slow-sink").start_new_chain()
    )
    client = env.execute_async("backpressure")
    waiter = asyncio.create_task(client.wait())
    samples = []
    while not waiter.done():
        samples.append(client.metrics())
        await asyncio.sleep(0.003)
    result = await waiter

    assert len(samples) >= 5
    running = [s for s in samples if s["status"] == "running" and s["tasks"]]
    assert running
    for sample in running:
        for name, task in sample["tasks"].items():
            for key in ("busy_ratio", "idle_ratio", "backpressured_ratio"):
                assert 0.0 <= task[key] <= 1.0, f"{name}: {task}"
            assert task["busy_ratio"] + task["idle_ratio"] + task["backpressured_ratio"] == pytest.approx(1.0)
        for channel in sample["channels"].values():
            assert 0.0 <= channel["fill"] <= 1.0
            assert channel["capacity"] == 2
    assert set(running[-1]["tasks"]) == {"src[0]", "slow-sink[0]"}
    assert max(s["tasks"]["src[0]"]["backpressured_ratio"] for s in running) > 0.0
    assert max(c["fill"] for s in running for c in s["channels"].values()) == 1.0
    assert result.metrics["tasks"]["src[0]"]["backpressured_ratio"] > 0.0
    assert result.metrics["tasks"]["slow-sink[0]"]["backpressured_ratio"] == 0.0
    assert sorted(CollectSink.results(out)) == list(range(300))


async def test_the_metrics_interval_logs_a_line_while_the_job_runs(out: str, caplog: pytest.LogCaptureFixture) -> None:
    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    env.set_metrics_interval(0.05)
    env.set_source_batch_size(5)
    (
        env.from_source(CollectionSource(list(range(100)), batch_size=5)).uid("src")
        .sink_to(SlowSink(out, delay=0.01)).uid("slow-sink")
    )
    with caplog.at_level(logging.INFO, logger="streamflow.job"):
        result = await env.execute("reported")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job reported attempt 1:")]
    assert lines and "records read" in lines[-1] and "checkpoints 0 ok / 0 failed" in lines[-1]
    assert result.metrics["job"] == "reported" and result.metrics["status"] == "finished"


async def test_a_task_waiting_for_input_is_idle_not_busy(out: str) -> None:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.3)
        return x

    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    (
        env.from_source(CollectionSource([1, 2])).uid("src")
        .map(slow)
        .sink_to(CollectSink(out)).uid("sink").start_new_chain()
    )
    client = env.execute_async("idle")
    await asyncio.sleep(0.2)
    sink = client.metrics()["tasks"]["sink[0]"]  # it has waited for its first record all along
    assert sink["idle_ratio"] > 0.8
    assert sink["busy_ratio"] < 0.2
    await client.wait()
    assert sorted(CollectSink.results(out)) == [1, 2]


class _EventTimeAlarm(KeyedProcessFunction):
    """Registers an event-time timer far in the future for every key."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.timer_service.register_event_time_timer(1e12)

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        out.collect((ctx.get_current_key(), timestamp))


@pytest.mark.parametrize("parallelism", [1, 2])
async def test_end_of_bounded_input_fires_pending_event_time_timers(parallelism: int) -> None:
    """Bounded input ends with the final watermark (+inf), as in Flink: every pending
    event-time timer fires before the job ends."""
    name = f"final-watermark-{parallelism}"
    CollectSink.clear(name)
    env = StreamEnvironment(parallelism=parallelism)
    env.from_collection(["a", "b", "a", "c"]).key_by(lambda v: v).process(_EventTimeAlarm()).sink_to(
        CollectSink(name)
    )
    await env.execute(name)
    assert sorted(CollectSink.results(name)) == [("a", 1e12), ("b", 1e12), ("c", 1e12)]
