"""The exactly-once KafkaSink writer against a real broker, driven through the SinkWriter
protocol in the order the runtime uses: barrier (snapshot), records of the next epoch,
completion (commit)."""

from __future__ import annotations

import asyncio

import pytest

from kafka_sink_kit import crash, ctx, eo_sink, handles, new_topic, opened, values
from streamflow.connectors.kafka.txn_ids import TransactionalIdPoolExhaustedError
from streamflow.connectors.kafka.txn_resume import TransactionCoordinator
from streamflow.errors import ConfigError, ConnectorError, DataLossError
from streamflow.testing.kafka import produce


async def test_output_is_visible_to_read_committed_only_after_the_checkpoint_completes(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap)
    w = await opened(eo_sink(kafka_bootstrap, topic), ctx())
    try:
        await w.write(["a", "b", "c"])
        state = await w.snapshot(1)
        [handle] = handles(state)
        assert handle["records"] == 3 and handle["checkpoint_id"] == 1
        assert handle["transactional_id"] == f"{topic}-out-0of1-0"
        assert await values(kafka_bootstrap, topic) == []  # prepared: on the broker, not visible

        await w.notify_checkpoint_complete(1)
        assert sorted(await values(kafka_bootstrap, topic)) == ["a", "b", "c"]
    finally:
        await w.close()


async def test_a_checkpoint_without_records_commits_cleanly(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(eo_sink(kafka_bootstrap, topic), ctx())
    try:
        [empty] = handles(await w.snapshot(1))
        assert empty["records"] == 0 and empty["transactional_id"] is None
        await w.notify_checkpoint_complete(1)  # nothing to commit: no error
        await w.write(["x"])
        await w.snapshot(2)
        await w.snapshot(3)  # empty again, while 2 is still pending
        await w.notify_checkpoint_complete(3)
        assert await values(kafka_bootstrap, topic) == ["x"]
    finally:
        await w.close()
    # A restore that presents the empty handle commits it as a no-op, too.
    w2 = await opened(eo_sink(kafka_bootstrap, topic), ctx(restored=[
        {"checkpoint_id": 1, "subtask": 0, "parallelism": 1, "handle": empty}]))
    await w2.close()
    assert await values(kafka_bootstrap, topic) == ["x"]


async def test_the_id_pool_is_bounded_and_reused_over_many_checkpoints(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(eo_sink(kafka_bootstrap, topic, transactional_id_pool_size=5), ctx())
    used: set[str] = set()
    try:
        await w.write(["r0"])
        for n in range(1, 21):
            state = await w.snapshot(n)  # barrier n
            used.update(h["transactional_id"] for h in handles(state))
            await w.write([f"r{n}"])  # records of epoch n+1 arrive before n completes
            await w.notify_checkpoint_complete(n)
        await w.snapshot(21)
        await w.notify_checkpoint_complete(21)
    finally:
        await w.close()
    # 21 transactions over three ids: open, prepared, committed-but-maybe-restored.
    assert used == {f"{topic}-out-0of1-{k}" for k in range(3)}
    assert await values(kafka_bootstrap, topic) == [f"r{n}" for n in range(21)]


async def test_an_aborted_checkpoint_is_committed_with_the_next_one(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(eo_sink(kafka_bootstrap, topic), ctx())
    try:
        await w.write(["a"])
        await w.snapshot(1)
        await w.notify_checkpoint_aborted(1)
        await w.write(["b"])
        state = await w.snapshot(2)
        assert [h["checkpoint_id"] for h in handles(state)] == [1, 2]  # both pending
        assert await values(kafka_bootstrap, topic) == []
        await w.notify_checkpoint_complete(2)
        assert await values(kafka_bootstrap, topic) == ["a", "b"]
    finally:
        await w.close()


async def test_pool_exhaustion_fails_naming_the_pool_size_setting(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(eo_sink(kafka_bootstrap, topic, transactional_id_pool_size=3), ctx())
    try:
        for n in (1, 2, 3):  # three checkpoints that never complete hold all three ids
            await w.write([f"r{n}"])
            await w.snapshot(n)
        with pytest.raises(TransactionalIdPoolExhaustedError, match="Raise transactional_id_pool_size"):
            await w.write(["r4"])
    finally:
        await w.close()


async def test_without_checkpointing_finish_commits(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(eo_sink(kafka_bootstrap, topic), ctx(checkpointing=False))
    try:
        await w.write(["a"])
        await w.write(["b"])
        assert await values(kafka_bootstrap, topic) == []
        await w.finish()
        assert await values(kafka_bootstrap, topic) == ["a", "b"]
    finally:
        await w.close()


async def test_close_aborts_the_open_transaction_so_later_records_are_readable(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(eo_sink(kafka_bootstrap, topic), ctx())
    await w.write(["a"])
    await w.snapshot(1)
    await w.notify_checkpoint_complete(1)
    await w.write(["never"])
    await w.close()
    await produce(kafka_bootstrap, topic, [b"after"])  # readable only if the LSO moved on
    assert await values(kafka_bootstrap, topic) == ["a", "after"]


async def test_a_timeout_above_the_brokers_maximum_is_a_config_error(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    sink = eo_sink(kafka_bootstrap, topic, transaction_timeout=10 * 24 * 3600)
    w = sink.create_writer(ctx())
    with pytest.raises(ConfigError, match="transaction.max.timeout.ms"):
        await w.open()
    await crash(w)  # open failed: nothing of it may be left running
    assert not w._producers and w._coordinator is None


async def test_a_writer_fenced_by_another_producer_fails_clearly_and_closes(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    w = await opened(eo_sink(kafka_bootstrap, topic), ctx())
    await w.write(["a"])
    [prepared] = handles(await w.snapshot(1))
    await w.write(["b"])
    # A second job with the same prefix and uid initialises the same ids: both of this
    # writer's transactions (prepared and open) are aborted and its producers fenced.
    intruder = TransactionCoordinator(kafka_bootstrap, {}, where="intruder")
    await intruder.start()
    try:
        for tid in w._producers:
            await intruder.abort(tid, 60.0)
    finally:
        await intruder.close()
    with pytest.raises(ConnectorError, match="Kafka did not accept a batch of records: ProducerFenced"):
        await w.write(["c"])
        await w.snapshot(2)
    with pytest.raises(DataLossError, match=rf"transaction '{prepared['transactional_id']}' .* checkpoint 1 "
                                            r"cannot be committed: the broker fenced its producer"):
        await w.notify_checkpoint_complete(1)
    async with asyncio.timeout(5):
        await w.close()  # a fenced producer cannot abort; close still ends promptly
    assert not w._producers
    assert await values(kafka_bootstrap, topic) == []
