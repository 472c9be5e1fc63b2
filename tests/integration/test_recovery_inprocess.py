"""Failures inside one process: restart strategies, error policies, checkpoint aborts,
and restoring past a damaged checkpoint (without an exactly-once sink: see
test_damaged_checkpoint_rollback for the refusal with one).

Failures are injected with ``faults.arm(point, n, action="raise")`` on the injector
every job of this module gets (``env.set_fault_injector``): the armed point raises once, the attempt fails, and the restart strategy decides. CollectSink is
at-least-once, so after a restore the records since the restored checkpoint are written
again: the checks compare the set of outputs and the final value per key (a keyed
running count, whose last value per key is the total), never the raw multiset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamflow import (
    ErrorPolicy,
    JobFailedError,
    KeyedProcessFunction,
    RestartStrategy,
    StreamEnvironment,
    UserFunctionError,
)
from streamflow.api.connector import SinkWriterBase
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.core.faults import FaultInjector, InjectedFault
from streamflow.errors import TooManyCheckpointFailuresError
from streamflow.state import ValueStateDescriptor

faults = FaultInjector()  # the faults these tests arm; every job built here gets it

KEYS = [f"k{i}" for i in range(5)]
ITEMS = [(i, KEYS[i % 5]) for i in range(200)]
TOTALS = {k: 40 for k in KEYS}
EXPECTED = {(k, n) for k in KEYS for n in range(1, 41)}


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"recovery::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


class RunningCount(KeyedProcessFunction):
    """Emits (key, number of records of this key so far), from keyed ValueState."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect((ctx.get_current_key(), n))


async def paced(record: tuple[int, str]) -> tuple[int, str]:
    """Slows the input a little so periodic checkpoints complete while it flows."""
    if record[0] % 4 == 0:
        await asyncio.sleep(0.002)
    return record


def counting_job(
    directory: Path, out: str, *, parallelism: int = 1, restart: RestartStrategy, **checkpoint: Any
) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism).set_fault_injector(faults)
    env.enable_checkpointing(checkpoint.pop("interval", 0.01), directory=directory, **checkpoint)
    env.set_restart_strategy(restart)
    env.set_source_batch_size(4)
    env.set_channel_capacity(2)
    (
        env.from_source(CollectionSource(ITEMS, batch_size=4)).uid("src")
        .map(paced).uid("paced")
        .key_by(lambda r: r[1])
        .process(RunningCount()).uid("count")
        .sink_to(CollectSink(out)).uid("sink")
    )
    return env


def final_per_key(outputs: list[tuple[str, int]]) -> dict[str, int]:
    final: dict[str, int] = {}
    for key, n in outputs:
        final[key] = max(final.get(key, 0), n)
    return final


def complete_checkpoints(directory: Path) -> list[int]:
    return sorted(int(p.name[4:]) for p in directory.glob("chk-*") if (p / "_metadata").is_file())


# -- restart from the latest checkpoint ------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 2])
async def test_restart_restores_the_latest_checkpoint_and_matches_a_failure_free_run(
    parallelism: int, out: str, tmp_path: Path
) -> None:
    reference = await counting_job(
        tmp_path / "reference", out, parallelism=parallelism, restart=RestartStrategy.none()
    ).execute("reference")
    assert reference.attempts == 1
    expected = CollectSink.results(out)
    assert sorted(expected) == sorted(EXPECTED)  # failure free: each count exactly once
    CollectSink.clear(out)

    faults.arm("records", 120, action="raise")
    env = counting_job(
        tmp_path / "faulty", out, parallelism=parallelism, restart=RestartStrategy.fixed_delay(attempts=2, delay=0)
    )
    result = await env.execute("faulty")

    assert result.attempts == 2
    assert result.restored_from is not None and result.restored_from >= 1
    got = CollectSink.results(out)
    assert final_per_key(got) == final_per_key(expected) == TOTALS
    assert set(got) == set(expected)  # replays repeat outputs, never invent or lose one
    assert result.metrics["failures"] and "InjectedFault" in result.metrics["failures"][0]


@pytest.mark.parametrize(
    ("point", "at"),
    [
        ("after_barrier", 3),
        ("after_pre_commit", 3),
        ("metadata_write", 3),
        ("after_completion", 3),
        ("after_commit", 3),
    ],
)
async def test_failure_at_each_checkpoint_step_recovers_exact_state(
    point: str, at: int, out: str, tmp_path: Path
) -> None:
    faults.arm(point, at, action="raise")
    result = await counting_job(tmp_path, out, restart=RestartStrategy.fixed_delay(attempts=2, delay=0)).execute(
        "points"
    )
    assert result.attempts == 2
    got = CollectSink.results(out)
    assert final_per_key(got) == TOTALS
    assert set(got) == EXPECTED
    if point == "metadata_write":
        assert result.restored_from is not None and result.restored_from < at  # n never completed


class TwoSourceCount(RunningCount):
    pass


async def _two_sources_job(directory: Path, out: str, restart: RestartStrategy) -> Any:
    async def slow(record: tuple[int, str]) -> tuple[int, str]:
        await asyncio.sleep(0.002)
        return record

    env = StreamEnvironment(parallelism=2).set_fault_injector(faults)
    env.enable_checkpointing(0.01, directory=directory)
    env.set_restart_strategy(restart)
    env.set_channel_capacity(2)
    a = env.from_source(CollectionSource([(i, f"a{i % 3}") for i in range(300)], batch_size=5)).uid("a")
    b = env.from_source(CollectionSource([(i, f"b{i % 3}") for i in range(90)], batch_size=2)).uid("b")
    (
        a.union(b.map(slow).uid("slow"))
        .key_by(lambda r: r[1])
        .process(TwoSourceCount()).uid("count")
        .sink_to(CollectSink(out)).uid("sink")
    )
    return await env.execute("two-sources")


async def test_aligned_two_input_job_after_a_crash_equals_a_failure_free_run(out: str, tmp_path: Path) -> None:
    await _two_sources_job(tmp_path / "reference", out, RestartStrategy.none())
    reference = CollectSink.results(out)
    assert len(reference) == len(set(reference)) == 390
    CollectSink.clear(out)

    faults.arm("records", 350, action="raise")  # the fast source is done; the slow one is not
    result = await _two_sources_job(tmp_path / "faulty", out, RestartStrategy.fixed_delay(attempts=2, delay=0))
    assert result.attempts == 2
    assert result.restored_from is not None
    got = CollectSink.results(out)
    assert final_per_key(got) == final_per_key(reference)
    assert set(got) == set(reference)


# -- restart strategies ------------------------------------------------------------------


async def test_restart_none_fails_the_job_with_the_cause(out: str, tmp_path: Path) -> None:
    faults.arm("records", 50, action="raise")
    env = counting_job(tmp_path, out, restart=RestartStrategy.none())
    with pytest.raises(JobFailedError, match=r"failed in attempt 1 and the restart strategy gave up: InjectedFault") as info:
        await env.execute("no-restart")
    assert isinstance(info.value.__cause__, InjectedFault)
    assert info.value.attempt == 1


def _always_failing_job(out: str, restart: RestartStrategy) -> StreamEnvironment:
    def explode(x: int) -> int:
        if x == 3:
            raise RuntimeError("record 3 is cursed")
        return x

    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(restart)
    env.from_source(CollectionSource(list(range(10)))).uid("src").map(explode).uid("explode").sink_to(CollectSink(out))
    return env


async def test_fixed_delay_gives_up_after_its_attempts(out: str) -> None:
    env = _always_failing_job(out, RestartStrategy.fixed_delay(attempts=2, delay=0))
    with pytest.raises(JobFailedError, match=r"failed in attempt 3 and the restart strategy gave up") as info:
        await env.execute("fixed-delay")
    assert isinstance(info.value.__cause__, UserFunctionError)


async def test_exponential_delay_waits_longer_after_each_failure_then_gives_up(
    out: str, caplog: pytest.LogCaptureFixture
) -> None:
    strategy = RestartStrategy.exponential_delay(0.05, multiplier=2.0, jitter=0.0, attempts=3)
    env = _always_failing_job(out, strategy)
    with caplog.at_level(logging.WARNING, logger="streamflow.job"):
        with pytest.raises(JobFailedError, match=r"failed in attempt 4 and the restart strategy gave up") as info:
            await env.execute("exponential")
    assert isinstance(info.value.__cause__, UserFunctionError)
    assert "(restart strategy: exponential delay 0.05s x2 up to 60s" in str(info.value)
    waits = [r.getMessage().rsplit("restarting in ", 1)[1].split("s ", 1)[0]
             for r in caplog.records if "restarting in" in r.getMessage()]
    assert waits == ["0.05", "0.10", "0.20"]


async def test_failure_rate_restarts_within_its_budget(out: str, tmp_path: Path) -> None:
    faults.arm("records", 100, action="raise")
    env = counting_job(
        tmp_path, out, restart=RestartStrategy.failure_rate(max_failures=1, interval=60, delay=0)
    )
    result = await env.execute("failure-rate-ok")
    assert result.attempts == 2
    assert final_per_key(CollectSink.results(out)) == TOTALS


async def test_failure_rate_gives_up_past_max_failures_in_the_interval(out: str) -> None:
    env = _always_failing_job(out, RestartStrategy.failure_rate(max_failures=2, interval=60, delay=0))
    with pytest.raises(JobFailedError, match=r"failed in attempt 3 and the restart strategy gave up") as info:
        await env.execute("failure-rate")
    assert isinstance(info.value.__cause__, UserFunctionError)


# -- error policies ------------------------------------------------------------------------

LINES = ["1", "2", "3", "oops", "5", "six"]


def parse_job(out: str, policy: ErrorPolicy | None = None) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    parsed = env.from_source(CollectionSource(LINES)).uid("src").map(int).uid("parse")
    if policy is not None:
        parsed.with_error_policy(policy)
    parsed.sink_to(CollectSink(out))
    return env


async def test_default_policy_fails_naming_operator_subtask_and_position(out: str) -> None:
    env = parse_job(out)
    with pytest.raises(
        JobFailedError,
        match=r"UserFunctionError: operator 'parse' \(subtask 0\) failed on record 'oops' "
        r"at src\[0\] collection\[0:6\] @ 3: ValueError",
    ) as info:
        await env.execute("parse-fail")
    cause = info.value.__cause__
    assert isinstance(cause, UserFunctionError)
    assert (cause.operator, cause.subtask, cause.position, cause.record) == (
        "parse", 0, "src[0] collection[0:6] @ 3", "'oops'"
    )
    assert isinstance(cause.__cause__, ValueError)


async def test_skip_policy_counts_skipped_records_and_processes_the_rest(out: str) -> None:
    client = parse_job(out, ErrorPolicy.skip()).execute_async("parse-skip")
    result = await client.wait()
    assert sorted(CollectSink.results(out)) == [1, 2, 3, 5]
    assert result.metrics["operators"]["parse[0]"]["records_skipped"] == 2
    assert result.metrics["operators"]["parse[0]"]["records_out"] == 4
    assert client.metrics()["operators"]["parse[0]"]["records_skipped"] == 2


async def test_skip_policy_fails_on_exceptions_it_does_not_name(out: str) -> None:
    env = parse_job(out, ErrorPolicy.skip(on=(TypeError,)))
    with pytest.raises(JobFailedError, match=r"failed on record 'oops'") as info:
        await env.execute("parse-skip-typeerror")
    assert isinstance(info.value.__cause__, UserFunctionError)


async def test_dead_letter_policy_routes_bad_records_with_error_and_position(out: str) -> None:
    dlq = f"{out}::dlq"
    CollectSink.clear(dlq)
    try:
        result = await parse_job(out, ErrorPolicy.dead_letter(CollectSink(dlq))).execute("parse-dlq")
        assert sorted(CollectSink.results(out)) == [1, 2, 3, 5]
        dead = sorted(CollectSink.results(dlq), key=lambda d: d["record"])
    finally:
        CollectSink.clear(dlq)
    assert dead == [
        {
            "operator": "parse",
            "subtask": 0,
            "position": "src[0] collection[0:6] @ 3",
            "error": "ValueError: invalid literal for int() with base 10: 'oops'",
            "record": "oops",
        },
        {
            "operator": "parse",
            "subtask": 0,
            "position": "src[0] collection[0:6] @ 5",
            "error": "ValueError: invalid literal for int() with base 10: 'six'",
            "record": "six",
        },
    ]
    assert result.metrics["operators"]["parse[0]"]["records_dead_lettered"] == 2


# -- checkpoint timeouts -------------------------------------------------------------------


class SlowSnapshotSink:
    """A collecting sink whose first ``slow_snapshots`` snapshots take 0.2 s each."""

    slow_snapshots = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def create_writer(self, ctx: Any) -> Any:
        return _SlowSnapshotWriter(CollectSink(self.name).create_writer(ctx))


class _SlowSnapshotWriter(SinkWriterBase):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def write(self, records: list[Any]) -> None:
        await self.inner.write(records)

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        if SlowSnapshotSink.slow_snapshots > 0:
            SlowSnapshotSink.slow_snapshots -= 1
            await asyncio.sleep(0.2)
        return []


def slow_snapshot_job(directory: Path, out: str, tolerable_failures: int) -> StreamEnvironment:
    async def slow(x: int) -> int:
        await asyncio.sleep(0.002)
        return x

    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    env.enable_checkpointing(0.01, directory=directory, timeout=0.05, tolerable_failures=tolerable_failures)
    (
        env.from_source(CollectionSource(list(range(40)), batch_size=2)).uid("src")
        .map(slow)
        .sink_to(SlowSnapshotSink(out)).uid("slow-sink")
    )
    return env


async def test_timed_out_checkpoint_is_aborted_and_removed_and_the_job_finishes(
    out: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SlowSnapshotSink.slow_snapshots = 1
    with caplog.at_level(logging.WARNING, logger="streamflow.checkpoint"):
        result = await slow_snapshot_job(tmp_path, out, tolerable_failures=100).execute("timeout")
    assert sorted(CollectSink.results(out)) == list(range(40))
    history = result.metrics["checkpoints"]["history"]
    aborted = [h for h in history if h["status"] == "aborted"]
    assert aborted
    assert all("timed out" in h["reason"] for h in aborted)
    assert result.metrics["checkpoints"]["failed"] == len(aborted)
    for h in aborted:
        assert not (tmp_path / f"chk-{h['id']}").exists()
    assert history[-1]["status"] == "completed" and history[-1]["final"]
    assert any("aborted: timed out" in r.getMessage() for r in caplog.records)


async def test_timed_out_checkpoint_fails_the_job_without_tolerance(out: str, tmp_path: Path) -> None:
    SlowSnapshotSink.slow_snapshots = 1
    with pytest.raises(JobFailedError, match="TooManyCheckpointFailuresError") as info:
        await slow_snapshot_job(tmp_path, out, tolerable_failures=0).execute("timeout-fails")
    cause = info.value.__cause__
    assert isinstance(cause, TooManyCheckpointFailuresError)
    assert "timed out" in str(cause)


# -- a damaged checkpoint ------------------------------------------------------------------


async def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(
    out: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults.arm("records", 160, action="raise")
    with pytest.raises(JobFailedError, match="InjectedFault"):
        await counting_job(tmp_path, out, restart=RestartStrategy.none(), retained=3).execute("damaged")
    first_run = CollectSink.results(out)
    faults.disarm()

    complete = complete_checkpoints(tmp_path)
    assert len(complete) >= 2, complete
    newest, previous = complete[-1], complete[-2]
    state_file = tmp_path / f"chk-{newest}" / "count-0"
    data = bytearray(state_file.read_bytes())
    data[-2] ^= 0xFF  # one flipped byte in the payload
    state_file.write_bytes(bytes(data))

    CollectSink.clear(out)
    with caplog.at_level(logging.WARNING, logger="streamflow.checkpoint.rollback"):
        result = await counting_job(tmp_path, out, restart=RestartStrategy.none(), retained=3).execute("damaged")

    assert result.restored_from == previous
    # CollectSink is at-least-once: the rollback needs no permission, only a WARNING
    [said] = [r for r in caplog.records if r.name == "streamflow.checkpoint.rollback"]
    assert said.levelno == logging.WARNING
    assert f"falling back to checkpoint {previous} past damaged completed checkpoint(s) {newest}" in said.getMessage()
    assert f"checkpoint {newest} is damaged" in said.getMessage()
    assert "the job has no exactly-once sink" in said.getMessage()
    second_run = CollectSink.results(out)
    assert final_per_key(second_run) == TOTALS
    assert set(second_run) <= EXPECTED
    assert set(first_run) | set(second_run) == EXPECTED
    # the second run resumed from the previous checkpoint: it did not start from scratch
    assert ("k0", 1) not in second_run
