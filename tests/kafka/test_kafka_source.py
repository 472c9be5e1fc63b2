"""KafkaSource against the real broker: who reads which partition, bounded reads,
resuming from a checkpoint at the NEXT offset, rescaling, starting offsets, isolation
levels, partition discovery, group offset commits, and a failed attempt restarted from
its checkpoint with exactly-once output.

Every test has its own topic (the broker is shared). Records are ``"p:i"``: record i of
partition p, so a test can check each partition's records arrive exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from kafka_source_kit import TagSubtask, fill, job, partition_of, run_until

from streamflow import ConfigError, RestartStrategy, StreamEnvironment
from streamflow.connectors.debug import CollectSink
from streamflow.connectors.file_sink import ExactlyOnceFileSink, read_committed_lines
from streamflow.connectors.kafka import KafkaSource, OffsetReset, StartingOffsets
from streamflow.connectors.kafka.offsets import owner_of
from streamflow.core.faults import FaultInjector
from streamflow.testing.kafka import create_topic, produce, produce_transactions, unique_topic

faults = FaultInjector()  # the faults these tests arm; every job built here gets it


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"kafka-source::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


def source(bootstrap: str, topic: str, **kwargs: Any) -> KafkaSource:
    return KafkaSource(bootstrap, topics=topic, value_deserializer="str", **kwargs)


# -- assignment and bounded reads ------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 2, 3])
async def test_each_partition_is_read_by_its_one_owner_and_every_record_once(
    kafka_bootstrap: str, out: str, parallelism: int
) -> None:
    topic = unique_topic("assign")
    written = await fill(kafka_bootstrap, topic, partitions=4, per_partition=50)
    env = job(parallelism)
    (
        env.from_source(source(kafka_bootstrap, topic, bounded=True)).uid("src")
        .process(TagSubtask()).uid("tag")
        .sink_to(CollectSink(out))
    )
    await env.execute("assign")
    tagged = CollectSink.results(out)
    assert Counter(v for _, v in tagged) == Counter(written)  # all of them, each once
    readers = {p: {s for s, v in tagged if partition_of(v) == p} for p in range(4)}
    assert readers == {p: {owner_of(topic, p, parallelism)} for p in range(4)}
    load = Counter(owner_of(topic, p, parallelism) for p in range(4))
    assert max(load.values()) - min(load.get(s, 0) for s in range(parallelism)) <= 1
    for p in range(4):  # in offset order within a partition
        assert [v for _, v in tagged if partition_of(v) == p] == [f"{p}:{i}" for i in range(50)]


async def test_bounded_subtask_without_partitions_ends_at_once(kafka_bootstrap: str, out: str) -> None:
    topic = unique_topic("idle-subtask")
    written = await fill(kafka_bootstrap, topic, partitions=1, per_partition=10)
    env = job(3)
    env.from_source(source(kafka_bootstrap, topic, bounded=True)).uid("src").sink_to(CollectSink(out))
    started = time.monotonic()
    await env.execute("idle-subtask")
    assert sorted(CollectSink.results(out)) == sorted(written)
    assert time.monotonic() - started < 10


async def test_bounded_mode_stops_at_the_end_seen_at_start(kafka_bootstrap: str, out: str) -> None:
    topic = unique_topic("bounded-stop")
    written = await fill(kafka_bootstrap, topic, partitions=2, per_partition=20)

    async def write_more(records: list[str]) -> list[str]:
        await fill(kafka_bootstrap, topic, partitions=2, per_partition=5, start=20)  # while the job reads
        return records

    env = job(1)
    env.set_source_batch_size(5)
    env.from_source(source(kafka_bootstrap, topic, bounded=True)).uid("src").map(write_more_once(write_more)).sink_to(
        CollectSink(out)
    )
    await env.execute("bounded-stop")
    assert sorted(CollectSink.results(out)) == sorted(written)


def write_more_once(action: Any) -> Any:
    """A map that runs ``action`` once, at the first record (state on the class: the
    function object is copied per subtask)."""

    class Once:
        done = False

        async def __call__(self, record: Any) -> Any:
            if not Once.done:
                Once.done = True
                await action([])
            return record

    return Once()


# -- checkpoints: resume at the NEXT offset, rescale -----------------------------------


async def read_all_then_checkpoint(
    bootstrap: str, topic: str, out: str, directory: Path, parallelism: int, count: int
) -> None:
    """An unbounded job reads ``count`` records, takes a checkpoint (every record read is
    before its barrier), and is cancelled."""
    env = job(parallelism, directory)
    env.from_source(source(bootstrap, topic)).uid("src").process(TagSubtask()).uid("tag").sink_to(CollectSink(out))
    client = await run_until(env, "resume", out, count)
    await client.trigger_checkpoint()
    await client.cancel()


@pytest.mark.parametrize(("before", "after"), [(1, 1), (2, 1), (1, 2), (2, 3)])
async def test_restore_resumes_at_the_next_offset_with_any_parallelism(
    kafka_bootstrap: str, out: str, tmp_path: Path, before: int, after: int
) -> None:
    topic = unique_topic("resume")
    first = await fill(kafka_bootstrap, topic, partitions=4, per_partition=10)
    await read_all_then_checkpoint(kafka_bootstrap, topic, out, tmp_path, before, len(first))
    assert sorted(v for _, v in CollectSink.results(out)) == sorted(first)
    CollectSink.clear(out)

    second = await fill(kafka_bootstrap, topic, partitions=4, per_partition=3, start=10)
    env = job(after, tmp_path)
    env.from_source(source(kafka_bootstrap, topic)).uid("src").process(TagSubtask()).uid("tag").sink_to(
        CollectSink(out)
    )
    client = await run_until(env, "resume", out, len(second))
    await asyncio.sleep(0.3)  # a replayed or duplicated record would arrive by now
    await client.cancel()
    tagged = CollectSink.results(out)
    # Exactly the records written after the checkpoint: no last record replayed per
    # partition (the off-by-one), none lost, none read twice.
    assert Counter(v for _, v in tagged) == Counter(second)
    readers = {p: {s for s, v in tagged if partition_of(v) == p} for p in range(4)}
    assert readers == {p: {owner_of(topic, p, after)} for p in range(4)}


async def test_a_bounded_restore_reads_no_record_twice(kafka_bootstrap: str, out: str, tmp_path: Path) -> None:
    topic = unique_topic("bounded-restore")
    written = await fill(kafka_bootstrap, topic, partitions=2, per_partition=15)
    env = job(2, tmp_path)
    env.from_source(source(kafka_bootstrap, topic, bounded=True)).uid("src").sink_to(CollectSink(out))
    await env.execute("bounded-restore")  # its final checkpoint stores offset == stop
    assert sorted(CollectSink.results(out)) == sorted(written)
    CollectSink.clear(out)

    await fill(kafka_bootstrap, topic, partitions=2, per_partition=5, start=15)
    env = job(1, tmp_path)
    env.from_source(source(kafka_bootstrap, topic, bounded=True)).uid("src").sink_to(CollectSink(out))
    await env.execute("bounded-restore")  # restored stops: the first run's end
    assert CollectSink.results(out) == []


async def test_a_source_added_since_a_savepoint_reads_its_topic_from_its_starting_offsets(
    kafka_bootstrap: str, out: str, tmp_path: Path
) -> None:
    """A KafkaSource whose uid the savepoint lacks starts as on a first run, next to the
    restored one, which goes on after its savepoint offsets."""
    old_topic, new_topic = unique_topic("added-old"), unique_topic("added-new")
    first = await fill(kafka_bootstrap, old_topic, partitions=2, per_partition=5)
    added = await fill(kafka_bootstrap, new_topic, partitions=2, per_partition=5)
    env = job(2, tmp_path / "chk")
    env.from_source(source(kafka_bootstrap, old_topic)).uid("old").sink_to(CollectSink(out)).uid("out")
    client = await run_until(env, "added", out, len(first))
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoints")
    await client.wait()
    assert sorted(CollectSink.results(out)) == sorted(first)
    CollectSink.clear(out)

    more = await fill(kafka_bootstrap, old_topic, partitions=2, per_partition=3, start=5)
    env = job(2, tmp_path / "chk-2")
    starting = StartingOffsets.offsets({(new_topic, 0): 2})  # partition 1: the default, earliest
    old = env.from_source(source(kafka_bootstrap, old_topic)).uid("old")
    new = env.from_source(source(kafka_bootstrap, new_topic, starting_offsets=starting)).uid("new")
    old.union(new).sink_to(CollectSink(out)).uid("out")
    client = env.execute_async("added", from_savepoint=savepoint)
    expected = more + [v for v in added if v not in ("0:0", "0:1")]
    try:
        await run_until_more(out, len(expected))
    finally:
        await client.cancel()
    assert Counter(CollectSink.results(out)) == Counter(expected)


async def test_a_restored_source_that_owned_no_partition_reads_new_ones_from_earliest(
    kafka_bootstrap: str, out: str, tmp_path: Path
) -> None:
    """Restored is not fresh: partitions a restored source finds have appeared since the
    job started, so they start at earliest, not at ``starting_offsets`` (latest here)."""
    prefix = unique_topic("owned-none")

    def build() -> StreamEnvironment:
        env = job(1, tmp_path)
        env.from_source(
            KafkaSource(kafka_bootstrap, topic_pattern=f"{prefix}-.*", value_deserializer="str",
                        starting_offsets=StartingOffsets.latest())
        ).uid("src").sink_to(CollectSink(out))
        return env

    client = build().execute_async("owned-none")
    deadline = time.monotonic() + 20
    while True:  # a checkpoint in which the source owns no partition
        try:
            await client.trigger_checkpoint()
            break
        except ConfigError:  # not started yet
            assert time.monotonic() < deadline, "the job did not start"
            await asyncio.sleep(0.05)
    await client.cancel()

    written = await fill(kafka_bootstrap, f"{prefix}-a", partitions=2, per_partition=3)
    client = build().execute_async("owned-none")
    try:
        await run_until_more(out, len(written))
    finally:
        await client.cancel()
    assert client.metrics()["checkpoints"]["restored_from"] is not None
    assert sorted(CollectSink.results(out)) == sorted(written)


# -- starting offsets ------------------------------------------------------------------


async def bounded_values(bootstrap: str, topic: str, out: str, **kwargs: Any) -> list[str]:
    env = job(1)
    env.from_source(source(bootstrap, topic, bounded=True, **kwargs)).uid("src").sink_to(CollectSink(out))
    await env.execute("starting")
    return sorted(CollectSink.results(out))


async def test_starting_offsets_earliest_and_latest(kafka_bootstrap: str, out: str) -> None:
    topic = unique_topic("start-el")
    written = await fill(kafka_bootstrap, topic, partitions=2, per_partition=5)
    assert await bounded_values(kafka_bootstrap, topic, out) == sorted(written)  # earliest is the default
    CollectSink.clear(out)
    assert await bounded_values(kafka_bootstrap, topic, out, starting_offsets=StartingOffsets.latest()) == []


async def test_starting_offsets_latest_reads_only_what_is_written_after_the_start(
    kafka_bootstrap: str, out: str
) -> None:
    topic = unique_topic("start-latest")
    before = await fill(kafka_bootstrap, topic, partitions=2, per_partition=5)
    env = job(1)
    env.from_source(source(kafka_bootstrap, topic, starting_offsets=StartingOffsets.latest())).uid("src").sink_to(
        CollectSink(out)
    )
    client = env.execute_async("start-latest")
    try:
        # Write one record at a time until the first arrives: the reader then stands at
        # "latest" (however long it took to start), and records written before it never come.
        later: list[str] = []
        deadline = time.monotonic() + 20
        while not CollectSink.results(out):
            assert time.monotonic() < deadline, "no record written after the start arrived"
            later += await fill(kafka_bootstrap, topic, partitions=2, per_partition=1, start=5 + len(later) // 2)
            await asyncio.sleep(0.2)
        last = await fill(kafka_bootstrap, topic, partitions=2, per_partition=1, start=5 + len(later) // 2)
        await run_until_more(out, len(set(CollectSink.results(out)) | set(last)))
    finally:
        await client.cancel()
    got = CollectSink.results(out)
    assert not set(got) & set(before)
    assert set(last) <= set(got) <= set(later) | set(last)
    assert len(got) == len(set(got))


async def test_starting_offsets_by_timestamp(kafka_bootstrap: str, out: str) -> None:
    topic = unique_topic("start-ts")
    await create_topic(kafka_bootstrap, topic, 1)
    base_ms = int(time.time() * 1000) - 60_000  # recent: retention goes by record timestamps
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, f"0:{i}".encode(), partition=0, timestamp_ms=base_ms + i * 1000)
    finally:
        await producer.stop()
    at = StartingOffsets.timestamp((base_ms + 2500) / 1000)  # seconds: the first record at or after is 0:3
    assert await bounded_values(kafka_bootstrap, topic, out, starting_offsets=at) == ["0:3", "0:4", "0:5"]
    CollectSink.clear(out)
    after_all = StartingOffsets.timestamp(base_ms / 1000 + 3600)
    assert await bounded_values(kafka_bootstrap, topic, out, starting_offsets=after_all) == []


async def test_starting_offsets_given_per_partition_with_a_default(kafka_bootstrap: str, out: str) -> None:
    topic = unique_topic("start-given")
    await fill(kafka_bootstrap, topic, partitions=2, per_partition=5)
    given = StartingOffsets.offsets({(topic, 0): 3}, default=OffsetReset.LATEST)
    assert await bounded_values(kafka_bootstrap, topic, out, starting_offsets=given) == ["0:3", "0:4"]
    CollectSink.clear(out)
    given = StartingOffsets.offsets({(topic, 1): 4})  # default earliest
    assert await bounded_values(kafka_bootstrap, topic, out, starting_offsets=given) == [
        "0:0", "0:1", "0:2", "0:3", "0:4", "1:4",
    ]


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, partitions: list[TopicPartition]) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp.partition: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()


@pytest.mark.parametrize(("reset", "partition_1"), [("earliest", ["1:0", "1:1", "1:2"]), ("latest", [])])
async def test_starting_offsets_committed_with_a_reset_for_partitions_without_a_commit(
    kafka_bootstrap: str, out: str, reset: str, partition_1: list[str]
) -> None:
    topic = unique_topic("start-committed")
    group = f"{topic}-group"
    await fill(kafka_bootstrap, topic, partitions=2, per_partition=3)
    await commit(kafka_bootstrap, group, {TopicPartition(topic, 0): 2})
    got = await bounded_values(
        kafka_bootstrap, topic, out, group_id=group, starting_offsets=StartingOffsets.committed(reset=reset)
    )
    assert got == ["0:2", *partition_1]


# -- isolation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("isolation_level", "expected"),
    [
        ("read_committed", ["0:committed-1", "0:committed-2"]),
        ("read_uncommitted", ["0:committed-1", "0:aborted", "0:committed-2"]),
    ],
)
async def test_read_committed_skips_aborted_transactions_and_read_uncommitted_sees_them(
    kafka_bootstrap: str, out: str, isolation_level: str, expected: list[str]
) -> None:
    topic = unique_topic("isolation")
    await create_topic(kafka_bootstrap, topic, 1)
    await produce_transactions(
        kafka_bootstrap, topic, [([b"0:committed-1"], True), ([b"0:aborted"], False), ([b"0:committed-2"], True)]
    )
    env = job(1)
    env.from_source(source(kafka_bootstrap, topic, bounded=True, isolation_level=isolation_level)).uid(
        "src"
    ).sink_to(CollectSink(out))
    await env.execute("isolation")  # ends: the stop offset is past the final commit marker
    assert CollectSink.results(out) == expected


# -- discovery -------------------------------------------------------------------------


async def test_a_partition_added_while_running_is_found_and_read_from_its_start(
    kafka_bootstrap: str, out: str
) -> None:
    topic = unique_topic("discover")
    written = await fill(kafka_bootstrap, topic, partitions=2, per_partition=3)
    env = job(2)
    (
        env.from_source(source(kafka_bootstrap, topic, discovery_interval=0.2)).uid("src")
        .process(TagSubtask()).uid("tag")
        .sink_to(CollectSink(out))
    )
    client = await run_until(env, "discover", out, len(written))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=3)})
    finally:
        await admin.close()
    # Written before the reader can have found the partition: read anyway (earliest).
    await produce(kafka_bootstrap, topic, [b"2:0", b"2:1"], partition=2)
    try:
        await run_until_more(out, len(written) + 2)
    finally:
        await client.cancel()
    tagged = CollectSink.results(out)
    assert Counter(v for _, v in tagged) == Counter([*written, "2:0", "2:1"])
    assert {s for s, v in tagged if partition_of(v) == 2} == {owner_of(topic, 2, 2)}


async def test_a_pattern_finds_topics_created_while_running(kafka_bootstrap: str, out: str) -> None:
    prefix = unique_topic("pattern")
    first = f"{prefix}-a"
    await create_topic(kafka_bootstrap, first, 1)
    await produce(kafka_bootstrap, first, [b"0:a"])
    env = job(1)
    env.from_source(
        KafkaSource(kafka_bootstrap, topic_pattern=f"{prefix}-.*", value_deserializer="str", discovery_interval=0.2)
    ).uid("src").sink_to(CollectSink(out))
    client = await run_until(env, "pattern", out, 1)
    second = f"{prefix}-b"
    await create_topic(kafka_bootstrap, second, 2)
    await produce(kafka_bootstrap, second, [b"0:b0"], partition=0)
    await produce(kafka_bootstrap, second, [b"1:b1"], partition=1)
    try:
        await run_until_more(out, 3)
    finally:
        await client.cancel()
    assert sorted(CollectSink.results(out)) == ["0:a", "0:b0", "1:b1"]


async def run_until_more(out: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(CollectSink.results(out)) < count:
        assert time.monotonic() < deadline, f"only {len(CollectSink.results(out))} of {count} records"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # room for a duplicate to show up


# -- group offsets (lag monitoring) ----------------------------------------------------


async def test_offsets_are_committed_to_the_group_only_after_a_checkpoint_completes(
    kafka_bootstrap: str, out: str, tmp_path: Path
) -> None:
    topic = unique_topic("group")
    group = f"{topic}-group"
    written = await fill(kafka_bootstrap, topic, partitions=2, per_partition=4)
    partitions = [TopicPartition(topic, p) for p in range(2)]
    env = job(2, tmp_path)
    env.from_source(source(kafka_bootstrap, topic, group_id=group)).uid("src").sink_to(CollectSink(out))
    client = await run_until(env, "group", out, len(written))
    try:
        assert await committed(kafka_bootstrap, group, partitions) == {0: None, 1: None}  # no checkpoint yet
        await client.trigger_checkpoint()
        deadline = time.monotonic() + 10
        while await committed(kafka_bootstrap, group, partitions) != {0: 4, 1: 4}:  # the NEXT offsets
            assert time.monotonic() < deadline, await committed(kafka_bootstrap, group, partitions)
            await asyncio.sleep(0.05)
    finally:
        await client.cancel()


# -- a failure in the middle: restart from the checkpoint, exactly-once output ---------


@pytest.fixture
def _disarm() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


async def paced(value: str) -> str:
    """Slows the input so that periodic checkpoints complete while records flow."""
    await asyncio.sleep(0.002)
    return value


@pytest.mark.usefixtures("_disarm")
@pytest.mark.parametrize("point", ["after_barrier", "records"])
async def test_a_failed_attempt_restarts_from_the_checkpoint_and_the_output_is_exactly_once(
    kafka_bootstrap: str, tmp_path: Path, point: str
) -> None:
    topic = unique_topic("restart")
    written = await fill(kafka_bootstrap, topic, partitions=4, per_partition=100)
    env = StreamEnvironment(parallelism=2).set_fault_injector(faults)
    env.enable_checkpointing(0.05, directory=tmp_path / "checkpoints")
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=2, delay=0.0))
    env.set_source_batch_size(10)
    (
        env.from_source(source(kafka_bootstrap, topic, bounded=True)).uid("src")
        .map(paced).uid("paced")
        .sink_to(ExactlyOnceFileSink(tmp_path / "out")).uid("sink")
    )
    # Past the first checkpoints, so that the restored one has records before it.
    faults.arm(point, 3 if point == "after_barrier" else 200, action="raise")
    result = await env.execute("restart")
    assert result.attempts == 2 and result.restored_from is not None
    lines = read_committed_lines(tmp_path / "out")
    assert Counter(lines) == Counter(written)
    for p in range(4):  # each partition's records in offset order, across the restart
        assert [v for v in lines if partition_of(v) == p] == [f"{p}:{i}" for i in range(100)]
