"""Per-job objects: two jobs in one event loop never see each other's armed faults,
offloaded work or shared boards; one job's objects are the same in every subtask and
every attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from streamflow import JobFailedError, JobStatus, RestartStrategy, StreamEnvironment
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.core.faults import FaultInjector, InjectedFault

N = 400
SEEN: dict[str, list[Any]] = {}  # job -> the services object every subtask of every attempt saw


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    SEEN.clear()
    for name in ("services::armed", "services::plain"):
        CollectSink.clear(name)
    yield
    SEEN.clear()


class RecordServices:
    """A map that notes the job services its context hands it, then passes records on."""

    def __init__(self, job: str) -> None:
        self.job = job

    def open(self, ctx: Any) -> None:
        SEEN.setdefault(self.job, []).append(ctx.services)

    async def __call__(self, value: int) -> int:
        if value % 10 == 0:
            await asyncio.sleep(0.001)  # both jobs interleave on the loop
        return value


def job(name: str, *, faults: FaultInjector | None, restart: RestartStrategy) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=2)
    env.set_restart_strategy(restart)
    env.set_source_batch_size(10)
    if faults is not None:
        env.set_fault_injector(faults)
    (
        env.from_source(CollectionSource(list(range(N)), batch_size=10)).uid("numbers")
        .map(RecordServices(name)).uid("note")
        .sink_to(CollectSink(f"services::{name}")).uid("out")
    )
    return env


async def test_an_armed_fault_fires_in_its_own_job_only() -> None:
    faults = FaultInjector()
    faults.arm("records", 100, action="raise")
    armed = job("armed", faults=faults, restart=RestartStrategy.none()).execute_async("armed")
    plain = job("plain", faults=None, restart=RestartStrategy.none()).execute_async("plain")
    with pytest.raises(JobFailedError) as failed:
        await armed.wait()
    assert isinstance(failed.value.__cause__, InjectedFault)
    result = await plain.wait()  # wrote far more than 100 records meanwhile, never hit the fault
    assert result.attempts == 1
    assert armed.status is JobStatus.FAILED and plain.status is JobStatus.FINISHED
    assert f"{armed.status}/{plain.status}" == "failed/finished" and plain.status == "finished"  # still a str
    assert sorted(CollectSink.results("services::plain")) == list(range(N))
    assert SEEN["armed"][0] is not SEEN["plain"][0]


async def test_one_jobs_subtasks_and_attempts_share_its_services() -> None:
    faults = FaultInjector()
    faults.arm("records", 150, action="raise")  # once: the second attempt runs through
    result = await job("armed", faults=faults, restart=RestartStrategy.fixed_delay(attempts=2, delay=0)).execute(
        "restarted"
    )
    assert result.attempts == 2
    services = SEEN["armed"]
    assert len(services) == 4  # 2 subtasks x 2 attempts
    assert all(s is services[0] for s in services) and services[0].faults is faults


async def test_offloaded_work_of_one_job_does_not_make_another_pause() -> None:
    first, second = FaultInjector(), FaultInjector()
    a = job("armed", faults=first, restart=RestartStrategy.none()).execute_async("a")
    b = job("plain", faults=second, restart=RestartStrategy.none()).execute_async("b")
    await asyncio.gather(a.wait(), b.wait())
    services_a, services_b = SEEN["armed"][0], SEEN["plain"][0]
    release = asyncio.Event()
    work = asyncio.ensure_future(services_a.offload.tracked(release.wait()))
    await asyncio.sleep(0)
    assert services_a.offload.in_flight() and not services_b.offload.in_flight()
    release.set()
    await work
    assert not services_a.offload.in_flight()
