"""The built-in window aggregations through real jobs: ``sum``, ``min``, ``max``,
``min_by``, ``max_by``, ``mean`` and ``count`` on keyed windows and on ``window_all``,
against totals computed by hand; bad records (a missing field, a value that is not a
number) to the operator's error policy, named by operator, source position and field,
on the tumbling fast path (a batch with a bad record among good ones), the general path
and RocksDB; a field that is neither int nor str refused at build time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from event_time_kit import ScriptedSource, collected, environment, every_record, sink_names

from streamflow import ErrorPolicy, JobFailedError, UserFunctionError
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.errors import ConfigError
from streamflow.eventtime import WatermarkStrategy
from streamflow.runtime.operators.window_fast import FastWindowPath
from streamflow.state import EmbeddedRocksDBStateBackend
from streamflow.windowing import EventTimeSessionWindows, SlidingEventTimeWindows, TumblingEventTimeWindows

# Orders as dicts: user, event time, cents (an int) and a weight (a float, each one
# different: min_by and max_by have one answer whatever the arrival order at parallelism
# 2); out of order by up to 4 s, the watermark allows 5 s, so none is late.
ORDERS = [
    {"user": ("ann", "bob", "cy")[i % 3], "ts": float(7 * i + (3 if i % 5 == 0 else 0) - (4 if i % 7 == 0 else 0)),
     "cents": i % 13, "weight": (i * 7 % 150) * 0.25}
    for i in range(150)
]
ORDER_TIME = WatermarkStrategy.for_bounded_out_of_orderness(5.0).with_timestamp_assigner(lambda o: o["ts"])


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    with sink_names(f"aggregations::{request.node.name}", "-dead") as name:
        yield name


def orders(env: Any, batch_size: int = 9) -> Any:
    source = env.from_source(CollectionSource(ORDERS, batch_size=batch_size)).uid("orders")
    return source.assign_timestamps_and_watermarks(ORDER_TIME).uid("order-time")


def minutes() -> dict[tuple[str, float], list[dict[str, Any]]]:
    """The orders of each user and minute, by hand."""
    grouped: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for order in ORDERS:
        grouped[(order["user"], order["ts"] // 60 * 60)].append(order)
    return grouped


def hand(compute: Any) -> list[str]:
    """The reprs of ``compute(orders)`` over each user's minute (a result's repr shows its
    type too: 3 and 3.0 differ)."""
    return sorted(repr(compute(chosen)) for chosen in minutes().values())


def first_of(orders: list[dict[str, Any]], best: Any) -> dict[str, Any]:
    return next(o for o in orders if o["weight"] == best)


@pytest.mark.parametrize("function,compute", [
    (lambda w: w.sum("cents"), lambda os: sum(o["cents"] for o in os)),
    (lambda w: w.sum("weight"), lambda os: sum((o["weight"] for o in os), 0)),
    (lambda w: w.min("cents"), lambda os: min(o["cents"] for o in os)),
    (lambda w: w.max("weight"), lambda os: max(o["weight"] for o in os)),
    (lambda w: w.min_by("weight"), lambda os: first_of(os, min(o["weight"] for o in os))),
    (lambda w: w.max_by("weight"), lambda os: first_of(os, max(o["weight"] for o in os))),
    (lambda w: w.mean("cents"), lambda os: sum(o["cents"] for o in os) / len(os)),
    (lambda w: w.count(), len),
], ids=["sum-int", "sum-float", "min", "max", "min_by", "max_by", "mean", "count"])
@pytest.mark.parametrize("parallelism", [1, 2])
async def test_each_built_in_over_tumbling_minutes_per_user(
    out: str, function: Any, compute: Any, parallelism: int
) -> None:
    env = environment(parallelism)
    windowed = orders(env).key_by(lambda o: o["user"]).window(TumblingEventTimeWindows.of(60.0))
    function(windowed).uid("minutes").sink_to(CollectSink(out))
    await env.execute("built-in")
    assert sorted(map(repr, collected(out))) == hand(compute)


async def test_window_all_sums_and_counts_every_order_per_minute(out: str) -> None:
    env = environment(2)
    orders(env).window_all(TumblingEventTimeWindows.of(60.0)).sum("cents").uid("all").sink_to(CollectSink(out))
    await env.execute("window-all")
    want: dict[float, int] = defaultdict(int)
    for order in ORDERS:
        want[order["ts"] // 60 * 60] += order["cents"]
    assert sorted(collected(out)) == sorted(want.values())


async def test_sliding_and_session_windows_sum_by_position(out: str) -> None:
    script = [((key, ts, amount), ts) for key, ts, amount in [
        ("a", 0.0, 1), ("a", 15.0, 2), ("a", 8.0, 4), ("a", 100.0, 8), ("b", 95.0, 16),
    ]]
    env = environment(1, batch_size=1)
    source = env.from_source(ScriptedSource([script]), watermark_strategy=every_record(20.0)).uid("src")
    source.key_by(lambda e: e[0]).window(EventTimeSessionWindows.with_gap(10.0)).sum(2).uid("sessions").sink_to(
        CollectSink(out)
    )
    source.key_by(lambda e: e[0]).window(SlidingEventTimeWindows.of(20.0, 10.0)).max_by(2).uid("sliding").sink_to(
        CollectSink(f"{out}-dead")
    )
    await env.execute("sessions")
    # a: [0, 10) and [15, 25) joined by 8 into [0, 25): 7; [100, 110): 8; b: [95, 105): 16
    assert sorted(collected(out)) == [7, 8, 16]
    # a: [-10, 10) {1, 4}, [0, 20) {1, 2, 4}, [10, 30) {2}, [90, 110) and [100, 120) {8}; b: [80, 100), [90, 110) {16}
    assert sorted(e[2] for e in collected(f"{out}-dead")) == [2, 4, 4, 8, 8, 16, 16]


async def test_count_windows_sum_every_three_orders_of_a_user(out: str) -> None:
    env = environment(1)
    orders(env).key_by(lambda o: o["user"]).count_window(3).sum("cents").uid("threes").sink_to(CollectSink(out))
    await env.execute("count-windows")
    want = []
    for user in ("ann", "bob", "cy"):
        cents = [o["cents"] for o in ORDERS if o["user"] == user]
        want += [sum(cents[i : i + 3]) for i in range(0, len(cents) - 2, 3)]
    assert sorted(collected(out)) == sorted(want)


# -- bad records -----------------------------------------------------------------------

BAD = {"user": "ann", "ts": 10.0, "cents": "12"}  # cents as a string
MISSING = {"user": "bob", "ts": 11.0}  # no cents at all


@pytest.mark.parametrize("path", ["fast", "general", "rocksdb"])
async def test_bad_records_go_to_the_dead_letter_sink_naming_operator_position_and_field(
    out: str, path: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    taken: list[bool] = []
    original = FastWindowPath.for_operator.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, op: Any, logic: Any) -> Any:
        fast = None if path == "general" else original(cls, op, logic)
        taken.append(fast is not None)
        return fast

    monkeypatch.setattr(FastWindowPath, "for_operator", classmethod(spy))
    good = [{"user": ("ann", "bob")[i % 2], "ts": float(i), "cents": i} for i in range(20)]
    records = good[:5] + [BAD] + good[5:12] + [MISSING] + good[12:]  # one batch: the bad among the good
    env = environment(1)
    if path == "rocksdb":
        env.set_state_backend(EmbeddedRocksDBStateBackend(tmp_path / "rocksdb", memory_budget=16 << 20))
    (
        env.from_source(CollectionSource(records, batch_size=100)).uid("src")
        .assign_timestamps_and_watermarks(ORDER_TIME).uid("time")
        .key_by(lambda o: o["user"])
        .window(TumblingEventTimeWindows.of(60.0))
        .sum("cents").uid("totals")
        .with_error_policy(ErrorPolicy.dead_letter(CollectSink(f"{out}-dead")))
        .sink_to(CollectSink(out))
    )
    await env.execute("bad-records")
    assert taken == [path == "fast"]
    assert sorted(collected(out)) == [sum(range(0, 20, 2)), sum(range(1, 20, 2))]  # ann: the evens, bob: the odds
    dead = [(d["record"], d["position"], d["error"]) for d in collected(f"{out}-dead")]
    assert dead == [
        (BAD, "src[0] collection[0:22] @ 5",
         "FieldValueError: sum('cents'): field 'cents' is '12' (str), not a number"),
        (MISSING, "src[0] collection[0:22] @ 13",
         "FieldValueError: sum('cents'): the record has no field 'cents' (KeyError: 'cents')"),
    ]


async def test_a_bad_record_under_the_fail_policy_fails_the_job_naming_it(out: str) -> None:
    env = environment(1)
    (
        env.from_source(CollectionSource([MISSING])).uid("src")
        .assign_timestamps_and_watermarks(ORDER_TIME).uid("time")
        .key_by(lambda o: o["user"]).window(TumblingEventTimeWindows.of(60.0)).max("cents").uid("peaks")
        .sink_to(CollectSink(out))
    )
    with pytest.raises(JobFailedError) as failed:
        await env.execute("fails")
    cause = failed.value.__cause__
    assert isinstance(cause, UserFunctionError)
    assert cause.operator == "peaks" and cause.position == "src[0] collection[0:1] @ 0"
    assert "max('cents'): the record has no field 'cents'" in str(cause)


@pytest.mark.parametrize("build,match", [
    (lambda w: w.sum(1.5), r"window operator 'window-sum': sum\(1.5\): a field is an int .* not float"),
    (lambda w: w.max_by(None), r"window operator 'window-max-by': max_by\(None\): a field is an int"),
    (lambda w: w.mean(["cents"]), r"window operator 'window-mean': mean\(\['cents'\]\): .* not list"),
])
def test_a_field_neither_int_nor_str_is_refused_at_build_time(build: Any, match: str) -> None:
    env = environment(1)
    windowed = env.from_collection([("a", 1)]).key_by(lambda e: e[0]).window(TumblingEventTimeWindows.of(60.0))
    with pytest.raises(ConfigError, match=match):
        build(windowed)


def test_window_all_names_its_operator_in_the_refusal() -> None:
    env = environment(1)
    with pytest.raises(ConfigError, match=r"window operator 'window-all-min': min\(2.0\)"):
        env.from_collection([("a", 1)]).window_all(TumblingEventTimeWindows.of(60.0)).min(2.0)
