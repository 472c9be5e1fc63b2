"""KafkaSource hands out records fairly across its partitions, on the real broker.

One ``getmany`` returns a fetch of every partition with data; the reader used to hand out
one partition's whole fetch before the next one's, so with a backlog and a slow pipeline
a partition waited for the others' entire fetches (~2.5 s was seen), which also held its
watermark back. It now takes one batch per partition in turn (round robin).

The job reads two partitions with a backlog at parallelism 1 through a paced map (a
slow pipeline, chained to the source, so records pass it in the order they are emitted),
and stamps each record as it passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from itertools import groupby

import pytest

from kafka_source_kit import fill, job
from streamflow.connectors.debug import CollectSink
from streamflow.connectors.kafka import KafkaSource
from streamflow.testing.kafka import unique_topic

PER_PARTITION = 3000
BATCH = 100


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"kafka-fairness::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


def stamp(value: str) -> tuple[int, float]:
    """(partition, when the record left the source)."""
    return int(value.split(":")[0]), time.monotonic()


class PacedBatches:
    """A slow pipeline: 5 ms per source batch."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, record: tuple[int, float]) -> tuple[int, float]:
        self.seen += 1
        if self.seen % BATCH == 0:
            await asyncio.sleep(0.005)
        return record


async def test_two_partitions_with_a_backlog_take_turns_batch_by_batch(kafka_bootstrap: str, out: str) -> None:
    topic = unique_topic("fairness")
    await fill(kafka_bootstrap, topic, partitions=2, per_partition=PER_PARTITION)
    env = job(parallelism=1)
    env.set_source_batch_size(BATCH)
    (env.from_source(KafkaSource(kafka_bootstrap, topics=topic, bounded=True, value_deserializer="str"))
        .map(stamp).map(PacedBatches()).sink_to(CollectSink(out)))
    await env.execute("fairness")
    stamped = CollectSink.results(out)
    assert len(stamped) == 2 * PER_PARTITION

    # The interleaving: runs of consecutive records from one partition, while the other
    # partition still has records to come, are at most one batch long.
    runs = [(p, len(list(group))) for p, group in groupby(p for p, _ in stamped)]
    emitted = {0: 0, 1: 0}
    longest_while_both = 0
    for partition, length in runs:
        if emitted[1 - partition] < PER_PARTITION:
            longest_while_both = max(longest_while_both, length)
        emitted[partition] += length
    # The waits: the longest time a partition with records left went without any, from
    # the first record the job emitted on.
    start = stamped[0][1]
    waits = {p: max(b - a for a, b in zip(times, times[1:]))
             for p in (0, 1) for times in [[start] + [t for q, t in stamped if q == p]]}
    duration = stamped[-1][1] - start
    report = (f"runs of one partition {runs[:12]}...; longest wait per partition {waits} "
              f"in a run of {duration:.3f}s")
    assert longest_while_both <= BATCH, report
    assert len(runs) >= PER_PARTITION // BATCH, report
    # Before, one partition waited for the other's whole fetch: about half the run.
    assert max(waits.values()) < duration / 4, report
