"""Whole jobs through StreamEnvironment: CollectionSource -> map -> KafkaSink with periodic
checkpoints, with and without a failure in the middle, checked with what a
read_committed consumer sees on the real broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_sink_kit import new_topic, no_unclosed_connections, values

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink
from streamflow.core.faults import FaultInjector

faults = FaultInjector()  # the faults these tests arm; every job built here gets it

N = 1200
EXPECTED = Counter(f"v{i}" for i in range(N))


@pytest.fixture(autouse=True)
def _disarm_and_check_connections() -> Iterator[None]:
    """Every client of every attempt, failed ones too, is closed (see test_kafka_restarts)."""
    faults.disarm()
    with no_unclosed_connections():
        yield
        faults.disarm()


async def render(i: int) -> str:
    """Slow enough that several checkpoints complete while records flow."""
    if i % 20 == 0:
        await asyncio.sleep(0.002)
    return f"v{i}"


def job(bootstrap: str, topic: str, directory: Path, *, guarantee: DeliveryGuarantee, parallelism: int = 1,
        restart: RestartStrategy | None = None) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism).set_fault_injector(faults)
    env.enable_checkpointing(0.02, directory=directory)
    env.set_restart_strategy(restart or RestartStrategy.none())
    env.set_source_batch_size(10)
    (
        env.from_source(CollectionSource(list(range(N)), batch_size=10)).uid("numbers")
        .map(render).uid("render")
        .sink_to(KafkaSink(bootstrap, topic, delivery_guarantee=guarantee, transactional_id_prefix=topic,
                           key=lambda v: v, key_serializer="str", value_serializer="str")).uid("kafka-out")
    )
    return env


@pytest.mark.parametrize("parallelism", [1, 2])
async def test_exactly_once_job_writes_every_record_once(kafka_bootstrap: str, tmp_path: Path,
                                                         parallelism: int) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=3)
    result = await job(kafka_bootstrap, topic, tmp_path, guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                       parallelism=parallelism).execute("eo")
    assert result.checkpoints_completed >= 2
    assert Counter(await values(kafka_bootstrap, topic)) == EXPECTED


@pytest.mark.parametrize(
    ("point", "at"),
    [("records", 500), ("after_pre_commit", 3), ("after_completion", 3), ("after_commit", 3)],
)
async def test_exactly_once_job_survives_a_failure_without_duplicates(kafka_bootstrap: str, tmp_path: Path,
                                                                      point: str, at: int) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=3)
    faults.arm(point, at, action="raise")
    env = job(kafka_bootstrap, topic, tmp_path, guarantee=DeliveryGuarantee.EXACTLY_ONCE, parallelism=2,
              restart=RestartStrategy.fixed_delay(attempts=2, delay=0))
    result = await env.execute("eo-failure")
    assert result.attempts == 2 and result.restored_from is not None
    assert Counter(await values(kafka_bootstrap, topic)) == EXPECTED


async def test_at_least_once_job_loses_nothing_after_a_failure(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=3)
    faults.arm("records", 600, action="raise")
    env = job(kafka_bootstrap, topic, tmp_path, guarantee=DeliveryGuarantee.AT_LEAST_ONCE,
              restart=RestartStrategy.fixed_delay(attempts=2, delay=0))
    result = await env.execute("alo-failure")
    assert result.attempts == 2
    got = Counter(await values(kafka_bootstrap, topic))
    assert set(got) == set(EXPECTED)  # every record; the replay after the restore may repeat some
