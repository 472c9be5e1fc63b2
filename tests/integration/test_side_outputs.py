"""Side outputs through real jobs: ``ctx.output(tag, value)`` in a process function and
``stream.get_side_output(tag)``: what goes where, with the record's position and
timestamp; several readers of one tag, a union with the main output; an operator in the
middle of a chain; event time on a side output (a window after it fires); the outputs of
a record that fails are dropped with it; an unread tag costs nothing; and the mistakes
refused when the pipeline is built.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from event_time_kit import Count, collected, environment, sink_names

from streamflow import ErrorPolicy, GraphError, ProcessFunction
from streamflow.api.side_outputs import OutputTag
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.errors import ConfigError
from streamflow.eventtime import WatermarkStrategy
from streamflow.windowing import TumblingEventTimeWindows

ODD = OutputTag("odd")
BIG = OutputTag("big")
CONFIGS = [
    pytest.param((1, True), id="p1"),
    pytest.param((2, True), id="p2"),
    pytest.param((2, False), id="p2-unchained"),
]


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    with sink_names(f"side-outputs::{request.node.name}", "-odd", "-odd2", "-big", "-dead") as name:
        yield name


class Split(ProcessFunction):
    """Evens to the main output; odds to ``odd`` (negated); over 50 also to ``big``."""

    def process_element(self, value: int, ctx: Any, out: Any) -> None:
        if value % 2:
            ctx.output(ODD, -value)
        else:
            out.collect(value)
        if value > 50:
            ctx.output(BIG, (value, ctx.timestamp()))


def stamped(env: Any, values: list[int]) -> Any:
    return env.from_source(CollectionSource(values, batch_size=6)).uid("src").assign_timestamps_and_watermarks(
        WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v: float(v))
    )


@pytest.mark.parametrize("config", CONFIGS)
async def test_each_value_goes_to_its_output_and_a_tag_may_have_several_readers(
    config: tuple[int, bool], out: str
) -> None:
    parallelism, chaining = config
    env = environment(parallelism, chaining=chaining)
    split = stamped(env, list(range(60))).process(Split()).uid("split")
    split.sink_to(CollectSink(out))
    split.get_side_output(ODD).sink_to(CollectSink(f"{out}-odd"))
    split.get_side_output(ODD).map(abs).union(split).sink_to(CollectSink(f"{out}-odd2"))
    split.get_side_output(BIG).sink_to(CollectSink(f"{out}-big"))
    await env.execute("side-outputs")
    assert Counter(collected(out)) == Counter(range(0, 60, 2))
    assert Counter(collected(f"{out}-odd")) == Counter(-v for v in range(1, 60, 2))
    assert Counter(collected(f"{out}-odd2")) == Counter(range(60))
    assert Counter(collected(f"{out}-big")) == Counter((v, float(v)) for v in range(51, 60))


async def test_a_side_output_leaves_an_operator_inside_a_chain_with_its_record_position(out: str) -> None:
    class Refuse(ProcessFunction):
        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            raise ValueError(f"refused at {ctx.timestamp()}")

    env = environment(1)
    split = stamped(env, list(range(10))).process(Split()).uid("split")
    split.map(lambda v: v * 10).uid("times-ten").sink_to(CollectSink(out))  # chained after split
    split.get_side_output(ODD).process(Refuse()).uid("refuse").with_error_policy(
        ErrorPolicy.dead_letter(CollectSink(f"{out}-dead"))
    ).sink_to(CollectSink(out))
    chains = [[op.name for op in chain.operators] for chain in env.plan().chains]
    assert ["CollectionSource", "timestamps", "Split", "map", "CollectSink"] in chains  # one task
    await env.execute("chained-side-output")
    assert sorted(collected(out)) == [0, 20, 40, 60, 80]
    assert [(d["record"], d["position"], d["error"]) for d in collected(f"{out}-dead")] == [
        (-v, f"src[0] collection[0:10] @ {v}", f"ValueError: refused at {float(v)}") for v in (1, 3, 5, 7, 9)
    ]


async def test_event_time_flows_on_a_side_output_so_a_window_after_it_fires(out: str) -> None:
    env = environment(2)
    split = stamped(env, list(range(200))).process(Split()).uid("split")
    split.get_side_output(ODD).window_all(TumblingEventTimeWindows.of(60.0)).aggregate(Count()).uid(
        "odd-per-minute"
    ).sink_to(CollectSink(out))
    await env.execute("side-output-windows")
    assert sorted(collected(out)) == [10, 30, 30, 30]  # odds in [0, 60), [60, 120), [120, 180), [180, 200)


async def test_the_side_outputs_of_a_record_that_fails_are_dropped_with_it(out: str) -> None:
    class SideThenFail(ProcessFunction):
        def process_element(self, value: int, ctx: Any, out: Any) -> None:
            ctx.output(ODD, value)
            out.collect(value)
            if value == 3:
                raise ValueError("three")

    env = environment(1)
    failing = env.from_collection([1, 2, 3, 4]).process(SideThenFail()).uid("fails").with_error_policy(
        ErrorPolicy.skip()
    )
    failing.sink_to(CollectSink(out))
    failing.get_side_output(ODD).sink_to(CollectSink(f"{out}-odd"))
    await env.execute("side-output-failure")
    assert collected(out) == [1, 2, 4] and collected(f"{out}-odd") == [1, 2, 4]


async def test_a_tag_that_no_stream_reads_costs_nothing(out: str) -> None:
    env = environment(1)
    env.from_collection(list(range(5))).process(Split()).uid("split").sink_to(CollectSink(out))
    await env.execute("unread-tag")
    assert collected(out) == [0, 2, 4]


def test_mistakes_with_side_outputs_are_refused_when_the_pipeline_is_built() -> None:
    env = environment(1)
    split = env.from_collection([1]).process(Split())
    with pytest.raises(ConfigError, match=r"get_side_output needs an OutputTag, got 'odd'"):
        split.get_side_output("odd")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"uid\(\) applies to the operator itself, not to its side output 'odd'"):
        split.get_side_output(ODD).uid("odd")
    with pytest.raises(ConfigError, match="OutputTag needs a non-empty str name"):
        OutputTag("")
