"""Windows through real jobs, against expectations computed by hand in the tests: each
assigner (tumbling, sliding, session with merges that join sessions, global and count
windows, processing time), out-of-order input, lateness (dropped and counted, late
firings that update a result, the late-data side output), triggers, an evictor,
per-window and per-key state, window_all, the error policy, build-time configuration
errors, the fast path against the general one, and cleanup of every window's state.

Jobs whose result depends on when watermarks arrive read a scripted source at
parallelism 1, one record per batch with a watermark after each (``every_record``), so
each window subtask reads one channel in order and the expectation is exact.
"""

from __future__ import annotations

import asyncio
import operator
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from event_time_kit import Count, ScriptedSource, collected, environment, every_record, sink_names, wait_for

from streamflow import ErrorPolicy, JobFailedError, ProcessFunction, UserFunctionError
from streamflow.api.side_outputs import OutputTag
from streamflow.checkpoint.serde import decode
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.connectors.generator import GeneratorSource
from streamflow.errors import ConfigError
from streamflow.eventtime import WatermarkStrategy
from streamflow.runtime.operators.window_fast import FastWindowPath
from streamflow.runtime.operators.window_session_fast import FastSessionPath
from streamflow.state import EmbeddedRocksDBStateBackend, ValueStateDescriptor
from streamflow.windowing import (
    AggregateFunction,
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeSessionWindows,
    ProcessWindowFunction,
    PurgingTrigger,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
)

CONFIGS = [
    pytest.param((1, True), id="p1"),
    pytest.param((2, True), id="p2"),
    pytest.param((2, False), id="p2-unchained"),
]
LATE = OutputTag("late")


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    with sink_names(f"windows::{request.node.name}", "-late") as name:
        yield name


# Orders: (user, event time, cents). Within each user and overall they are out of order
# by up to 4 s; the watermark allows 5 s, so no order is late.
ORDERS = [
    (("ann", "bob", "cy")[i % 3], float(7 * i + (3 if i % 5 == 0 else 0) - (4 if i % 7 == 0 else 0)), i % 13)
    for i in range(150)
]


def by_time(order: tuple[str, float, int]) -> float:
    return order[1]


ORDER_TIME = WatermarkStrategy.for_bounded_out_of_orderness(5.0).with_timestamp_assigner(by_time)


def orders(env: Any) -> Any:
    return env.from_source(CollectionSource(ORDERS, batch_size=9)).uid("orders").assign_timestamps_and_watermarks(
        ORDER_TIME
    ).uid("order-time")


def add_cents(a: tuple[str, float, int], b: tuple[str, float, int]) -> tuple[str, float, int]:
    return (a[0], max(a[1], b[1]), a[2] + b[2])


class Label(ProcessWindowFunction):
    """(key, window start, window end, result) for each result of a window."""

    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        for result in elements:
            out.collect((key, context.window.start, context.window.end, result))


class CountAndSum(AggregateFunction[tuple[str, float, int], tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: tuple[str, float, int], accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + 1, accumulator[1] + value[2])

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


# -- assigners -------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
async def test_tumbling_windows_sum_each_users_minute_from_out_of_order_input(
    config: tuple[int, bool], out: str
) -> None:
    parallelism, chaining = config
    env = environment(parallelism, chaining=chaining)
    (
        orders(env).key_by(lambda o: o[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .reduce(add_cents, window_function=Label()).uid("minutes")
        .sink_to(CollectSink(out))
    )
    result = await env.execute("tumbling")
    want: dict[tuple[str, float], int] = defaultdict(int)
    for user, ts, cents in ORDERS:
        want[(user, ts // 60 * 60)] += cents
    got = {(user, start): (end, total[2]) for user, start, end, total in collected(out)}
    assert len(collected(out)) == len(want)  # each window fired once
    assert got == {key: (key[1] + 60, cents) for key, cents in want.items()}
    assert sum(o["records_late_dropped"] for o in result.metrics["operators"].values()) == 0


async def shuffled_delay(order: tuple[str, float, int]) -> tuple[str, float, int]:
    """Calls that end out of their input order (a later order often first)."""
    await asyncio.sleep(0.0005 * ((int(order[1]) * 7) % 5))
    return order


@pytest.mark.parametrize("ordered", [False, True])
async def test_map_async_before_a_window_keeps_timestamps_and_makes_no_result_late(ordered: bool, out: str) -> None:
    """In event-time order with no slack, every watermark follows its record at once: a
    result the async operator let cross a watermark would be late and missing."""
    env = environment(2, chaining=True)
    in_order = sorted(ORDERS, key=by_time)
    (
        env.from_source(CollectionSource(in_order, batch_size=1)).uid("orders")
        .assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(by_time))
        .map_async(shuffled_delay, capacity=8, ordered=ordered).uid("enrich")
        .key_by(lambda o: o[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .reduce(add_cents, window_function=Label()).uid("minutes")
        .sink_to(CollectSink(out))
    )
    result = await env.execute("async-then-window")
    want: dict[tuple[str, float], int] = defaultdict(int)
    for user, ts, cents in ORDERS:
        want[(user, ts // 60 * 60)] += cents
    assert {(user, start): total[2] for user, start, _, total in collected(out)} == want
    assert len(collected(out)) == len(want)
    assert sum(o["records_late_dropped"] for o in result.metrics["operators"].values()) == 0


@pytest.mark.parametrize("config", CONFIGS)
async def test_sliding_windows_count_and_sum_each_window_an_order_falls_into(
    config: tuple[int, bool], out: str
) -> None:
    parallelism, chaining = config
    env = environment(parallelism, chaining=chaining)
    (
        orders(env).key_by(lambda o: o[0])
        .window(SlidingEventTimeWindows.of(90.0, 30.0))
        .aggregate(CountAndSum(), window_function=Label()).uid("sliding")
        .sink_to(CollectSink(out))
    )
    await env.execute("sliding")
    want: dict[tuple[str, float], list[int]] = defaultdict(lambda: [0, 0])
    for user, ts, cents in ORDERS:
        last_start = ts // 30 * 30
        for start in (last_start, last_start - 30, last_start - 60):  # the 3 windows of 90 s that hold ts
            want[(user, start)][0] += 1
            want[(user, start)][1] += cents
    got = Counter((user, start, end, tuple(result)) for user, start, end, result in collected(out))
    assert got == Counter((user, start, start + 90, tuple(v)) for (user, start), v in want.items())


class Session(ProcessWindowFunction):
    """(key, start, end, sorted values) of a session."""

    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        out.collect((key, context.window.start, context.window.end, sorted(v for _, v in elements)))


# Sessions with a gap of 10 s, per key: "a" at 0 and 18 are two sessions until 9 comes,
# which touches both ([9, 19) meets [0, 10) and [18, 28)): one session [0, 28). 50 is a
# session of its own; "b" has one element. Disorder stays within the 10 s bound.
SESSION_EVENTS = [("a", 0.0), ("a", 18.0), ("b", 5.0), ("a", 9.0), ("a", 50.0), ("b", 40.0), ("b", 44.0)]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("function", ["process", "aggregate"])
async def test_session_windows_merge_when_an_element_joins_two_sessions_with_their_state(
    config: tuple[int, bool], function: str, out: str
) -> None:
    parallelism, chaining = config
    env = environment(parallelism, chaining=chaining, batch_size=1)
    script = [((key, ts), ts) for key, ts in SESSION_EVENTS]
    windowed = (
        env.from_source(ScriptedSource([script]), watermark_strategy=every_record(10.0)).uid("src").set_parallelism(1)
        .key_by(lambda e: e[0])
        .window(EventTimeSessionWindows.with_gap(10.0))
    )
    if function == "process":
        windowed.process(Session()).uid("sessions").sink_to(CollectSink(out))
    else:
        windowed.aggregate(Count(), window_function=Label()).uid("sessions").sink_to(CollectSink(out))
    await env.execute("sessions")
    sessions = [("a", 0.0, 28.0, [0.0, 9.0, 18.0]), ("a", 50.0, 60.0, [50.0]), ("b", 5.0, 15.0, [5.0]),
                ("b", 40.0, 54.0, [40.0, 44.0])]
    if function == "process":
        assert sorted(collected(out)) == sessions
    else:
        assert sorted(collected(out)) == [(k, start, end, len(values)) for k, start, end, values in sessions]


class SumValues(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        out.collect((key, sum(v for _, v in elements)))


@pytest.mark.parametrize("config", CONFIGS)
async def test_count_windows_tumble_and_slide_per_key(config: tuple[int, bool], out: str) -> None:
    parallelism, chaining = config
    values = [("a", n) for n in range(1, 8)] + [("b", n) for n in range(1, 3)]
    env = environment(parallelism, chaining=chaining)
    keyed = env.from_source(CollectionSource(values, batch_size=2)).uid("src").set_parallelism(1).key_by(lambda v: v[0])
    keyed.count_window(3).process(SumValues()).uid("tumbling").sink_to(CollectSink(out))
    keyed.count_window(3, 1).process(SumValues()).uid("sliding").sink_to(CollectSink(f"{out}-late"))
    await env.execute("counts")
    # every 3 elements of a key: a 1+2+3, 4+5+6 (7 and b's 2 never complete one)
    assert sorted(collected(out)) == [("a", 6), ("a", 15)]
    # at every element, the last 3 of its key
    sliding = [("a", sum(range(max(1, n - 2), n + 1))) for n in range(1, 8)] + [("b", 1), ("b", 3)]
    assert sorted(collected(f"{out}-late")) == sorted(sliding)


async def test_processing_time_windows_count_every_record_once(out: str) -> None:
    async def paced(ctx: Any, position: Any) -> Any:
        start = position or 0
        for n in range(start, 40):
            yield ("k", n), n + 1
            await asyncio.sleep(0.01)
        await asyncio.Event().wait()  # open, quiet: the windows close by the clock

    env = environment(1)
    (
        env.from_source(GeneratorSource(paced)).uid("src")
        .key_by(lambda e: e[0])
        .window(TumblingProcessingTimeWindows.of(0.1))
        .aggregate(Count()).uid("count")
        .sink_to(CollectSink(out))
    )
    client = env.execute_async("processing-time")
    try:
        await wait_for(lambda: sum(collected(out)) == 40, what="all 40 records counted")
        assert len(collected(out)) >= 2  # spread over several windows
    finally:
        await client.cancel()


# -- lateness --------------------------------------------------------------------------

# Key "k": 10 (minute 0), 70 (minute 1: minute 0 fires), 20 (minute 0 is over), 95, 25.
LATENESS_SCRIPT = [(("k", ts), ts) for ts in (10.0, 70.0, 20.0, 95.0, 25.0)]


def lateness_job(out: str, *, lateness: float, tag: OutputTag | None, parallelism: int = 1) -> Any:
    env = environment(parallelism, batch_size=1)
    windowed = (
        env.from_source(ScriptedSource([LATENESS_SCRIPT]), watermark_strategy=every_record()).uid("src")
        .set_parallelism(1)
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .allowed_lateness(lateness)
    )
    if tag is not None:
        windowed = windowed.side_output_late_data(tag)
    counted = windowed.aggregate(Count(), window_function=Label()).uid("minutes")
    counted.sink_to(CollectSink(out))
    if tag is not None:
        counted.get_side_output(tag).sink_to(CollectSink(f"{out}-late"))
    return env


@pytest.mark.parametrize("parallelism", [1, 2])
async def test_late_records_are_dropped_and_counted(out: str, parallelism: int) -> None:
    result = await lateness_job(out, lateness=0.0, tag=None, parallelism=parallelism).execute("late-dropped")
    assert sorted(collected(out)) == [("k", 0.0, 60.0, 1), ("k", 60.0, 120.0, 2)]
    dropped = {name: o["records_late_dropped"] for name, o in result.metrics["operators"].items() if name.startswith("minutes")}
    assert sum(dropped.values()) == 2  # 20 and 25


async def test_late_records_go_to_the_side_output(out: str) -> None:
    result = await lateness_job(out, lateness=0.0, tag=LATE).execute("late-side")
    assert sorted(collected(out)) == [("k", 0.0, 60.0, 1), ("k", 60.0, 120.0, 2)]
    assert collected(f"{out}-late") == [("k", 20.0), ("k", 25.0)]
    assert result.metrics["operators"]["minutes[0]"]["records_late_dropped"] == 0


async def test_allowed_lateness_fires_the_window_again_with_the_updated_result(out: str) -> None:
    await lateness_job(out, lateness=30.0, tag=LATE).execute("late-firing")
    # minute 0 fires at 70 (one record), again at 20 (two); at 95 its lateness is over,
    # so 25 is too late even for it
    assert collected(out) == [("k", 0.0, 60.0, 1), ("k", 0.0, 60.0, 2), ("k", 60.0, 120.0, 2)]
    assert collected(f"{out}-late") == [("k", 25.0)]


async def test_a_late_record_in_the_side_output_keeps_its_timestamp_and_source_position(out: str) -> None:
    env = environment(1, batch_size=1)
    counted = (
        env.from_source(ScriptedSource([LATENESS_SCRIPT]), watermark_strategy=every_record()).uid("src")
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .side_output_late_data(LATE)
        .aggregate(Count()).uid("minutes")
    )
    counted.sink_to(CollectSink(out))

    class Refuse(ProcessFunction):
        """Refuses every late record, to see its position in the dead letter."""

        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            raise ValueError(f"late, stamped {ctx.timestamp()}")

    counted.get_side_output(LATE).process(Refuse()).uid("refuse").with_error_policy(
        ErrorPolicy.dead_letter(CollectSink(f"{out}-late"))
    ).sink_to(CollectSink(out))
    await env.execute("late-position")
    assert [(d["record"], d["position"], d["error"]) for d in collected(f"{out}-late")] == [
        (("k", 20.0), "src[0] script-0 @ 2", "ValueError: late, stamped 20.0"),
        (("k", 25.0), "src[0] script-0 @ 4", "ValueError: late, stamped 25.0"),
    ]


# -- triggers, evictors, window state ----------------------------------------------------

TRIGGER_SCRIPT = [(("k", ts), ts) for ts in (5.0, 25.0, 45.0, 65.0)]


async def test_a_continuous_event_time_trigger_fires_early_and_at_the_end(out: str) -> None:
    env = environment(1, batch_size=1)
    (
        env.from_source(ScriptedSource([TRIGGER_SCRIPT]), watermark_strategy=every_record()).uid("src")
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .trigger(ContinuousEventTimeTrigger.of(20.0))
        .aggregate(Count(), window_function=Label()).uid("early")
        .sink_to(CollectSink(out))
    )
    await env.execute("continuous")
    # minute 0: at 20 (5 and 25 are in: 25 arrives before the watermark that passes 20),
    # at 40 (45 in), at its end; minute 1 (65 alone): at 80, 100 and its end
    assert collected(out) == [
        ("k", 0.0, 60.0, 2), ("k", 0.0, 60.0, 3), ("k", 0.0, 60.0, 3),
        ("k", 60.0, 120.0, 1), ("k", 60.0, 120.0, 1), ("k", 60.0, 120.0, 1),
    ]


async def test_a_purging_count_trigger_fires_every_two_elements_with_only_those(out: str) -> None:
    env = environment(1, batch_size=1)
    (
        env.from_source(ScriptedSource([TRIGGER_SCRIPT]), watermark_strategy=every_record()).uid("src")
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .trigger(PurgingTrigger.of(CountTrigger.of(2)))
        .process(Session()).uid("pairs")
        .sink_to(CollectSink(out))
    )
    await env.execute("purging")
    assert collected(out) == [("k", 0.0, 60.0, [5.0, 25.0])]  # 45 and 65 never make a pair in their window


class FiringCounts(ProcessWindowFunction):
    """Per firing: (window start, firings of this window so far, firings of the key so far)."""

    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        in_window = context.window_state(ValueStateDescriptor("fired", default=0))
        in_key = context.global_state(ValueStateDescriptor("fired", default=0))
        in_window.update(in_window.value() + 1)
        in_key.update(in_key.value() + 1)
        out.collect((context.window.start, in_window.value(), in_key.value()))
        if in_window.value() > 1:
            context.output(LATE, (key, context.window.start, "updated"))


async def test_window_and_key_state_of_a_process_window_function_and_its_side_output(out: str) -> None:
    env = environment(1, batch_size=1)
    fired = (
        env.from_source(ScriptedSource([LATENESS_SCRIPT]), watermark_strategy=every_record()).uid("src")
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .allowed_lateness(30.0)
        .process(FiringCounts()).uid("firings")
    )
    fired.sink_to(CollectSink(out))
    fired.get_side_output(LATE).sink_to(CollectSink(f"{out}-late"))
    await env.execute("window-state")
    assert collected(out) == [(0.0, 1, 1), (0.0, 2, 2), (60.0, 1, 3)]
    assert collected(f"{out}-late") == [("k", 0.0, "updated")]


async def test_window_all_sums_every_key_per_minute_in_one_subtask(out: str) -> None:
    env = environment(2)
    orders(env).window_all(TumblingEventTimeWindows.of(60.0)).reduce(add_cents, window_function=Label()).uid(
        "all"
    ).sink_to(CollectSink(out))
    await env.execute("window-all")
    want: dict[float, int] = defaultdict(int)
    for _, ts, cents in ORDERS:
        want[ts // 60 * 60] += cents
    assert sorted((start, total[2]) for key, start, _, total in collected(out)) == sorted(want.items())
    assert {key for key, *_ in collected(out)} == {None}


# -- errors ----------------------------------------------------------------------------


def sum_or_raise(a: tuple[str, float, int], b: tuple[str, float, int]) -> tuple[str, float, int]:
    if b[2] == 7:
        raise ValueError("seven")
    return add_cents(a, b)


async def test_a_reduce_that_raises_sends_the_record_to_the_error_policy(out: str) -> None:
    env = environment(1)
    (
        orders(env).key_by(lambda o: o[0])
        .window(TumblingEventTimeWindows.of(60.0))
        .reduce(sum_or_raise).uid("minutes").with_error_policy(ErrorPolicy.skip())
        .sink_to(CollectSink(out))
    )
    result = await env.execute("reduce-raises")
    want: dict[tuple[str, float], list[int]] = defaultdict(list)
    for user, ts, cents in ORDERS:
        want[(user, ts // 60 * 60)].append(cents)
    # a 7 that is the first of its window is never reduced, so never refused
    kept = {key: cents[0] + sum(c for c in cents[1:] if c != 7) for key, cents in want.items()}
    refused = sum(1 for cents in want.values() for c in cents[1:] if c == 7)
    assert sorted(total for _, _, total in collected(out)) == sorted(kept.values())
    assert result.metrics["operators"]["minutes[0]"]["records_skipped"] == refused > 0


async def test_a_record_without_timestamp_fails_an_event_time_window_naming_it(out: str) -> None:
    env = environment(1)
    env.from_source(CollectionSource([("a", 1)])).uid("src").key_by(lambda e: e[0]).window(
        TumblingEventTimeWindows.of(60.0)
    ).aggregate(Count()).uid("minutes").sink_to(CollectSink(out))
    with pytest.raises(JobFailedError) as failed:
        await env.execute("no-timestamps")
    cause = failed.value.__cause__
    assert isinstance(cause, UserFunctionError)
    assert cause.operator == "minutes" and cause.position == "src[0] collection[0:1] @ 0"
    assert "places elements by event time, but this record has no timestamp" in str(cause)


class Seen:
    """A trigger that cannot merge, for the configuration check."""

    def on_element(self, *args: Any) -> Any:
        raise AssertionError("never runs")

    def on_event_time(self, *args: Any) -> Any:
        raise AssertionError("never runs")

    def on_processing_time(self, *args: Any) -> Any:
        raise AssertionError("never runs")

    def can_merge(self) -> bool:
        return False

    def on_merge(self, *args: Any) -> None:
        raise AssertionError("never runs")

    def clear(self, *args: Any) -> None:
        raise AssertionError("never runs")


class NoMerge:
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator

    def get_result(self, accumulator: int) -> int:
        return accumulator


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda k: k.window(TumblingEventTimeWindows.of(60.0)).allowed_lateness(-1.0).reduce(operator.add),
         r"window operator 'window-reduce': allowed_lateness must be finite seconds >= 0, got -1.0; pass seconds >= 0"),
        (lambda k: k.window(EventTimeSessionWindows.with_gap(10.0)).trigger(Seen()).process(Session()),
         r"window operator 'window-process': EventTimeSessionWindows.* merges windows, but trigger .* cannot merge"),
        (lambda k: k.window(EventTimeSessionWindows.with_gap(10.0)).aggregate(NoMerge()),
         r"window operator 'window-aggregate': .* needs merge\(a, b\)"),
        (lambda k: k.window(TumblingProcessingTimeWindows.of(1.0)).allowed_lateness(5.0).reduce(operator.add),
         r"allowed_lateness\(5.0\) has no effect on processing-time windows"),
        (lambda k: k.window(TumblingEventTimeWindows.of(60.0)).trigger(Seen()).evictor("x").reduce(operator.add),
         r"window operator 'window-reduce': evictor 'x' lacks evict_before/evict_after"),
        (lambda k: k.window_all(TumblingEventTimeWindows.of(60.0)).reduce(operator.add).set_parallelism(2),
         r"comes from window_all\(...\), which sees every record in one subtask; its parallelism is 1, not 2"),
        (lambda k: k.window(operator.add), r"window\(\) needs a WindowAssigner"),
        (lambda k: k.count_window(0), r"count_window: size must be an int >= 1, got 0"),
        (lambda k: k.window(TumblingEventTimeWindows.of(0.0)), r"TumblingEventTimeWindows.of\(size\) must be finite seconds > 0"),
    ],
)
def test_bad_window_configuration_is_refused_at_build_time_saying_what_to_change(build: Any, match: str) -> None:
    env = environment(1)
    keyed = env.from_collection([("a", 1)]).key_by(lambda e: e[0])
    with pytest.raises(ConfigError, match=match):
        build(keyed)


# -- the fast path, cleanup --------------------------------------------------------------


def spy_on_fast_path(path: Any, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each window operator that opened took ``path`` (a fast path class)."""
    used: list[bool] = []
    original = path.for_operator.__func__

    def spy(cls: Any, op: Any, logic: Any) -> Any:
        fast = original(cls, op, logic)
        used.append(fast is not None)
        return fast

    monkeypatch.setattr(path, "for_operator", classmethod(spy))
    return used


@pytest.mark.parametrize("lateness", [0.0, 30.0])
async def test_the_fast_path_gives_what_the_general_path_gives(
    out: str, lateness: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = spy_on_fast_path(FastWindowPath, monkeypatch)
    script = LATENESS_SCRIPT + [(("k", ts), ts) for ts in (130.0, 100.0, 200.0, 150.0, 61.0)]
    results = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(FastWindowPath, "for_operator", classmethod(lambda cls, op, logic: None))
        for name in (out, f"{out}-late"):
            CollectSink.clear(name)
        env = environment(1, batch_size=1)
        counted = (
            env.from_source(ScriptedSource([script]), watermark_strategy=every_record()).uid("src")
            .key_by(lambda e: e[0])
            .window(SlidingEventTimeWindows.of(60.0, 20.0))
            .allowed_lateness(lateness)
            .side_output_late_data(LATE)
            .reduce(lambda a, b: (a[0], a[1] + b[1]), window_function=Label()).uid("sliding")
        )
        counted.sink_to(CollectSink(out))
        counted.get_side_output(LATE).sink_to(CollectSink(f"{out}-late"))
        await env.execute("fast-or-not")
        results.append((collected(out), collected(f"{out}-late")))
    assert used == [True]  # the first run took the fast path
    assert results[0] == results[1] and results[0][0] and results[0][1]


# Sessions of gap 10 s under a watermark 20 s behind: elements inside a session, ones that
# grow it at either end, two sessions in flight that a third element joins, sessions of
# their own, and late ones (a late firing within 30 s of lateness, or too late for it; the
# last two are too late whatever the batching).
SESSION_SCRIPT = [
    (("a", ts), ts) if key == "a" else (("b", ts), ts)
    for key, ts in [
        ("a", 0.0), ("b", 2.0), ("a", 4.0), ("a", 25.0), ("a", 13.0), ("b", 8.0), ("a", 26.0), ("a", 3.0),
        ("b", 50.0), ("a", 60.0), ("a", 1.0), ("b", 55.0), ("a", 64.5), ("a", 120.0), ("a", 30.0), ("b", 121.0),
        ("a", 118.0), ("a", 131.0), ("b", 119.0), ("a", 200.0), ("b", 300.0), ("a", 301.0), ("b", 302.0),
        ("a", 303.0), ("a", 5.0), ("b", 6.0),
    ]
]


@pytest.mark.parametrize("lateness", [0.0, 30.0])
@pytest.mark.parametrize("batch_size", [1, 4])
async def test_the_session_fast_path_gives_what_the_general_path_gives(
    out: str, lateness: float, batch_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = spy_on_fast_path(FastSessionPath, monkeypatch)
    results = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(FastSessionPath, "for_operator", classmethod(lambda cls, op, logic: None))
        for name in (out, f"{out}-late"):
            CollectSink.clear(name)
        env = environment(1, batch_size=batch_size)
        summed = (
            env.from_source(ScriptedSource([SESSION_SCRIPT]), watermark_strategy=every_record(20.0)).uid("src")
            .key_by(lambda e: e[0])
            .window(EventTimeSessionWindows.with_gap(10.0))
            .allowed_lateness(lateness)
            .side_output_late_data(LATE)
            .reduce(lambda a, b: (a[0], a[1] + b[1]), window_function=Label()).uid("sessions")
        )
        summed.sink_to(CollectSink(out))
        summed.get_side_output(LATE).sink_to(CollectSink(f"{out}-late"))
        await env.execute("session-fast-or-not")
        results.append((collected(out), collected(f"{out}-late")))
    assert used == [True]  # the first run took the fast path
    assert results[0] == results[1] and results[0][0] and results[0][1]


async def test_every_window_state_and_timer_is_gone_once_its_lateness_is_over(out: str, tmp_path: Path) -> None:
    env = environment(1)
    env.enable_checkpointing(60.0, directory=tmp_path)
    keyed = orders(env).key_by(lambda o: o[0])
    keyed.window(TumblingEventTimeWindows.of(60.0)).allowed_lateness(30.0).reduce(add_cents).uid("tumbling").sink_to(
        CollectSink(out)
    )
    keyed.window(EventTimeSessionWindows.with_gap(20.0)).aggregate(Count()).uid("sessions").sink_to(CollectSink(out))
    result = await env.execute("cleanup")
    assert collected(out)
    assert result.checkpoints_completed >= 1  # the final one, after the last window fired
    storage = CheckpointStorage(tmp_path, retained=10)
    final = await storage.latest_complete()
    assert final is not None
    for uid in ("tumbling", "sessions"):
        handle = final.metadata.operators[uid].subtasks[0]
        snapshot = decode(await storage.read_state(final.checkpoint_id, handle))
        states = snapshot["keyed"]["states"]
        assert all(not entry["key_groups"] for entry in states.values()), (uid, states)
        assert snapshot["timers"] == {"processing": [], "event": []}


class CountUnlessRefused(AggregateFunction[tuple[str, float, bool], int, int]):
    """Counts a session's elements; raises for an element marked refused."""

    def create_accumulator(self) -> int:
        return 0

    def add(self, value: tuple[str, float, bool], accumulator: int) -> int:
        if value[2]:
            raise ValueError(f"refused {value[0]}@{value[1]}")
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b


# SESSION_EVENTS and two refused elements: ("a", 9.0) would join [0, 10) and [18, 28),
# ("b", 49.0) would grow [40, 54) to [40, 59).
REFUSED_SESSION_SCRIPT = [
    ((key, ts, refused), ts)
    for key, ts, refused in [
        ("a", 0.0, False), ("a", 18.0, False), ("b", 5.0, False), ("a", 9.0, True), ("a", 50.0, False),
        ("b", 40.0, False), ("b", 44.0, False), ("b", 49.0, True),
    ]
]


@pytest.mark.parametrize("path", ["fast", "general", "general-rocksdb"])
@pytest.mark.parametrize("policy", ["skip", "dead-letter"])
async def test_a_refused_record_neither_joins_nor_grows_a_session(
    out: str, path: str, policy: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    used = spy_on_fast_path(FastSessionPath, monkeypatch)
    if path == "general":
        monkeypatch.setattr(FastSessionPath, "for_operator", classmethod(lambda cls, op, logic: None))
    env = environment(1, batch_size=1)
    if path == "general-rocksdb":  # no live table: the fast path declines it
        env.set_state_backend(EmbeddedRocksDBStateBackend(tmp_path / "rocksdb", memory_budget=16 << 20))
    error_policy = ErrorPolicy.skip() if policy == "skip" else ErrorPolicy.dead_letter(CollectSink(f"{out}-late"))
    (
        env.from_source(ScriptedSource([REFUSED_SESSION_SCRIPT]), watermark_strategy=every_record(10.0)).uid("src")
        .key_by(lambda e: e[0])
        .window(EventTimeSessionWindows.with_gap(10.0))
        .aggregate(CountUnlessRefused(), window_function=Label()).uid("sessions")
        .with_error_policy(error_policy)
        .sink_to(CollectSink(out))
    )
    result = await env.execute("refused-session")
    assert used == {"fast": [True], "general": [], "general-rocksdb": [False]}[path]
    # what the job gives without the refused elements
    assert sorted(collected(out)) == [
        ("a", 0.0, 10.0, 1), ("a", 18.0, 28.0, 1), ("a", 50.0, 60.0, 1), ("b", 5.0, 15.0, 1), ("b", 40.0, 54.0, 2)
    ]
    if policy == "skip":
        assert result.metrics["operators"]["sessions[0]"]["records_skipped"] == 2
    else:
        assert [(d["record"], d["position"], d["error"]) for d in collected(f"{out}-late")] == [
            (("a", 9.0, True), "src[0] script-0 @ 3", "ValueError: refused a@9.0"),
            (("b", 49.0, True), "src[0] script-0 @ 7", "ValueError: refused b@49.0"),
        ]
