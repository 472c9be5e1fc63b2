"""Open Kafka transactions left by killed runs at other parallelisms are aborted at start-up.

Three real ``crash_job.py`` processes (Kafka -> keyed count -> exactly-once KafkaSink) on
one checkpoint directory and output topic, on the real broker:

1. p=3, killed right after checkpoint 3 completed (os._exit before the sinks committed):
   its prepared transactions and those it had begun since stay open (ids ``...-Nof3-k``);
2. p=2, restored from checkpoint 3, killed pre-committing its first checkpoint, which
   never completes: more open transactions, on ids ``...-Nof2-k`` that no checkpoint names;
3. p=1, restored from checkpoint 3 again, runs to the end.

The third must leave no transaction open: the last stable offset of every partition
reaches the high watermark by the time it ends (a read_committed reader is not held back
for the transaction timeout, 15 minutes here), and the output equals a failure-free run
record for record.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

import crash_job
from crash_harness import CRASH_EXIT_CODE, KafkaInput, Scenario, run_job
from streamflow.testing.kafka import create_topic, undecided_partitions, unique_topic

pytestmark = pytest.mark.crash


def test_open_transactions_of_killed_runs_at_other_parallelisms_are_aborted(
    crash_inputs: Path, kafka_bootstrap: str, tmp_path: Path
) -> None:
    kafka = KafkaInput(kafka_bootstrap, unique_topic("rescale-in"))
    output = unique_topic("rescale-out")

    async def prepare() -> None:
        await crash_job.fill_input_topic(crash_inputs, kafka_bootstrap, kafka.topic)
        await create_topic(kafka_bootstrap, output, partitions=crash_job.INPUT_FILES)

    asyncio.run(prepare())
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    out.mkdir()

    def run(parallelism: int, crash: str | None) -> dict[str, object]:
        done = run_job(Scenario("kafka", parallelism), crash_inputs, out, checkpoints, crash, kafka, output)
        expected = CRASH_EXIT_CODE if crash is not None else 0
        assert done.returncode == expected, done.describe()
        return done.summary

    run(3, "after_completion:3")
    assert asyncio.run(undecided_partitions(kafka_bootstrap, output)), "the kill should leave transactions open"
    run(2, "after_pre_commit:1")
    summary = run(1, None)

    assert summary["restored_from"] == 3
    assert asyncio.run(undecided_partitions(kafka_bootstrap, output)) == {}
    committed = crash_job.read_committed("kafka", out, (kafka_bootstrap, output))
    assert Counter(committed) == Counter(crash_job.expected_results(crash_inputs))
