"""The exchange sink and source on the real broker, driven through the connector
protocol as the runtime drives them: exactly-once, ownership, exact types, event time."""

from __future__ import annotations

import decimal
from collections import defaultdict
from typing import Any

import pytest

from exchange_kit import (
    checkpoint,
    make_exchange,
    make_spec,
    max_watermark,
    new_topic_name,
    polled,
    quiet,
    read,
    read_all,
    reader,
    watermark_reaches,
    writer,
)
from kafka_sink_kit import crash
from streamflow.api.exchange import ExchangeKind
from streamflow.errors import ConfigError
from streamflow.eventtime import WatermarkStatus
from streamflow.partitioning.keygroups import key_group_for
from streamflow.partitioning.workers import partition_of_key_group, reader_partitions
from streamflow.testing.kafka import create_topic, partitions_of

KEYS = [f"user-{i}" for i in range(24)]


def records_of(w: int, start: int, count: int) -> list[tuple[Any, ...]]:
    """Records of writer ``w``: (key, writer, seq, Decimal, tuple); unique, typed."""
    return [(KEYS[i % len(KEYS)], w, i, decimal.Decimal(i) / 4, (i, str(i))) for i in range(start, start + count)]


async def test_records_reach_the_reader_of_their_key_group_exactly_once_with_their_types(kafka_bootstrap: str) -> None:
    topic = new_topic_name()
    exchange, spec = make_exchange(kafka_bootstrap), make_spec(topic)
    writers = [await writer(exchange, spec, w) for w in range(2)]
    readers = [await reader(exchange, spec, g, 2) for g in range(2)]
    try:
        assert await partitions_of(kafka_bootstrap, topic) == [0, 1, 2, 3]  # created by the job
        written = []
        for start in range(0, 70, 7):
            for w, wr in enumerate(writers):
                batch = records_of(w, start, 7)
                written += batch
                await wr.write(batch)
        await checkpoint(writers, 1)
        got: dict[int, list[Any]] = {}
        for g, r in enumerate(readers):
            owned = reader_partitions(4, 2, g)
            expected = [rec for rec in written if partition_of_key_group(key_group_for(rec[0], 128), 128, 4) in owned]
            got[g], _ = await read(r, len(expected))
            assert sorted(got[g]) == sorted(expected)
        everything = got[0] + got[1]
        assert sorted(everything) == sorted(written) and len(everything) == len(written)
        assert all(type(rec[3]) is decimal.Decimal and type(rec[4]) is tuple for rec in everything)
        order: dict[tuple[str, int], list[int]] = defaultdict(list)
        for rec in everything:
            order[(rec[0], rec[1])].append(rec[2])
        assert all(seq == sorted(seq) for seq in order.values())  # per key and writer, in write order

        # prepared (the barrier passed) but its checkpoint not complete: invisible
        await writers[0].write(records_of(0, 100, 5))
        [state] = await checkpoint(writers[:1], 2, complete=False)
        assert [await quiet(r, 0.5) for r in readers] == [[], []]
        await writers[0].notify_checkpoint_complete(2)
        late = await read_all(readers, 5)
        assert sorted(late[0] + late[1]) == sorted(records_of(0, 100, 5))
        assert [await quiet(r, 0.2) for r in readers] == [[], []]
    finally:
        for c in [*writers, *readers]:
            await c.close()


async def test_a_writer_that_dies_is_committed_by_its_restore_and_what_it_wrote_after_is_gone(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic_name()
    exchange, spec = make_exchange(kafka_bootstrap), make_spec(topic, writers=1)
    first = await writer(exchange, spec, 0)
    r = await reader(exchange, spec, 0, 1)
    try:
        await first.write(records_of(0, 0, 10))
        [state] = await checkpoint([first], 1, complete=False)  # prepared; the process dies before completion
        await first.write(records_of(0, 10, 10))  # the next epoch, never prepared
        await crash(first._inner)  # type: ignore[arg-type]
        again = await writer(exchange, spec, 0, restored=state)  # restore from checkpoint 1: commit it
        try:
            got, _ = await read(r, 10)
            assert sorted(got) == sorted(records_of(0, 0, 10))
            await again.write(records_of(0, 10, 10))  # replayed after the restore
            await checkpoint([again], 2)
            more, _ = await read(r, 10)
            assert sorted(more) == sorted(records_of(0, 10, 10))
            assert await quiet(r, 1.0) == []
        finally:
            await again.close()
    finally:
        await r.close()


async def test_readers_resume_inside_a_pack_and_after_a_rescale(kafka_bootstrap: str) -> None:
    topic = new_topic_name()
    exchange, spec = make_exchange(kafka_bootstrap), make_spec(topic, writers=1)
    w = await writer(exchange, spec, 0)
    written = records_of(0, 0, 240)
    await w.write(written)  # one pack per partition
    await checkpoint([w], 1)
    await w.close()
    old = [await reader(exchange, spec, g, 2) for g in range(2)]
    before: list[Any] = []
    states = []
    for r in old:
        got, batches = await read(r, 15, max_records=7)  # 7 at a time: packs are split
        assert all(len(b.records) <= 7 for b in batches)
        before += got
        states.append(r.snapshot_splits(1))
        await r.close()
    assert any(s["skip"] > 0 for state in states for s in state)  # a position inside a pack
    everything = [s for state in states for s in state]
    new = [await reader(exchange, spec, g, 3, restored=[], everything=everything) for g in range(3)]
    try:
        after = []
        for g, r in enumerate(new):
            owned = reader_partitions(4, 3, g)
            left = [rec for rec in written if partition_of_key_group(key_group_for(rec[0], 128), 128, 4) in owned
                    and rec not in before]
            got, _ = await read(r, len(left))
            after += got
        assert sorted(before + after) == sorted(written) and len(before + after) == len(written)
        assert [await quiet(r, 0.3) for r in new] == [[], [], []]
    finally:
        for r in new:
            await r.close()


async def test_watermarks_and_idleness_cross_the_exchange(kafka_bootstrap: str) -> None:
    topic = new_topic_name()
    exchange = make_exchange(kafka_bootstrap, partitions=2)
    spec = make_spec(topic, partitions=2)
    w0, w1 = writers = [await writer(exchange, spec, w) for w in range(2)]
    r = await reader(exchange, spec, 0, 1)
    try:
        await w0.on_watermark(10.0)
        await w1.on_watermark(5.0)
        await w0.write(records_of(0, 0, 4))
        await checkpoint(writers, 1)
        assert len(await watermark_reaches(r, 5.0)) == 4  # the slower writer holds event time back

        await w1.on_watermark_status(WatermarkStatus.IDLE)
        await w0.on_watermark(20.0)
        await checkpoint(writers, 2)
        await watermark_reaches(r, 20.0)  # an idle writer does not

        await w1.write(records_of(1, 0, 3))  # records again: active (ACTIVE goes first)
        await w1.on_watermark(25.0)
        await checkpoint(writers, 3)
        got, _ = await read(r, 3)
        assert sorted(got) == sorted(records_of(1, 0, 3))
        await w0.on_watermark(30.0)  # committed after w1's return: every partition has it in that order
        await checkpoint(writers, 4)
        await watermark_reaches(r, 25.0)  # the writer that is active again holds event time back again
        assert max_watermark(await polled(r, 0.5)) == 25.0

        await w0.on_watermark_status(WatermarkStatus.IDLE)
        await w1.on_watermark_status(WatermarkStatus.IDLE)
        await checkpoint(writers, 5)
        for _ in range(300):  # until both IDLE records are read: at most 30 s
            if r.watermark_status is WatermarkStatus.IDLE:
                break
            assert (await r.poll(100, 0.1)) is not None
        assert r.watermark_status is WatermarkStatus.IDLE

        for w in writers:
            await w.end_input()
        await checkpoint(writers, 6)
        for _ in range(200):
            batch = await r.poll(100, 0.1)
            if batch is None:
                break
        assert batch is None  # every writer ended in every partition: end of input
        saved = r.snapshot_splits(7)
        assert [s["writers"]["ended"] for s in saved] == [[0, 1], [0, 1]]
    finally:
        for c in [*writers, r]:
            await c.close()


async def test_a_fresh_reader_skips_an_earlier_deployments_records_a_restored_one_reads_them(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic_name()
    exchange = make_exchange(kafka_bootstrap, partitions=1)
    old_spec, new_spec = (make_spec(topic, partitions=1, writers=1, generation=g) for g in ("old", "new"))
    old_writer = await writer(exchange, old_spec, 0)
    await old_writer.write(records_of(0, 0, 20))
    await checkpoint([old_writer], 1)
    await old_writer.close()
    old_reader = await reader(exchange, old_spec, 0, 1)
    got, _ = await read(old_reader, 5, max_records=5)  # the old run had read 5 at its savepoint
    saved = old_reader.snapshot_splits(1)
    await old_reader.close()

    new_writer = await writer(exchange, new_spec, 0)
    await new_writer.write(records_of(0, 100, 10))
    await checkpoint([new_writer], 1)
    await new_writer.close()
    fresh = await reader(exchange, new_spec, 0, 1)
    restored = await reader(exchange, new_spec, 0, 1, restored=saved)
    try:
        assert sorted((await read(fresh, 10))[0]) == sorted(records_of(0, 100, 10))
        assert await quiet(fresh, 0.5) == []
        rest, _ = await read(restored, 25)
        assert sorted(got + rest) == sorted(records_of(0, 0, 20) + records_of(0, 100, 10))
    finally:
        await fresh.close()
        await restored.close()


@pytest.mark.parametrize("kind", [ExchangeKind.REBALANCE, ExchangeKind.BROADCAST])
async def test_rebalance_spreads_batches_and_broadcast_reaches_every_reader(
    kafka_bootstrap: str, kind: ExchangeKind
) -> None:
    topic = new_topic_name()
    exchange, spec = make_exchange(kafka_bootstrap), make_spec(topic, kind=kind, writers=1)
    w = await writer(exchange, spec, 0)
    readers = [await reader(exchange, spec, g, 2) for g in range(2)]
    try:
        batches = [records_of(0, start, 5) for start in range(0, 40, 5)]
        for batch in batches:
            await w.write(batch)
        await checkpoint([w], 1)
        written = [rec for batch in batches for rec in batch]
        if kind is ExchangeKind.BROADCAST:
            for r in readers:
                got, _ = await read(r, len(written))
                assert got == written  # every record, in the writer's order
        else:
            got = await read_all(readers, len(written))
            assert [await quiet(r, 0.2) for r in readers] == [[], []]
            assert sorted(got[0] + got[1]) == sorted(written) and got[0] and got[1]
    finally:
        for c in [w, *readers]:
            await c.close()


async def test_an_exchange_topic_with_another_partition_count_is_refused(kafka_bootstrap: str) -> None:
    topic = new_topic_name()
    await create_topic(kafka_bootstrap, topic, partitions=3)
    exchange, spec = make_exchange(kafka_bootstrap), make_spec(topic)
    with pytest.raises(ConfigError, match=r"has 3 partitions, but the job's exchanges have 4.*with 3 exchange partitions"):
        await writer(exchange, spec, 0)
    with pytest.raises(ConfigError, match="has 3 partitions"):
        await reader(exchange, spec, 0, 1)
