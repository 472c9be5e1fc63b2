"""Exactly-once across an exchange, proved with real processes killed at named points.

A writer job (bounded input -> exchange sink) and a reader job (exchange source ->
keyed count -> exactly-once KafkaSink) run at the same time as separate processes, as
two workers would (``exchange_job.py``). In each scenario both are killed at a crash
point, once, and started again on their checkpoint directories; then the output read
back by an independent read_committed consumer must be exact: every record once, each
key's counts 1..n, the records' types unchanged, no transaction left open on either
topic. The scenarios run concurrently (each process mostly sleeps).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import exchange_job
from streamflow.testing.kafka import create_topic, read_committed, undecided_partitions, unique_topic

JOB = Path(exchange_job.__file__).resolve()
CRASHED = 137
PROCESS_TIMEOUT = 90.0


@dataclass(frozen=True, slots=True)
class Scenario:
    writer_crash: str
    reader_crash: str


SCENARIOS = [
    Scenario("after_pre_commit:3", "after_completion:3"),
    Scenario("after_completion:4", "records:150"),
    Scenario("metadata_write:3", "after_pre_commit:4"),
    Scenario("records:300", "after_commit:3"),
]


@dataclass(slots=True)
class Outcome:
    scenario: Scenario
    exits: dict[str, list[int]] = field(default_factory=lambda: {"writer": [], "reader": []})
    output: list[dict[str, object]] = field(default_factory=list)
    open_exchange: dict[int, tuple[int, int]] = field(default_factory=dict)
    open_output: dict[int, tuple[int, int]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


async def start(role: str, crash: str | None, args: list[str], outcome: Outcome) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "STREAMFLOW_CRASH"}
    if crash is not None:
        env["STREAMFLOW_CRASH"] = crash
    outcome.log.append(f"{role} start (crash {crash})")
    return await asyncio.create_subprocess_exec(
        sys.executable, str(JOB), role, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, role: str, outcome: Outcome) -> int:
    async with asyncio.timeout(PROCESS_TIMEOUT):
        _, err = await process.communicate()
    code = process.returncode
    assert code is not None
    outcome.exits[role].append(code)
    outcome.log.append(f"{role} exit {code}\n{err.decode()[-3000:]}")
    return code


async def run_scenario(scenario: Scenario, bootstrap: str, root: Path) -> Outcome:
    outcome = Outcome(scenario)
    exchange_topic, output_topic = unique_topic("xcrash"), unique_topic("xcrash-out")
    await create_topic(bootstrap, output_topic, partitions=2)
    common = ["--bootstrap", bootstrap, "--topic", exchange_topic]
    writer_args = [*common, "--checkpoints", str(root / "writer")]
    reader_args = [*common, "--output-topic", output_topic, "--checkpoints", str(root / "reader")]

    async def writer() -> None:
        await finish(await start("writer", scenario.writer_crash, writer_args, outcome), "writer", outcome)
        await finish(await start("writer", None, writer_args, outcome), "writer", outcome)

    async def reader() -> None:
        await finish(await start("reader", scenario.reader_crash, reader_args, outcome), "reader", outcome)
        # The reader's input ends once every writer's end of input is committed (the
        # writers write it at their end of input, and their final checkpoint commits it).
        await finish(await start("reader", None, reader_args, outcome), "reader", outcome)

    await asyncio.gather(writer(), reader())
    outcome.output = await committed(bootstrap, output_topic)
    outcome.open_exchange = await undecided_partitions(bootstrap, exchange_topic)
    outcome.open_output = await undecided_partitions(bootstrap, output_topic)
    return outcome


async def committed(bootstrap: str, topic: str) -> list[dict[str, object]]:
    return [json.loads(r.value) for r in await read_committed(bootstrap, topic, timeout=20.0) if r.value]


@pytest.mark.crash
@pytest.mark.timeout(300)
async def test_killed_writer_and_reader_of_an_exchange_give_exact_output(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    outcomes = await asyncio.gather(
        *(run_scenario(s, kafka_bootstrap, tmp_path / f"s{i}") for i, s in enumerate(SCENARIOS))
    )
    for outcome in outcomes:
        where = f"{outcome.scenario}:\n" + "\n".join(outcome.log)
        assert outcome.exits == {"writer": [CRASHED, 0], "reader": [CRASHED, 0]}, where
        records = exchange_job.inputs()
        ids = Counter(int(r["id"]) for r in outcome.output)  # type: ignore[call-overload]
        assert sorted(ids) == list(range(len(records))) and set(ids.values()) == {1}, where
        counts: dict[str, list[int]] = defaultdict(list)
        for row in outcome.output:
            counts[str(row["key"])].append(int(row["count"]))  # type: ignore[call-overload]
        expected = Counter(key for key, *_ in records)
        assert {k: sorted(c) for k, c in counts.items()} == {k: list(range(1, n + 1)) for k, n in expected.items()}
        assert all(row["types"] == ["Decimal", "tuple"] for row in outcome.output), where
        assert outcome.open_exchange == {} and outcome.open_output == {}, where
