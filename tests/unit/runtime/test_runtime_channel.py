"""Channel (bounded, timed backpressure) and InputGate (holds, mailbox, timeout)."""

from __future__ import annotations

import asyncio

import pytest

from streamflow.core.ids import CheckpointId
from streamflow.runtime.channel import MAIL, TIMEOUT, Channel, InputGate


async def test_put_blocks_when_full_and_blocked_time_grows() -> None:
    channel = Channel("a -> b", capacity=2)
    await channel.put("x1")
    await channel.put("x2")
    assert channel.fill == 1.0
    assert not channel.is_blocked

    writer = asyncio.create_task(channel.put("x3"))
    await asyncio.sleep(0.05)
    assert not writer.done()
    assert channel.is_blocked
    assert channel.current_blocked_seconds() >= 0.04
    assert channel.blocked_seconds == 0.0  # only accounted when the wait ends

    assert channel.pop() == "x1"
    await asyncio.wait_for(writer, 1.0)
    assert not channel.is_blocked
    assert channel.blocked_seconds >= 0.04
    assert channel.puts == 3
    assert [channel.pop(), channel.pop()] == ["x2", "x3"]
    assert channel.fill == 0.0


async def test_put_below_capacity_never_waits() -> None:
    channel = Channel("c", capacity=3)
    for i in range(3):
        await channel.put(i)
    assert len(channel) == 3
    assert channel.blocked_seconds == 0.0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="channel capacity must be >= 1"):
        Channel("c", capacity=0)


async def test_gate_reads_channels_round_robin() -> None:
    a, b = Channel("a", 4), Channel("b", 4)
    gate = InputGate([a, b])
    for item in ("a1", "a2"):
        await a.put(item)
    for item in ("b1", "b2"):
        await b.put(item)
    got = [await gate.next() for _ in range(4)]
    assert got == [(0, "a1"), (1, "b1"), (0, "a2"), (1, "b2")]


async def test_held_channel_is_skipped_until_released() -> None:
    a, b = Channel("a", 4), Channel("b", 4)
    gate = InputGate([a, b])
    await a.put("a1")
    await a.put("a2")
    await b.put("b1")
    assert await gate.next() == (0, "a1")
    gate.hold(0)
    assert await gate.next() == (1, "b1")
    # only the held channel has data: the gate waits (times out) instead of reading it
    assert await gate.next(timeout=0.02) == (MAIL, TIMEOUT)
    gate.release_all()
    assert await gate.next() == (0, "a2")


async def test_release_wakes_a_waiting_reader() -> None:
    a = Channel("a", 4)
    gate = InputGate([a])
    await a.put("a1")
    gate.hold(0)
    reader = asyncio.create_task(gate.next())
    await asyncio.sleep(0.01)
    assert not reader.done()
    gate.release_all()
    assert await asyncio.wait_for(reader, 1.0) == (0, "a1")


async def test_mailbox_is_served_before_records() -> None:
    a = Channel("a", 4)
    gate = InputGate([a])
    await a.put("record")
    gate.post("mail-1")
    gate.post("mail-2")
    assert await gate.next() == (MAIL, "mail-1")
    assert await gate.next() == (MAIL, "mail-2")
    assert await gate.next() == (0, "record")


async def test_post_wakes_a_waiting_reader() -> None:
    gate = InputGate([Channel("a", 1)])
    reader = asyncio.create_task(gate.next())
    await asyncio.sleep(0.01)
    gate.post("trigger")
    assert await asyncio.wait_for(reader, 1.0) == (MAIL, "trigger")


async def test_put_wakes_a_waiting_reader() -> None:
    a = Channel("a", 1)
    gate = InputGate([a])
    reader = asyncio.create_task(gate.next())
    await asyncio.sleep(0.01)
    assert not reader.done()
    await a.put("x")
    assert await asyncio.wait_for(reader, 1.0) == (0, "x")


async def test_timeout_returns_timeout_and_counts_idle_time() -> None:
    gate = InputGate([Channel("a", 1)])
    assert await gate.next(timeout=0) == (MAIL, TIMEOUT)
    assert await gate.next(timeout=0.03) == (MAIL, TIMEOUT)
    assert gate.idle_seconds >= 0.025


async def test_gate_without_channels_still_serves_mail_and_timeouts() -> None:
    gate = InputGate([])
    assert await gate.next(timeout=0) == (MAIL, TIMEOUT)
    gate.post("m")
    assert await gate.next() == (MAIL, "m")


async def test_pop_frees_space_for_a_blocked_writer_through_the_gate() -> None:
    a = Channel("a", 1)
    gate = InputGate([a])
    await a.put(1)
    writer = asyncio.create_task(a.put(2))
    await asyncio.sleep(0.01)
    assert a.is_blocked
    assert await gate.next() == (0, 1)
    await asyncio.wait_for(writer, 1.0)
    assert await gate.next() == (0, 2)


async def test_idle_time_includes_a_wait_in_progress() -> None:
    a = Channel("a", 1)
    gate = InputGate([a])
    reader = asyncio.create_task(gate.next())
    await asyncio.sleep(0.05)
    assert gate.idle_seconds == 0.0  # accounted when the wait ends ...
    assert gate.current_idle_seconds() >= 0.04  # ... but visible while it lasts
    await a.put("x")
    assert await asyncio.wait_for(reader, 1.0) == (0, "x")
    settled = gate.current_idle_seconds()
    assert settled == gate.idle_seconds >= 0.04


async def test_cancelling_a_reader_woken_at_the_same_moment_still_cancels_it() -> None:
    """A task cancelled in the loop iteration its input arrives must end (on Python 3.11
    asyncio.wait_for returned the result instead and the cancellation was lost)."""
    for _ in range(20):
        a = Channel("a", 4)
        gate = InputGate([a])

        async def read_forever() -> None:
            while True:
                await gate.next(timeout=1.0)

        reader = asyncio.create_task(read_forever())
        await asyncio.sleep(0)
        await a.put("x")  # completes the reader's wait ...
        reader.cancel()  # ... and cancels it in the same iteration
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(reader, 1.0)


# -- bounds in records, and the writer an unaligned barrier releases -------------------------


async def test_a_record_bound_blocks_the_writer_before_the_batch_bound() -> None:
    from streamflow.core.elements import Batch

    channel = Channel("a -> b", 10, record_capacity=5)
    await channel.put(Batch([1, 2, 3]))
    await channel.put(Batch([4, 5, 6]))  # 3 < 5 records queued: it goes in, now 6
    assert channel.records == 6 and channel.fill == 6 / 5
    writer = asyncio.create_task(channel.put(Batch([7])))
    await asyncio.sleep(0.01)
    assert channel.is_blocked and not writer.done()
    assert channel.pop().records == [1, 2, 3]  # 3 records left: room again
    await asyncio.wait_for(writer, 1.0)
    assert channel.records == 4 and len(channel) == 2


async def test_an_empty_channel_takes_a_batch_larger_than_its_record_bound() -> None:
    from streamflow.core.elements import Batch

    channel = Channel("a -> b", 4, record_capacity=2)
    await asyncio.wait_for(channel.put(Batch(list(range(10)))), 1.0)
    assert channel.records == 10


async def test_release_writer_lets_a_blocked_put_in_past_capacity_once() -> None:
    channel = Channel("a -> b", 1)
    await channel.put("first")
    writer = asyncio.create_task(channel.put("second"))
    await asyncio.sleep(0.01)
    assert not writer.done()
    channel.release_writer()
    await asyncio.wait_for(writer, 1.0)
    assert len(channel) == 2
    third = asyncio.create_task(channel.put("third"))  # the release was for one put only
    await asyncio.sleep(0.01)
    assert not third.done()
    third.cancel()


def test_take_barrier_removes_the_first_barrier_and_returns_what_was_ahead() -> None:
    from streamflow.core.elements import Barrier

    channel = Channel("a -> b", 2)
    for item in ("r1", "r2"):
        channel.put_now(item)
    channel.put_now(Barrier(CheckpointId(1), 0.0))
    channel.put_now("r3")
    assert channel.barriers == 1 and channel.first_barrier() == Barrier(CheckpointId(1), 0.0)
    barrier, ahead = channel.take_barrier()  # type: ignore[misc]
    assert barrier.checkpoint_id == 1 and ahead == ["r1", "r2"]
    assert channel.barriers == 0 and channel.take_barrier() is None
    assert [channel.pop() for _ in range(3)] == ["r1", "r2", "r3"]
