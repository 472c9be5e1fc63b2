"""The Kafka reader's consumer lag (pendingRecords) from what a consumer knows, without a
broker: a stand-in consumer answers highwater / last_stable_offset / end_offsets."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from streamflow.connectors.kafka.lag import ConsumerLag
from streamflow.connectors.kafka.offsets import KafkaSplit

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class StandInConsumer:
    def __init__(self, fetched: dict[TopicPartition, int], listed: dict[TopicPartition, int]) -> None:
        self.fetched = fetched
        self.listed = listed
        self.lookups = 0

    def assignment(self) -> set[TopicPartition]:
        return {A, B}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.fetched.get(tp)

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.fetched.get(tp)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.lookups += 1
        return {tp: self.listed[tp] for tp in partitions if tp in self.listed}


async def test_lag_is_end_offset_minus_next_offset_and_a_lookup_fixes_a_stale_fetch() -> None:
    consumer = StandInConsumer(fetched={A: 100}, listed={A: 250, B: 40})
    splits: dict[TopicPartition, Any] = {A: KafkaSplit("t", 0, 90), B: KafkaSplit("t", 1, 40)}
    lag = ConsumerLag(read_committed=True, timeout=5.0)
    assert lag.pending_records(consumer, splits) is None  # B's end is unknown yet; a look-up starts
    await asyncio.sleep(0)  # the look-up answers
    await asyncio.sleep(0)
    assert lag.pending_records(consumer, splits) == 160 + 0  # A: 250 - 90; B: 40 - 40
    assert consumer.lookups == 1  # not again within the refresh period
    await lag.close()


async def test_a_bounded_split_lags_only_up_to_its_stop_and_nothing_known_is_none() -> None:
    consumer = StandInConsumer(fetched={A: 500}, listed={})
    lag = ConsumerLag(read_committed=False, timeout=5.0)
    assert lag.pending_records(consumer, {A: KafkaSplit("t", 0, 150, stop=200)}) == 50
    assert lag.pending_records(StandInConsumer({}, {}), {B: KafkaSplit("t", 1, 0)}) is None
    assert lag.pending_records(None, {A: KafkaSplit("t", 0, 0)}) is None
    await lag.close()


async def test_close_cancels_a_lookup_in_flight_and_starts_none_after() -> None:
    release = asyncio.Event()

    class Slow(StandInConsumer):
        async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
            self.lookups += 1
            await release.wait()
            return {}

    consumer = Slow(fetched={}, listed={})
    lag = ConsumerLag(read_committed=True, timeout=5.0, refresh=0.0)
    lag.pending_records(consumer, {A: KafkaSplit("t", 0, 0)})
    await asyncio.sleep(0)
    await lag.close()
    lag.pending_records(consumer, {A: KafkaSplit("t", 0, 0)})
    await asyncio.sleep(0)
    assert consumer.lookups == 1
