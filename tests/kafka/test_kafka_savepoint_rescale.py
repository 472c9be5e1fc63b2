"""Kafka -> keyed count -> Kafka, exactly once, stopped with a savepoint and resumed at
another parallelism twice (1 -> 3 -> 2): the source's offsets, the keyed counts and the
sink's transactions all move, and the read_committed output equals what the input implies,
record for record."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from streamflow import JobClient, KeyedProcessFunction, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.state import ValueStateDescriptor
from streamflow.testing.kafka import create_topic, produce, read_committed, undecided_partitions, unique_topic

KEYS = 24
N = 4_800


class CountPerKey(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    async def process_element(self, value: str, ctx: Any, out: Any) -> None:
        key, _, seq = value.partition(":")
        if int(seq) % 40 == 0:
            await asyncio.sleep(0.02)  # paced: each run spans several checkpoints
        n = self.count.value() + 1
        self.count.update(n)
        out.collect(f"{key}:{n}:{seq}")


def job(bootstrap: str, source: str, out: str, parallelism: int, directory: Path) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(0.2, directory=directory)
    env.set_source_batch_size(20).set_channel_capacity(2)  # little in flight: a stop lands midway
    (
        env.from_source(KafkaSource(bootstrap, topics=source, bounded=True, value_deserializer="str")).uid("in")
        .key_by(lambda v: v.partition(":")[0])
        .process(CountPerKey()).uid("count")
        .sink_to(KafkaSink(bootstrap, out, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                           transactional_id_prefix=out, key=lambda v: v.partition(":")[0],
                           key_serializer="str", value_serializer="str")).uid("out")
    )
    return env


async def stop_after_checkpoints(client: JobClient, checkpoints: int, savepoints: Path) -> Path:
    deadline = time.monotonic() + 30
    while client.metrics()["checkpoints"]["completed"] < checkpoints:
        assert time.monotonic() < deadline, "the job did not checkpoint in time"
        await asyncio.sleep(0.05)
    return await client.stop_with_savepoint(savepoints)


async def test_exactly_once_through_savepoints_at_1_then_3_then_2(kafka_bootstrap: str, tmp_path: Path) -> None:
    source, out = unique_topic("sp-in"), unique_topic("sp-out")
    await create_topic(kafka_bootstrap, source, partitions=4)
    await create_topic(kafka_bootstrap, out, partitions=4)
    values = [f"k{i % KEYS}:{i}" for i in range(N)]
    await produce(kafka_bootstrap, source, [v.encode() for v in values], keys=[v.split(":")[0].encode() for v in values])

    first = job(kafka_bootstrap, source, out, 1, tmp_path / "chk-1").execute_async("sp-rescale")
    savepoint_1 = await stop_after_checkpoints(first, 2, tmp_path / "savepoints")
    assert (await first.wait()).stopped_with_savepoint == savepoint_1
    seen_1 = len(await read_committed(kafka_bootstrap, out))
    assert 0 < seen_1 < N, f"the first run should stop midway; {seen_1} of {N} committed"

    second = job(kafka_bootstrap, source, out, 3, tmp_path / "chk-3").execute_async(
        "sp-rescale", from_savepoint=savepoint_1)
    savepoint_2 = await stop_after_checkpoints(second, 2, tmp_path / "savepoints")
    await second.wait()
    seen_2 = len(await read_committed(kafka_bootstrap, out))
    assert seen_1 < seen_2 < N, f"the second run should stop midway; {seen_2} of {N} committed"

    result = await job(kafka_bootstrap, source, out, 2, tmp_path / "chk-2").execute(
        "sp-rescale", from_savepoint=savepoint_2)
    assert result.restored_from is not None

    committed = [r.value.decode() for r in await read_committed(kafka_bootstrap, out)]
    assert len(committed) == N, f"{len(committed)} records committed, {N} read: lost or duplicated"
    assert Counter(c.split(":")[2] for c in committed) == Counter(str(i) for i in range(N))
    counts: dict[str, list[int]] = defaultdict(list)
    for record in committed:  # one key lives in one output partition: its order is commit order
        key, n, _ = record.split(":")
        counts[key].append(int(n))
    assert all(seq == list(range(1, N // KEYS + 1)) for seq in counts.values()), "keyed counts did not go on"
    assert await undecided_partitions(kafka_bootstrap, out) == {}
