"""Joins through real jobs against hand computations: the window join (every pair of a
key's window), the co-group (also windows with one side empty), and the interval join
(every pair within the bounds, negative ones too, with the late data of each side to
its side output).

Orders and payments carry their event time; the watermark allows 10 s of disorder, more
than the inputs have, so no element is late except where a test makes one late on
purpose (a paced scripted source, so that everything before it has passed the join).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from event_time_kit import ScriptedSource, collected, environment, every_record, sink_names

from streamflow.api.side_outputs import OutputTag
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.eventtime import WatermarkStrategy
from streamflow.joins import ProcessJoinFunction
from streamflow.windowing import TumblingEventTimeWindows

CONFIGS = [pytest.param(1, id="p1"), pytest.param(2, id="p2")]
LEFT_LATE, RIGHT_LATE = OutputTag("late-orders"), OutputTag("late-payments")

# (order id, event time): orders every 7 s, ids repeating every 5 orders
ORDERS = [(f"o{i % 5}", float(7 * i)) for i in range(30)]
# (order id, event time, cents): payments 3 s after some orders, a few 40 s after
PAYMENTS = [(f"o{i % 5}", float(7 * i + (40 if i % 4 == 0 else 3)), 100 * i) for i in range(0, 30, 2)]


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    with sink_names(f"joins::{request.node.name}", "-left", "-right") as name:
        yield name


def second(record: Any) -> float:
    return float(record[1])


def streams(env: Any) -> tuple[Any, Any]:
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(10.0).with_timestamp_assigner(second)
    orders = env.from_source(CollectionSource(ORDERS, batch_size=4), watermark_strategy=strategy).uid("orders")
    payments = env.from_source(CollectionSource(PAYMENTS, batch_size=3), watermark_strategy=strategy).uid("payments")
    return orders, payments


def first(record: Any) -> Any:
    return record[0]


@pytest.mark.parametrize("parallelism", CONFIGS)
async def test_a_window_join_pairs_every_order_and_payment_of_an_id_in_the_same_minute(
    out: str, parallelism: int
) -> None:
    env = environment(parallelism)
    orders, payments = streams(env)
    orders.join(payments).where(first).equal_to(first).window(TumblingEventTimeWindows.of(60.0)).apply(
        lambda order, payment: (order[0], order[1], payment[1])
    ).uid("join").sink_to(CollectSink(out))
    await env.execute("window-join")
    want = Counter(
        (o, t, pt) for o, t in ORDERS for p, pt, _ in PAYMENTS if o == p and t // 60 == pt // 60
    )
    assert want and Counter(collected(out)) == want


def totals(lefts: list[Any], rights: list[Any], out: Any) -> None:
    key = (lefts or rights)[0][0]
    out.collect((key, len(lefts), sum(cents for _, _, cents in rights)))


@pytest.mark.parametrize("parallelism", CONFIGS)
async def test_a_co_group_sees_each_ids_minute_once_even_with_one_side_empty(out: str, parallelism: int) -> None:
    env = environment(parallelism)
    orders, payments = streams(env)
    orders.co_group(payments).where(first).equal_to(first).window(TumblingEventTimeWindows.of(60.0)).apply(
        totals
    ).uid("co-group").sink_to(CollectSink(out))
    await env.execute("co-group")
    groups: dict[tuple[str, float], list[int]] = {}
    for o, t in ORDERS:
        groups.setdefault((o, t // 60), [0, 0])[0] += 1
    for p, pt, cents in PAYMENTS:
        groups.setdefault((p, pt // 60), [0, 0])[1] += cents
    assert any(n == 0 for n, _ in groups.values())  # some payment has no order in its minute
    assert Counter(collected(out)) == Counter((key, n, cents) for (key, _), (n, cents) in groups.items())


class Paid(ProcessJoinFunction):
    """(order, payment, the pair's timestamp)."""

    def process_element(self, left: Any, right: Any, ctx: Any, out: Any) -> None:
        out.collect((left, right, ctx.timestamp))


@pytest.mark.parametrize("parallelism", CONFIGS)
@pytest.mark.parametrize("bounds", [(0.0, 5.0), (-33.0, -30.0), (-10.0, 45.0)])
async def test_an_interval_join_pairs_elements_whose_timestamps_are_within_the_bounds(
    out: str, parallelism: int, bounds: tuple[float, float]
) -> None:
    lower, upper = bounds
    env = environment(parallelism)
    orders, payments = streams(env)
    orders.key_by(first).interval_join(payments.key_by(first)).between(lower, upper).process(Paid()).uid(
        "interval"
    ).sink_to(CollectSink(out))
    await env.execute("interval-join")
    want = Counter(
        ((o, t), (p, pt, cents), max(t, pt))
        for o, t in ORDERS
        for p, pt, cents in PAYMENTS
        if o == p and lower <= pt - t <= upper
    )
    assert want and Counter(collected(out)) == want


async def test_elements_behind_the_watermark_go_to_their_sides_late_data_output(out: str) -> None:
    env = environment(1, batch_size=1)
    # one paced source feeds both sides, so that all before the late element has passed
    # the join when it comes: left 100 and 200, right 101 and 201, then right 1, left 2
    script = [(("L", 100.0), 100.0), (("R", 101.0), 101.0), (("L", 200.0), 200.0), (("R", 201.0), 201.0),
              (("R", 1.0), 1.0), (("L", 2.0), 2.0)]
    source = env.from_source(ScriptedSource([script], pause=0.05), watermark_strategy=every_record()).uid("src")
    lefts = source.filter(lambda e: e[0] == "L").key_by(lambda e: "k")
    rights = source.filter(lambda e: e[0] == "R").key_by(lambda e: "k")
    joined = (
        lefts.interval_join(rights).between(0.0, 5.0)
        .side_output_left_late_data(LEFT_LATE).side_output_right_late_data(RIGHT_LATE)
        .process(lambda left, right: (left[1], right[1])).uid("interval")
    )
    joined.sink_to(CollectSink(out))
    joined.get_side_output(LEFT_LATE).sink_to(CollectSink(f"{out}-left"))
    joined.get_side_output(RIGHT_LATE).sink_to(CollectSink(f"{out}-right"))
    await env.execute("interval-late")
    assert sorted(collected(out)) == [(100.0, 101.0), (200.0, 201.0)]
    # the join's event time is past 200 when they come (both inputs saw the source's
    # watermarks): they join nothing, each goes to its side's late output
    assert collected(f"{out}-right") == [("R", 1.0)]
    assert collected(f"{out}-left") == [("L", 2.0)]
