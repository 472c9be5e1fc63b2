"""map_async / flat_map_async in whole jobs, in one process: order, capacity, per-key
calls, error policies, cancellation, restore of the calls in flight after a failure, and
a savepoint with calls in flight restored at another parallelism.

The exactly-once proof with real processes killed at the named points is in
tests/crash/test_crash_async.py; here an ExactlyOnceFileSink shows what a restore
committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from savepoint_jobs import EndlessSource, wait_for
from streamflow import (
    AsyncFunction,
    AsyncRetry,
    ErrorPolicy,
    JobFailedError,
    RestartStrategy,
    StreamEnvironment,
    UserFunctionError,
)
from streamflow.connectors import CollectionSource, CollectSink, ExactlyOnceFileSink, read_committed_lines


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"async-io::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


def async_metrics(result_metrics: dict[str, Any], uid: str) -> list[dict[str, Any]]:
    return [m["async"] for name, m in sorted(result_metrics["operators"].items()) if name.startswith(f"{uid}[")]


class Measured(AsyncFunction):
    """Sleeps a few ms per record (longer for some, so calls complete out of order) and
    measures, per subtask, the calls in flight at once and whether two calls of one key
    overlapped."""

    peak: ClassVar[dict[int, int]] = {}
    overlaps: ClassVar[list[Any]] = []

    def open(self, ctx: Any) -> None:
        self.subtask = ctx.subtask_index
        self.in_flight = 0
        self.running_keys: set[Any] = set()

    async def __call__(self, record: tuple[str, int]) -> tuple[str, int, int]:
        key, n = record
        if key in self.running_keys:
            Measured.overlaps.append(record)
        self.running_keys.add(key)
        self.in_flight += 1
        Measured.peak[self.subtask] = max(Measured.peak.get(self.subtask, 0), self.in_flight)
        try:
            await asyncio.sleep(0.004 if n % 3 == 0 else 0.001)
        finally:
            self.in_flight -= 1
            self.running_keys.discard(key)
        return key, n, self.subtask


RECORDS = [(f"k{i % 7}", i) for i in range(600)]


@pytest.mark.parametrize("ordered", [True, False, "per_key"])
async def test_every_record_once_in_the_promised_order_never_over_capacity(
    ordered: bool | str, out: str, tmp_path: Path
) -> None:
    Measured.peak, Measured.overlaps = {}, []
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.05, directory=tmp_path)
    source = env.from_source(CollectionSource(RECORDS, batch_size=10)).uid("src").set_parallelism(1)
    stream = source.key_by(lambda r: r[0]) if ordered == "per_key" else source.rebalance()
    stream.map_async(Measured(), capacity=8, ordered=ordered).uid("enrich").sink_to(CollectSink(out))
    result = await env.execute("async-order")
    got = CollectSink.results(out)
    assert Counter((k, n) for k, n, _ in got) == Counter(RECORDS)
    assert max(Measured.peak.values()) <= 8 and set(Measured.peak) == {0, 1}
    by_subtask: dict[int, list[int]] = {}
    by_key: dict[str, list[int]] = {}
    for key, n, subtask in got:
        by_subtask.setdefault(subtask, []).append(n)
        by_key.setdefault(key, []).append(n)
    if ordered is True:  # each subtask's input (batches dealt round robin) comes out in input order
        assert all(ns == sorted(ns) for ns in by_subtask.values())
    if ordered == "per_key":
        assert Measured.overlaps == []
        assert all(ns == sorted(ns) for ns in by_key.values())
    if ordered is False:  # the slow calls (n % 3 == 0) were overtaken somewhere
        assert any(ns != sorted(ns) for ns in by_subtask.values())
    calls = async_metrics(result.metrics, "enrich")
    assert sum(c["calls"] for c in calls) == len(RECORDS)
    assert all(c["in_flight"] == 0 and c["latency_p50"] is not None for c in calls)


async def test_flat_map_async_emits_zero_or_many_per_record(out: str) -> None:
    async def explode(x: int) -> list[int]:
        await asyncio.sleep(0)
        return [x] * (x % 3)

    env = StreamEnvironment()
    env.from_collection(list(range(30))).flat_map_async(explode, ordered=True).sink_to(CollectSink(out))
    await env.execute("flat")
    assert CollectSink.results(out) == [x for x in range(30) for _ in range(x % 3)]


async def test_a_call_that_times_out_fails_the_job_naming_operator_record_and_position(out: str) -> None:
    async def stuck_on_seven(x: int) -> int:
        if x == 7:
            await asyncio.sleep(60)
        return x

    env = StreamEnvironment()
    env.set_restart_strategy(RestartStrategy.none())
    (env.from_source(CollectionSource(list(range(20)), batch_size=5), name="numbers").uid("numbers")
        .map_async(stuck_on_seven, timeout=0.05, retry=AsyncRetry.fixed_delay(2, 0.01)).uid("lookup")
        .sink_to(CollectSink(out)))
    with pytest.raises(JobFailedError) as info:
        await env.execute("timeout")
    cause = info.value.__cause__
    assert isinstance(cause, UserFunctionError)
    assert str(cause).startswith(
        "async operator 'lookup' (subtask 0) failed on record 7 at numbers[0] collection[0:20] @ 7 after 2 attempt(s): "
        "TimeoutError: no result within 0.05 s."
    )


async def test_skipped_timeouts_are_counted_and_the_rest_goes_through(out: str) -> None:
    async def stuck_on_threes(x: int) -> int:
        if x % 3 == 0:
            await asyncio.sleep(60)
        return x

    env = StreamEnvironment()
    (env.from_collection(list(range(12)))
        .map_async(stuck_on_threes, timeout=0.02).uid("lookup").with_error_policy(ErrorPolicy.skip())
        .sink_to(CollectSink(out)))
    result = await env.execute("skip")
    assert sorted(CollectSink.results(out)) == [x for x in range(12) if x % 3]
    lookup = result.metrics["operators"]["lookup[0]"]
    assert lookup["records_skipped"] == 4 and lookup["async"]["timeouts"] == 4 and lookup["async"]["failures"] == 4


class Boom(Exception):
    pass


async def test_a_failure_elsewhere_cancels_the_calls_in_flight_quietly(
    out: str, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled: list[int] = []

    async def slow(x: int) -> int:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    async def fail_later(x: int) -> int:
        await asyncio.sleep(0.05)  # the calls of the other branch are in flight by now
        raise Boom("elsewhere")

    env = StreamEnvironment()
    env.set_restart_strategy(RestartStrategy.none())
    numbers = env.from_collection(list(range(5)))
    numbers.map_async(slow, capacity=10).uid("slow").sink_to(CollectSink(out))
    numbers.map(fail_later).sink_to(CollectSink(out + "-other"))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(JobFailedError, match="Boom"):
            await env.execute("cancel")
        await asyncio.sleep(0.05)
    assert sorted(cancelled) == [0, 1, 2, 3, 4]
    noisy = [r for r in caplog.records if r.name == "asyncio" or "CancelledError" in r.getMessage()]
    assert noisy == [], [r.getMessage() for r in noisy]


class HoldOne(AsyncFunction):
    """Holds record HELD in flight for as long as the first attempt lives: every
    checkpoint of that attempt taken after it arrived has it among the inputs in flight."""

    HELD = 40
    calls: ClassVar[Counter[int]] = Counter()

    async def __call__(self, x: int) -> int:
        HoldOne.calls[x] += 1
        if x == HoldOne.HELD and not FailOnce.failed:
            await asyncio.sleep(60)
        await asyncio.sleep(0.004)  # the run spans many checkpoints
        return x


class FailOnce:
    """Fails the first attempt once two checkpoints completed after a record behind HELD
    went by (with one checkpoint at a time, the second was triggered after HELD arrived)."""

    failed: ClassVar[bool] = False

    def __init__(self) -> None:
        self.past_held = False
        self.completed = 0

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.past_held:
            self.completed += 1

    def __call__(self, x: int) -> int:
        self.past_held = self.past_held or x > HoldOne.HELD
        if self.completed >= 2 and not FailOnce.failed:
            FailOnce.failed = True
            raise Boom(f"after record {x}")
        return x


async def test_after_a_failure_the_calls_in_flight_at_the_checkpoint_are_made_again_exactly_once(
    tmp_path: Path,
) -> None:
    HoldOne.calls, FailOnce.failed = Counter(), False
    env = StreamEnvironment()
    env.enable_checkpointing(0.05, directory=tmp_path / "chk")
    env.set_restart_strategy(RestartStrategy.fixed_delay(2, 0.01))
    (env.from_source(CollectionSource(list(range(300)), batch_size=5)).uid("src")
        .map_async(HoldOne(), capacity=4).uid("enrich")
        .map(FailOnce()).uid("fail-once")
        .map(str).sink_to(ExactlyOnceFileSink(tmp_path / "out")).uid("out"))
    result = await env.execute("restore-in-flight")
    assert result.attempts == 2 and FailOnce.failed
    assert Counter(read_committed_lines(tmp_path / "out")) == Counter(str(x) for x in range(300))
    assert HoldOne.calls[HoldOne.HELD] == 2  # in flight at the restored checkpoint: called again
    assert async_metrics(result.metrics, "enrich")[0]["restored_inputs"] >= 1


class Blocked(AsyncFunction):
    """The first job's calls of records >= FROM never end; a restored job's all do."""

    FROM = 200
    block: ClassVar[bool] = True
    calls: ClassVar[Counter[int]] = Counter()

    async def __call__(self, x: int) -> int:
        Blocked.calls[x] += 1
        if Blocked.block and x >= Blocked.FROM:
            await asyncio.sleep(60)
        return x


def blocked_job(tmp_path: Path, parallelism: int, keyed: bool, ordered: bool | str) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism, max_parallelism=32)
    env.enable_checkpointing(30.0, directory=tmp_path / f"chk-{parallelism}")
    source = env.from_source(EndlessSource(list(range(240))), name="numbers").uid("numbers").set_parallelism(1)
    stream = source.key_by(lambda x: x % 5) if keyed else source.rebalance()
    (stream.map_async(Blocked(), capacity=50, ordered=ordered).uid("enrich")
        .map(str).sink_to(ExactlyOnceFileSink(tmp_path / "out")).uid("out"))
    return env


@pytest.mark.parametrize(
    ("keyed", "ordered", "before", "after"),
    [(False, True, 2, 3), (False, False, 2, 1), (True, "per_key", 2, 3), (True, False, 3, 1)],
)
async def test_a_savepoint_with_calls_in_flight_restores_them_at_another_parallelism(
    tmp_path: Path, keyed: bool, ordered: bool | str, before: int, after: int
) -> None:
    Blocked.block, Blocked.calls = True, Counter()
    client = blocked_job(tmp_path, before, keyed, ordered).execute_async("rescale-in-flight")

    def everything_arrived() -> bool:
        operators = client.metrics().get("operators", {})
        return sum(m["records_in"] for n, m in operators.items() if n.startswith("enrich[")) == 240

    await wait_for(everything_arrived, "every record to reach the async operator")
    held = sum(c["held"] for c in async_metrics(client.metrics(), "enrich"))
    assert held == 240 - Blocked.FROM  # running, waiting for their key (per_key) or behind 200 (ordered)
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoints")
    await client.wait()
    first = Counter(read_committed_lines(tmp_path / "out"))
    assert all(int(x) < Blocked.FROM for x in first) and len(first) == 240 - held

    Blocked.block, Blocked.calls = False, Counter()
    restored = blocked_job(tmp_path, after, keyed, ordered).execute_async("rescale-in-flight", from_savepoint=savepoint)

    def held_records_out() -> bool:
        operators = restored.metrics().get("operators", {})
        return sum(m["records_out"] for n, m in operators.items() if n.startswith("enrich[")) == held

    await wait_for(held_records_out, "the restored calls to end")  # the source has nothing new: never ends
    calls = async_metrics(restored.metrics(), "enrich")
    assert len(calls) == after and sum(c["restored_inputs"] for c in calls) == held
    await restored.stop_with_savepoint(tmp_path / "savepoints")  # commits what the restored job wrote
    await restored.wait()
    assert Counter(read_committed_lines(tmp_path / "out")) == Counter(str(x) for x in range(240))
    assert Blocked.calls == Counter(range(Blocked.FROM, 240))  # the held inputs, called (again) once each
