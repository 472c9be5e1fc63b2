"""The savepoint queue on its own: order, callers who gave up, one stop at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamflow.errors import CheckpointError
from streamflow.runtime.savepoints import SavepointQueue, SavepointRequest


def future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


async def test_waiting_savepoints_start_oldest_first_while_a_slot_is_free() -> None:
    queue = SavepointQueue("job")
    first, second, third = (SavepointRequest(Path(f"/sp/{n}")) for n in (1, 2, 3))
    for request in (first, second, third):
        queue.add(request, future())
    slots = [True, True, False]
    started = [request for request, _ in queue.ready(lambda: slots.pop(0))]
    assert started == [first, second]
    assert [request for request, _ in queue.ready(lambda: True)] == [third]


async def test_a_caller_that_gave_up_is_skipped() -> None:
    queue = SavepointQueue("job")
    gave_up, waits = future(), future()
    gave_up.cancel()
    queue.add(SavepointRequest(Path("/sp/a")), gave_up)
    queue.add(SavepointRequest(Path("/sp/b")), waits)
    assert [done for _, done in queue.ready(lambda: True)] == [waits]


async def test_a_second_stop_fails_while_one_is_in_flight_and_an_aborted_stop_lets_the_job_run_on() -> None:
    queue = SavepointQueue("job")
    stop = SavepointRequest(Path("/sp/stop"), stop=True)
    queue.started(7, stop)
    assert queue.stop_id == 7 and queue.in_flight(7) is stop
    again = future()
    queue.add(SavepointRequest(Path("/sp/again"), stop=True), again)
    assert list(queue.ready(lambda: True)) == []
    with pytest.raises(CheckpointError, match="job 'job' is already stopping with checkpoint 7"):
        again.result()
    assert queue.ended(7, completed=False) is stop
    assert queue.stop_id is None and queue.in_flight(7) is None


async def test_a_completed_stop_stays_the_stop_and_drain_returns_the_waiting() -> None:
    queue = SavepointQueue("job")
    queue.started(3, SavepointRequest(Path("/sp/stop"), stop=True))
    queue.ended(3, completed=True)
    assert queue.stop_id == 3  # the coordinator posts STOP for it and returns
    waiting = future()
    queue.add(SavepointRequest(Path("/sp/late")), waiting)
    assert queue.drain_waiting() == [waiting] and queue.drain_waiting() == []
