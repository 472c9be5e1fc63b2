"""start_client: a cancel waits for a client's start to end before it is passed on
(fakes stand for aiokafka's start; the leak it prevents is shown on the real broker in
tests/kafka/test_kafka_restarts.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamflow.connectors.kafka.clients import start_client


class FakeStart:
    """A start that takes ``seconds`` and records whether it ran to its end."""

    def __init__(self, seconds: float, error: Exception | None = None) -> None:
        self.seconds = seconds
        self.error = error
        self.finished = False
        self.cancelled = False

    async def __call__(self) -> None:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.finished = True
        if self.error is not None:
            raise self.error


async def test_a_start_ends_normally_or_with_its_error() -> None:
    start = FakeStart(0.01)
    await start_client(start(), "test")
    assert start.finished
    with pytest.raises(OSError, match="refused"):
        await start_client(FakeStart(0.0, OSError("refused"))(), "test")


async def test_a_cancel_lets_the_start_finish_then_goes_on() -> None:
    start = FakeStart(0.05)
    caller = asyncio.ensure_future(start_client(start(), "test"))
    await asyncio.sleep(0.01)
    caller.cancel()
    await asyncio.sleep(0.01)
    assert not caller.done()  # still waiting for the start
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert start.finished and not start.cancelled


async def test_a_cancel_wins_over_the_starts_error_and_a_second_cancel_changes_nothing() -> None:
    start = FakeStart(0.05, OSError("refused"))
    caller = asyncio.ensure_future(start_client(start(), "test"))
    await asyncio.sleep(0.01)
    caller.cancel()
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert start.finished


async def test_a_timeout_around_the_start_still_times_out_after_it_finished() -> None:
    start = FakeStart(0.08)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await start_client(start(), "test")
    assert start.finished


async def test_a_start_that_outlasts_the_grace_period_is_cancelled_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    start = FakeStart(10.0)
    caller = asyncio.ensure_future(start_client(start(), "KafkaSource 'in' (subtask 0)", grace=0.05))
    await asyncio.sleep(0.01)
    caller.cancel()
    with caplog.at_level(logging.WARNING, logger="streamflow.connectors.kafka"):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, 1.0)
    assert start.cancelled
    assert "KafkaSource 'in' (subtask 0): a Kafka client still starting 0.05 s after" in caplog.text
