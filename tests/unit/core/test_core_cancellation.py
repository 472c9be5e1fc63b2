"""finish_even_if_cancelled: the work always finishes; a cancellation of the caller is
raised after it, and an error of the work is never lost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamflow.core.cancellation import finish_even_if_cancelled


async def gated(gate: asyncio.Event, done: list[str], result: str = "ok", error: Exception | None = None) -> str:
    await gate.wait()
    done.append(result)
    if error is not None:
        raise error
    return result


async def test_without_cancellation_the_outcome_is_the_works() -> None:
    gate = asyncio.Event()
    gate.set()
    assert await finish_even_if_cancelled(gated(gate, [])) == "ok"
    with pytest.raises(ValueError, match="bad"):
        await finish_even_if_cancelled(gated(gate, [], error=ValueError("bad")))


@pytest.mark.parametrize("cancels", [1, 3])
async def test_the_work_finishes_however_often_the_caller_is_cancelled(cancels: int) -> None:
    gate, done = asyncio.Event(), []
    caller = asyncio.create_task(finish_even_if_cancelled(gated(gate, done)))
    await asyncio.sleep(0)
    for _ in range(cancels):
        caller.cancel()
        await asyncio.sleep(0.01)
        assert not caller.done()  # still waiting for the work
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["ok"]


async def test_an_error_of_the_work_while_the_caller_is_cancelled_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    gate, done = asyncio.Event(), []
    caller = asyncio.create_task(finish_even_if_cancelled(gated(gate, done, error=OSError("disk full"))))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="streamflow.cancellation"):
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert done == ["ok"]
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] and "disk full" in caplog.text


async def test_a_cancellation_inside_the_work_is_its_outcome() -> None:
    async def cancelled_inside() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await finish_even_if_cancelled(cancelled_inside())
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]  # nobody cancelled us
