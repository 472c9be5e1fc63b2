"""Recovery of the exactly-once KafkaSink against a real broker: a writer prepares and
dies without close(); a new writer opens with the checkpoint's state, commits what was
prepared (idempotently), and aborts every other transaction the dead one left open."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from kafka_sink_kit import crash, ctx, eo_sink, handles, new_topic, opened, values
from streamflow.errors import DataLossError
from streamflow.state.operator import redistribute_split
from streamflow.testing.kafka import produce, undecided_partitions


async def test_a_prepared_transaction_of_a_dead_writer_is_committed_once_on_restore(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap)
    sink = eo_sink(kafka_bootstrap, topic)
    dead = await opened(sink, ctx())
    await dead.write(["a", "b"])
    state = await dead.snapshot(1)  # barrier 1: prepared; checkpoint 1 then completes ...
    await dead.write(["lost-in-crash"])
    await crash(dead)  # ... and the process dies before notify_checkpoint_complete(1)
    assert await values(kafka_bootstrap, topic) == []

    restored = await opened(sink, ctx(restored=state))
    try:
        assert sorted(await values(kafka_bootstrap, topic)) == ["a", "b"]
        await restored.commit(handles(state)[0])  # the same handle again: no error, no copy
        await restored.write(["c"])
        await restored.notify_checkpoint_complete(2)  # does not commit c: not prepared
        await restored.snapshot(3)
        await restored.notify_checkpoint_complete(3)
    finally:
        await restored.close()
    assert sorted(await values(kafka_bootstrap, topic)) == ["a", "b", "c"]


async def test_restoring_the_same_checkpoint_twice_commits_once_and_raises_nothing(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    sink = eo_sink(kafka_bootstrap, topic)
    first = await opened(sink, ctx())
    await first.write(["a"])
    state = await first.snapshot(1)
    await crash(first)
    # The second attempt commits a, writes on (on another id: a's stays untouched) and
    # dies before any checkpoint of its own completes ...
    second = await opened(sink, ctx(restored=state))
    await second.write(["from-second"])
    second_state = await second.snapshot(2)
    assert handles(second_state)[0]["transactional_id"] != handles(state)[0]["transactional_id"]
    await crash(second)
    # ... so the third restores checkpoint 1 again: a's EndTxn repeats with the same epoch.
    third = await opened(sink, ctx(restored=state))
    try:
        await third.write(["from-third"])
        await third.snapshot(2)
        await third.notify_checkpoint_complete(2)
    finally:
        await third.close()
    assert await values(kafka_bootstrap, topic) == ["a", "from-third"]


async def test_lingering_transactions_of_a_dead_writer_are_aborted_on_restore(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    sink = eo_sink(kafka_bootstrap, topic)
    dead = await opened(sink, ctx())
    await dead.write(["a"])
    await dead.snapshot(1)
    await dead.notify_checkpoint_complete(1)
    await dead.write(["b"])
    state = await dead.snapshot(2)  # checkpoint 2 completes, but the commit never happens
    await dead.write(["open-at-crash"])  # an open transaction on a third id
    await dead.snapshot(3)  # and a prepared one of a checkpoint that never completed
    await dead.write(["open-at-crash-2"])
    await crash(dead)

    restored = await opened(sink, ctx(restored=state))
    await restored.close()
    await produce(kafka_bootstrap, topic, [b"marker"])  # visible only if no transaction is left open
    assert await values(kafka_bootstrap, topic) == ["a", "b", "marker"]


async def test_downscale_from_two_subtasks_to_one_commits_both_and_unblocks_the_topic(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=2)
    sink = eo_sink(kafka_bootstrap, topic, key=lambda r: r, key_serializer="str")
    states: list[list[Any]] = []
    for subtask in (0, 1):
        dead = await opened(sink, ctx(subtask=subtask, parallelism=2))
        await dead.write([f"s{subtask}-{i}" for i in range(5)])
        states.append(await dead.snapshot(1))
        await dead.write([f"open-{subtask}-{i}" for i in range(5)])  # left open at the crash
        await crash(dead)

    [restored_state] = redistribute_split(states, 1)
    survivor = await opened(sink, ctx(subtask=0, parallelism=1, restored=restored_state))
    try:
        # The old subtasks' open transactions still hold the last stable offset back:
        # after a rescale their ids are aborted once the first checkpoint of the new
        # layout completes (then every restored handle is surely committed).
        await survivor.write(["new"])
        await survivor.snapshot(2)
        await survivor.notify_checkpoint_complete(2)
    finally:
        await survivor.close()
    committed = {f"s{s}-{i}" for s in (0, 1) for i in range(5)}
    assert sorted(await values(kafka_bootstrap, topic)) == sorted(committed | {"new"})


async def test_upscale_hands_old_handles_to_other_subtasks_without_aborting_them(kafka_bootstrap: str) -> None:
    # One old subtask with two pending transactions (checkpoint 1 aborted, 2 prepared);
    # after the restore at parallelism 2 each new subtask commits one of them, while the
    # other new subtask already writes: its own ids must not touch the old ones.
    topic = await new_topic(kafka_bootstrap, partitions=2)
    sink = eo_sink(kafka_bootstrap, topic)
    dead = await opened(sink, ctx())
    await dead.write(["one"])
    await dead.snapshot(1)
    await dead.write(["two"])
    state = await dead.snapshot(2)
    await crash(dead)
    shares = redistribute_split([state], 2)
    assert [len(s) for s in shares] == [1, 1]

    first = await opened(sink, ctx(subtask=0, parallelism=2, restored=shares[0]))
    await first.write(["new-0"])  # begins a transaction before subtask 1 has recovered
    second = await opened(sink, ctx(subtask=1, parallelism=2, restored=shares[1]))
    try:
        for w in (first, second):
            await w.snapshot(3)
        for w in (first, second):
            await w.notify_checkpoint_complete(3)
    finally:
        await first.close()
        await second.close()
    assert sorted(await values(kafka_bootstrap, topic)) == ["new-0", "one", "two"]


async def test_a_fresh_start_aborts_what_a_run_at_another_parallelism_left_open(kafka_bootstrap: str) -> None:
    # A run at parallelism 3 died before any checkpoint: no state names its transactions.
    topic = await new_topic(kafka_bootstrap, partitions=2)
    sink = eo_sink(kafka_bootstrap, topic, transactional_id_pool_size=4)
    for subtask in (1, 2):
        dead = await opened(sink, ctx(subtask=subtask, parallelism=3))
        await dead.write([f"lost-{subtask}"])
        await dead.snapshot(1)  # prepared, never completed
        await dead.write([f"open-{subtask}"])
        await crash(dead)
    # ... and one of this layout that used an id beyond the current pool size.
    bigger = await opened(eo_sink(kafka_bootstrap, topic, transactional_id_pool_size=5), ctx())
    for checkpoint in (1, 2, 3, 4):
        await bigger.write([f"k{checkpoint}"])
        await bigger.snapshot(checkpoint)
    await bigger.write(["open-on-id-4"])
    await crash(bigger)
    assert await undecided_partitions(kafka_bootstrap, topic)

    fresh = await opened(sink, ctx(subtask=0, parallelism=1))  # subtask 0 lists and aborts
    try:
        assert await undecided_partitions(kafka_bootstrap, topic) == {}
        await fresh.write(["new"])
        await fresh.snapshot(1)
        await fresh.notify_checkpoint_complete(1)
    finally:
        await fresh.close()
    assert await values(kafka_bootstrap, topic) == ["new"]


async def _abort_check_interval(bootstrap: str) -> float:
    """The broker's transaction.abort.timed.out.transaction.cleanup.interval.ms, in s."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, str(brokers[0]["node_id"]))]
        )
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "transaction.abort.timed.out.transaction.cleanup.interval.ms":
                    return int(entry[1]) / 1000
    finally:
        await admin.close()
    raise AssertionError("the broker did not report its timed-out transaction check interval")


async def test_an_expired_prepared_transaction_stops_the_job_with_data_loss(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    sink = eo_sink(kafka_bootstrap, topic, transaction_timeout=2.0)
    live = await opened(sink, ctx())  # commits from its own producer
    await live.write(["live"])
    await live.snapshot(1)
    dead = await opened(sink, ctx(subtask=1, parallelism=2))  # its handle is restored later
    await dead.write(["restored"])
    state = await dead.snapshot(1)
    await crash(dead)
    started = time.monotonic()
    # The broker aborts a transaction at the first check after its timeout.
    await asyncio.sleep(2.0 + await _abort_check_interval(kafka_bootstrap) + 1.0 - (time.monotonic() - started))

    with pytest.raises(DataLossError, match=r"data may be lost: transaction .*-1of2-0.* checkpoint 1 "
                                            r"cannot be committed: the broker fenced its producer"):
        await opened(sink, ctx(subtask=1, parallelism=2, restored=state))
    with pytest.raises(DataLossError, match=r"transaction_timeout \(2 s; it started \d+ s ago\)") as info:
        await live.notify_checkpoint_complete(1)
    assert info.value.checkpoint_id == 1 and not info.value.retriable
    await live.close()
    assert await values(kafka_bootstrap, topic) == []
