"""Event time through real jobs: timestamps carried by every kind of operator and the
hash exchange, timestamps set by process functions and timers, per-split watermarks in a
source, idleness across a shuffle and a union (and a source subtask without splits),
bad timestamps under each error policy, and the watermark metrics.

Jobs run in this process on collection and scripted sources (event_time_kit.py); where
a result depends on when watermarks arrive, the source sends one record per batch with
a watermark after each (``every_record``), so the expectation is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from event_time_kit import Count, ScriptedSource, collected, environment, every_record, sink_names, wait_for

from streamflow.api.connector import SourceBatch, SourceReaderBase
from streamflow import ErrorPolicy, JobFailedError, KeyedProcessFunction, ProcessFunction
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.errors import TimestampError
from streamflow.eventtime import WatermarkStrategy
from streamflow.metrics.definitions import Scope
from streamflow.state import EmbeddedRocksDBStateBackend
from streamflow.windowing import TumblingEventTimeWindows

CONFIGS = [
    pytest.param((1, True), id="p1"),
    pytest.param((2, True), id="p2"),
    pytest.param((2, False), id="p2-unchained"),
]


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    with sink_names(f"event-time::{request.node.name}", "-side", "-dead") as name:
        yield name


def by_value(value: int) -> float:
    return float(value)


class Stamps(ProcessFunction):
    """Emits (record, its timestamp)."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timestamp()))


# -- timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
async def test_timestamps_travel_with_the_records_through_every_kind_of_operator(
    config: tuple[int, bool], out: str
) -> None:
    parallelism, chaining = config
    env = environment(parallelism, chaining=chaining)
    (
        env.from_source(CollectionSource(list(range(60)), batch_size=7)).uid("src")
        .assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(by_value))
        .map(lambda v: v * 10)
        .filter(lambda v: v % 20 == 0)
        .flat_map(lambda v: [v, v + 1])
        .key_by(lambda v: v % 3)
        .reduce(lambda a, b: b)  # a running reduce emits the record reduced in, with its timestamp
        .rebalance()
        .process(Stamps())
        .sink_to(CollectSink(out))
    )
    await env.execute("timestamps")
    expected = Counter((v, float(v // 10)) for n in range(0, 60, 2) for v in (n * 10, n * 10 + 1))
    assert Counter(collected(out)) == expected


class Restamp(ProcessFunction):
    """Emits the record with its timestamp moved 100 s later, and a copy without a new one."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(("moved", value), timestamp=ctx.timestamp() + 100.0)
        out.collect(("kept", value))


class TimerAtStamp(KeyedProcessFunction):
    """An event-time timer at each record's timestamp; the timer emits what it sees."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, "record", ctx.timestamp()))
        ctx.timer_service.register_event_time_timer(ctx.timestamp())

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        out.collect((ctx.get_current_key(), "timer", ctx.timestamp()))


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
async def test_a_process_function_sets_output_timestamps_and_a_timer_stamps_with_its_time(
    out: str, backend: str, tmp_path: Path
) -> None:
    env = environment(2)
    if backend == "rocksdb":  # its timers in the database
        env.set_state_backend(EmbeddedRocksDBStateBackend(tmp_path, memory_budget=16 << 20))
    (
        env.from_collection([1, 2, 3])
        .assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(by_value))
        .process(Restamp())
        .key_by(lambda tagged: tagged)
        .process(TimerAtStamp()).uid("timers")
        .process(Stamps())
        .sink_to(CollectSink(out))
    )
    await env.execute("restamp")
    want = Counter()
    for v in (1, 2, 3):
        for tag, ts in (("moved", v + 100.0), ("kept", float(v))):
            want[(((tag, v), "record", ts), ts)] += 1
            want[(((tag, v), "timer", ts), ts)] += 1  # a timer's output carries the timer's time
    assert Counter(collected(out)) == want


@pytest.mark.parametrize("bad", ["not a number", float("nan"), None])
async def test_out_collect_refuses_a_bad_timestamp_through_the_error_policy(out: str, bad: Any) -> None:
    class BadStamp(ProcessFunction):
        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            if value == 2:
                out.collect(value, timestamp=bad if bad is not None else float("inf"))
            else:
                out.collect(value)

    env = environment(1)
    env.from_collection([1, 2, 3]).process(BadStamp()).uid("stamp").with_error_policy(ErrorPolicy.skip()).sink_to(
        CollectSink(out)
    )
    result = await env.execute("bad-collect")
    assert collected(out) == [1, 3]
    assert result.metrics["operators"]["stamp[0]"]["records_skipped"] == 1


# -- source watermarks per split -------------------------------------------------------


class OnTime(ProcessFunction):
    """Emits (record, the watermark when it arrives)."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timestamp(), ctx.current_watermark()))


async def test_each_split_of_a_source_has_its_own_watermark_so_a_slow_split_makes_no_record_late(out: str) -> None:
    fast = [(("fast", i), float(i * 100)) for i in range(40)]
    slow = [(("slow", i), float(i)) for i in range(40)]

    class TwoSplits(ScriptedSource):
        def create_reader(self, ctx: Any) -> Any:
            return InterleavedReader()

    class InterleavedReader(SourceReaderBase):
        """One subtask, two splits, batches of one record taking turns."""

        def __init__(self) -> None:
            self.queue = [item for pair in zip(fast, slow) for item in pair]
            self.next = 0

        def active_splits(self) -> list[str]:
            return [name for name in ("fast", "slow") if any(r[0] == name for r, _ in self.queue[self.next:])]

        async def poll(self, max_records: int, max_wait: float) -> Any:
            from streamflow.api.connector import SourceBatch

            if self.next >= len(self.queue):
                return None
            (record, ts), self.next = self.queue[self.next], self.next + 1
            return SourceBatch([record], [self.next - 1], record[0], timestamps=[ts])

        def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
            return []

    env = environment(1)
    env.from_source(TwoSplits([]), watermark_strategy=every_record()).uid("src").process(OnTime()).sink_to(
        CollectSink(out)
    )
    await env.execute("per-split")
    got = collected(out)
    assert len(got) == 80
    assert [r for r, ts, watermark in got if ts <= watermark] == []  # no record late
    # event time moved all the same, held back by the slow split: its newest record, 39 s,
    # less a microsecond, once the fast one is past it
    assert max(watermark for _, _, watermark in got) == pytest.approx(38.0 - 1e-6)


# -- idleness --------------------------------------------------------------------------


def minute_counts(env: Any, source: Any, out: str, strategy: WatermarkStrategy) -> None:
    """source -> per-minute count per key -> out, as (key, minute start, count)."""
    (
        env.from_source(source, watermark_strategy=strategy).uid("src")
        .key_by(lambda record: record[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .aggregate(Count(), window_function=LabelMinute()).uid("count")
        .sink_to(CollectSink(out))
    )


class LabelMinute:
    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        for count in elements:
            out.collect((key, context.window.start, count))

    def clear(self, context: Any) -> None:
        return None


SCRIPT = [(("k", i), float(i)) for i in range(130)]  # minutes 0 and 1 close once 130 s is seen


def source_watermark(client: Any) -> float:
    watermark = client.metrics()["tasks"].get("src[0]", {}).get("output_watermark")
    return float("-inf") if watermark is None else float(watermark)


@pytest.mark.parametrize("idleness", [None, 0.3])
async def test_an_idle_source_subtask_stops_holding_back_event_time_across_a_shuffle(
    out: str, idleness: float | None
) -> None:
    # subtask 1 holds a split but never sends a record
    source = ScriptedSource([SCRIPT, []], bounded=False)
    strategy = WatermarkStrategy.for_monotonous_timestamps()
    if idleness is not None:
        strategy = strategy.with_idleness(idleness)
    env = environment(2)
    minute_counts(env, source, out, strategy)
    client = env.execute_async("idle-shuffle")
    try:
        if idleness is None:
            await wait_for(lambda: source_watermark(client) > 120.0, what="subtask 0 past both minutes")
            await asyncio.sleep(0.8)
            assert collected(out) == []  # subtask 1's split holds every window back
        else:
            await wait_for(lambda: len(collected(out)) == 2, what="both minutes")
            assert sorted(collected(out)) == [("k", 0.0, 60), ("k", 60.0, 60)]
            metrics = client.metrics()["tasks"]
            assert metrics["src[1]"]["output_watermark"] == float("-inf")
    finally:
        await client.cancel()


async def test_a_source_subtask_without_splits_is_idle_from_the_start(out: str) -> None:
    source = ScriptedSource([SCRIPT, None], bounded=False)  # subtask 1 owns nothing (a Kafka subtask without partitions)
    env = environment(2)
    minute_counts(env, source, out, WatermarkStrategy.for_monotonous_timestamps())
    client = env.execute_async("no-splits")
    try:
        await wait_for(lambda: len(collected(out)) == 2, what="both minutes")
        assert sorted(collected(out)) == [("k", 0.0, 60), ("k", 60.0, 60)]
    finally:
        await client.cancel()


class TwoSplitSource:
    """One subtask reading splits "ahead" and "behind" in turns, a record a batch:
    "ahead" at 500 s, 600 s, ..., "behind" at 0 s, 100 s, ..., 500 s behind in event time."""

    stateful = False

    def create_reader(self, ctx: Any) -> TwoSplitReader:
        return TwoSplitReader()


class TwoSplitReader(SourceReaderBase):
    SCRIPTS = {"ahead": [float(100 * i) for i in range(5, 11)], "behind": [float(100 * i) for i in range(6)]}

    def __init__(self) -> None:
        self.read = 0

    def active_splits(self) -> list[str]:
        return [split for split, times in self.SCRIPTS.items() if self.read // 2 < len(times)]

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        turn, self.read = self.read, self.read + 1
        split = ("ahead", "behind")[turn % 2]
        times = self.SCRIPTS[split]
        if turn // 2 >= len(times):
            return None
        return SourceBatch([(split, turn // 2)], [turn // 2], split, timestamps=[times[turn // 2]])

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return []


def slow(record: Any) -> Any:
    time.sleep(0.15)  # longer than the idle timeout between two records of a split
    return record


async def test_a_split_waiting_behind_a_slow_batch_of_another_split_does_not_turn_idle(out: str) -> None:
    """Each split's next record comes 0.3 s later on the wall clock, past the 0.2 s idle
    timeout, only because the chain is busy with the other split's record: that time is
    not idleness, or "ahead" alone would move event time and the 100 s windows of
    "behind" would be over before its records came."""
    env = environment(1)
    (
        env.from_source(TwoSplitSource(), watermark_strategy=WatermarkStrategy.for_monotonous_timestamps()
                        .with_idleness(0.2).with_emit_interval(0.05)).uid("src")
        .map(slow).uid("slow")
        .key_by(lambda record: "all")
        .window(TumblingEventTimeWindows.of(100.0))
        .aggregate(Count()).uid("count")
        .sink_to(CollectSink(out))
    )
    client = env.execute_async("busy-not-idle")
    await client.wait()
    assert sorted(collected(out)) == [1] * 10 + [2]  # eleven windows; 500 s holds one record of each split
    assert client.metrics()["operators"]["count[0]"]["records_late_dropped"] == 0


async def test_an_idle_input_of_a_union_stops_holding_back_event_time(out: str) -> None:
    env = environment(1)
    busy = env.from_source(ScriptedSource([SCRIPT], bounded=False), watermark_strategy=WatermarkStrategy.for_monotonous_timestamps()).uid("busy")
    quiet = env.from_source(
        ScriptedSource([[(("q", 0), 0.0)]], bounded=False),
        watermark_strategy=WatermarkStrategy.for_monotonous_timestamps().with_idleness(0.3),
    ).uid("quiet")
    (
        busy.union(quiet)
        .key_by(lambda record: record[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .aggregate(Count(), window_function=LabelMinute()).uid("count")
        .sink_to(CollectSink(out))
    )
    client = env.execute_async("idle-union")
    try:
        await wait_for(lambda: len(collected(out)) == 3, what="three windows")
        assert sorted(collected(out)) == [("k", 0.0, 60), ("k", 60.0, 60), ("q", 0.0, 1)]
    finally:
        await client.cancel()


# -- bad timestamps --------------------------------------------------------------------


def bad_timestamp(record: Any) -> Any:
    """1.0 for "ok"; raises for "raises"; a str or NaN for "text" and "nan"."""
    if record == "raises":
        raise ZeroDivisionError("no time for this one")
    return {"text": "12:00", "nan": float("nan")}.get(record, 1.0)


@pytest.mark.parametrize("record,what", [("raises", "ZeroDivisionError"), ("text", "'12:00' of type str"), ("nan", "nan")])
async def test_a_bad_timestamp_fails_the_job_naming_operator_record_and_position(
    out: str, record: str, what: str
) -> None:
    env = environment(1)
    (
        env.from_source(CollectionSource(["ok", record, "ok"])).uid("src")
        .assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(bad_timestamp))
        .uid("stamps")
        .sink_to(CollectSink(out))
    )
    with pytest.raises(JobFailedError) as failed:
        await env.execute("bad-timestamp")
    cause = failed.value.__cause__
    assert isinstance(cause, TimestampError)
    assert cause.operator == "stamps" and cause.position == "src[0] collection[0:3] @ 1"
    assert f"operator 'stamps' (subtask 0) could not assign an event timestamp to record {record!r}" in str(cause)
    assert what in str(cause)


async def test_bad_timestamps_are_skipped_or_dead_lettered_by_the_operators_policy(out: str) -> None:
    env = environment(1)
    records = ["ok", "raises", "text", "nan", "ok"]
    stamped = (
        env.from_source(CollectionSource(records)).uid("src")
        .assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(bad_timestamp))
        .uid("stamps")
        .with_error_policy(ErrorPolicy.dead_letter(CollectSink(f"{out}-dead")))
    )
    stamped.process(Stamps()).sink_to(CollectSink(out))
    result = await env.execute("dead-timestamps")
    assert collected(out) == [("ok", 1.0), ("ok", 1.0)]
    dead = collected(f"{out}-dead")
    assert [(d["record"], d["position"]) for d in dead] == [
        ("raises", "src[0] collection[0:5] @ 1"), ("text", "src[0] collection[0:5] @ 2"), ("nan", "src[0] collection[0:5] @ 3"),
    ]
    assert result.metrics["operators"]["stamps[0]"]["records_dead_lettered"] == 3


async def test_a_bad_timestamp_in_a_source_goes_to_the_sources_error_policy(out: str) -> None:
    env = environment(1)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(bad_timestamp)
    (
        env.from_source(CollectionSource(["ok", "nan", "ok"]), watermark_strategy=strategy).uid("src")
        .with_error_policy(ErrorPolicy.skip())
        .process(Stamps())
        .sink_to(CollectSink(out))
    )
    result = await env.execute("source-timestamps")
    assert collected(out) == [("ok", 1.0), ("ok", 1.0)]
    assert result.metrics["operators"]["src[0]"]["records_skipped"] == 1

    env = environment(1)
    env.from_source(CollectionSource(["ok", "nan"]), watermark_strategy=strategy).uid("src").sink_to(CollectSink(out))
    with pytest.raises(JobFailedError) as failed:
        await env.execute("source-timestamps-fail")
    cause = failed.value.__cause__
    assert isinstance(cause, TimestampError) and cause.operator == "src"
    assert cause.position == "src[0] collection[0:2] @ 1"


async def test_a_record_without_a_timestamp_of_its_own_needs_an_assigner(out: str) -> None:
    env = environment(1)
    env.from_collection([1]).uid("src").assign_timestamps_and_watermarks(
        WatermarkStrategy.for_monotonous_timestamps()
    ).uid("stamps").sink_to(CollectSink(out))
    with pytest.raises(JobFailedError) as failed:
        await env.execute("no-timestamp")
    assert "has no timestamp of its own: give the WatermarkStrategy a timestamp assigner" in str(
        failed.value.__cause__
    )


# -- metrics ---------------------------------------------------------------------------


async def test_tasks_report_input_and_output_watermarks(out: str) -> None:
    env = environment(1, chaining=False)
    (
        env.from_source(ScriptedSource([SCRIPT], bounded=False), watermark_strategy=every_record(10.0)).uid("src")
        .map(lambda record: record).uid("same")
        .sink_to(CollectSink(out))
    )
    client = env.execute_async("watermark-metrics")
    try:
        await wait_for(lambda: len(collected(out)) == len(SCRIPT), what="every record")
        want = 129.0 - 10.0 - 1e-6
        await wait_for(lambda: client.metrics()["tasks"]["same[0]"]["output_watermark"] == pytest.approx(want))
        tasks = client.metrics()["tasks"]
        assert tasks["src[0]"]["input_watermark"] == pytest.approx(want)  # its own, from the split
        assert tasks["same[0]"]["input_watermark"] == pytest.approx(want)
        assert tasks["same[0]"]["input_idle"] is False
        # under Flink's names in the registry (Prometheus, the dashboard)
        same = client.metrics_registry.sample().values(Scope.TASK)[("watermark-metrics", "same", "0")]
        assert same["currentInputWatermark"] == pytest.approx(want)
        assert same["currentOutputWatermark"] == pytest.approx(want)
    finally:
        await client.cancel()
