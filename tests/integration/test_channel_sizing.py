"""Channel sizing: the job's bound (batches, records) and one operator's own bound on the
channels into it, seen in a running job's channel metrics; bad bounds refused at build
time."""

from __future__ import annotations

import pytest

from streamflow import StreamEnvironment
from streamflow.connectors.debug import CollectSink
from streamflow.errors import ConfigError


def build(env: StreamEnvironment, sink: str, *, bound: tuple[int, int | None] | None) -> None:
    mapped = env.from_collection(list(range(3000))).uid("numbers").map(lambda v: v + 1).uid("plus")
    if bound is not None:
        mapped = mapped.channel_capacity(bound[0], records=bound[1])
    mapped.key_by(lambda v: v % 3).map(lambda v: v).uid("keyed").sink_to(CollectSink(sink)).uid("sink")


async def test_the_job_bound_and_an_operator_bound_reach_their_channels() -> None:
    CollectSink.clear("sizing")
    env = StreamEnvironment(parallelism=2).set_channel_capacity(5, records=400)
    build(env, "sizing", bound=(3, 50))
    result = await env.execute("sizing")
    channels = result.metrics["channels"].values()
    into_plus = [c for c in channels if c["downstream"].startswith("plus[")]
    into_keyed = [c for c in channels if c["downstream"].startswith("keyed[")]
    assert into_plus, "channel_capacity() gives the operator its own task, so channels into it"
    assert {(c["capacity"], c["record_capacity"]) for c in into_plus} == {(3, 50)}
    assert {(c["capacity"], c["record_capacity"]) for c in into_keyed} == {(5, 400)}
    assert sorted(CollectSink.results("sizing")) == list(range(1, 3001))
    CollectSink.clear("sizing")


def test_a_chained_operator_without_a_bound_has_no_channel_in_front() -> None:
    env = StreamEnvironment(parallelism=2)
    build(env, "unused", bound=None)
    plan = env.plan()
    assert any([op.uid for op in chain.operators][:2] == ["numbers", "plus"] for chain in plan.chains)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda env: env.set_channel_capacity(0), "positive number of batches"),
        (lambda env: env.set_channel_capacity(4, records=0), "in records must be a positive int"),
        (lambda env: env.from_collection([1]).channel_capacity(2), "source 'collection' has none"),
        (lambda env: env.from_collection([1]).map(str).channel_capacity(2, records=-5), "in records must be"),
    ],
)
def test_bad_bounds_are_refused_when_the_job_is_built(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(StreamEnvironment())  # type: ignore[operator]
