"""What a SourceTask does with the optional parts of a SourceBatch and SourceContext:
watermarks a reader reports, records it could not decode (the source's error policy),
and the split states of every old subtask on restore.

A scripted in-process source stands in for a real one: each poll returns the next
scripted batch, then ``None``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from streamflow import ErrorPolicy, JobFailedError, ProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.api.connector import RecordFailure, SourceBatch, SourceContext
from streamflow.connectors.debug import CollectSink
from streamflow.errors import DeserializationError


@dataclass(frozen=True)
class ScriptedSource:
    """Every subtask plays ``script`` (a list of SourceBatch) and records its context."""

    script: list[SourceBatch]
    contexts: ClassVar[list[SourceContext]] = []

    def create_reader(self, ctx: SourceContext) -> ScriptedReader:
        ScriptedSource.contexts.append(ctx)
        return ScriptedReader(list(self.script), ctx.subtask_index)


@dataclass
class ScriptedReader:
    script: list[SourceBatch]
    subtask: int
    polled: int = field(default=0)

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        if not self.script:
            return None
        self.polled += 1
        return self.script.pop(0)

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [{"subtask": self.subtask, "polled": self.polled}]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


class SeenWatermark(ProcessFunction):
    """Emits (record, the watermark the operator had when the record arrived)."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.current_watermark()))


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"source-ext::{request.node.name}"
    CollectSink.clear(name)
    ScriptedSource.contexts.clear()
    yield name
    CollectSink.clear(name)
    ScriptedSource.contexts.clear()


def env1() -> StreamEnvironment:
    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    return env


async def test_reader_watermarks_reach_downstream_operators_after_the_batch_and_never_go_back(out: str) -> None:
    script = [
        SourceBatch(["a"], [0], "s", watermark=10.0),
        SourceBatch(["b"], [1], "s", watermark=5.0),  # lower: ignored
        SourceBatch([], [], "s", watermark=20.0),  # an empty batch may carry one
        SourceBatch(["c"], [2], "s"),
    ]
    env = env1()
    env.from_source(ScriptedSource(script)).uid("src").process(SeenWatermark()).uid("p").sink_to(CollectSink(out))
    await env.execute("watermarks")
    assert CollectSink.results(out) == [("a", float("-inf")), ("b", 10.0), ("c", 20.0)]


def bad(position: int) -> RecordFailure:
    return RecordFailure(position=position, record=b"\xff" * position, error=ValueError("not json"))


SCRIPT_WITH_FAILURES = [
    SourceBatch(["a"], [0], "t-0", failures=[bad(1)]),
    SourceBatch(["c"], [2], "t-0", failures=[bad(3), bad(4)]),
]


async def test_failure_under_the_default_policy_fails_the_job_naming_source_split_and_position(out: str) -> None:
    env = env1()
    env.from_source(ScriptedSource(SCRIPT_WITH_FAILURES)).uid("src").sink_to(CollectSink(out))
    with pytest.raises(JobFailedError) as failed:
        await env.execute("fail")
    cause = failed.value.__cause__
    assert isinstance(cause, DeserializationError)
    assert cause.operator == "src" and cause.position == "src[0] t-0 @ 1"
    assert "could not deserialize the record at src[0] t-0 @ 1: ValueError: not json" in str(cause)
    assert "with_error_policy(ErrorPolicy.skip())" in str(cause)


async def test_skip_policy_drops_undecodable_records_and_counts_them(out: str) -> None:
    env = env1()
    (
        env.from_source(ScriptedSource(SCRIPT_WITH_FAILURES)).uid("src").with_error_policy(ErrorPolicy.skip())
        .sink_to(CollectSink(out))
    )
    result = await env.execute("skip")
    assert CollectSink.results(out) == ["a", "c"]
    assert result.metrics["operators"]["src[0]"]["records_skipped"] == 3


async def test_skip_policy_limited_to_other_error_types_still_fails(out: str) -> None:
    env = env1()
    (
        env.from_source(ScriptedSource(SCRIPT_WITH_FAILURES)).uid("src")
        .with_error_policy(ErrorPolicy.skip(on=(KeyError,)))
        .sink_to(CollectSink(out))
    )
    with pytest.raises(JobFailedError, match="could not deserialize"):
        await env.execute("skip-other")


async def test_dead_letter_policy_sends_the_raw_record_with_error_and_position(out: str) -> None:
    dead = f"{out}-dead"
    CollectSink.clear(dead)
    env = env1()
    (
        env.from_source(ScriptedSource(SCRIPT_WITH_FAILURES)).uid("src")
        .with_error_policy(ErrorPolicy.dead_letter(CollectSink(dead)))
        .sink_to(CollectSink(out))
    )
    result = await env.execute("dead-letter")
    assert CollectSink.results(out) == ["a", "c"]
    assert CollectSink.results(dead) == [
        {"operator": "src", "subtask": 0, "position": f"src[0] t-0 @ {n}", "error": "ValueError: not json",
         "record": b"\xff" * n}
        for n in (1, 3, 4)
    ]
    assert result.metrics["operators"]["src[0]"]["records_dead_lettered"] == 3
    CollectSink.clear(dead)


async def test_error_policy_on_a_sink_is_still_rejected() -> None:
    from streamflow.errors import ConfigError

    env = env1()
    stream = env.from_source(ScriptedSource([])).uid("src").sink_to(CollectSink("never"))
    with pytest.raises(ConfigError, match="not to sink"):
        stream.with_error_policy(ErrorPolicy.skip())


async def test_restored_reader_gets_its_share_and_the_splits_of_every_old_subtask(out: str, tmp_path: Path) -> None:
    def job(parallelism: int) -> StreamEnvironment:
        env = StreamEnvironment(parallelism=parallelism)
        env.set_restart_strategy(RestartStrategy.none())
        env.enable_checkpointing(3600.0, directory=tmp_path)
        env.from_source(ScriptedSource([SourceBatch(["x"], [0], "s")])).uid("src").sink_to(CollectSink(out))
        return env

    await job(2).execute("restore")  # the final checkpoint stores one split per subtask
    fresh = [(c.restored_splits, c.all_restored_splits) for c in ScriptedSource.contexts]
    assert fresh == [(None, None), (None, None)]
    ScriptedSource.contexts.clear()

    await job(3).execute("restore")
    old = [{"subtask": 0, "polled": 1}, {"subtask": 1, "polled": 1}]
    by_subtask = {c.subtask_index: c for c in ScriptedSource.contexts}
    assert [by_subtask[i].all_restored_splits for i in range(3)] == [old, old, old]
    assert [by_subtask[i].restored_splits for i in range(3)] == [[old[0]], [old[1]], []]


async def test_a_source_added_since_the_checkpoint_starts_fresh_and_an_old_one_stays_restored(
    out: str, tmp_path: Path
) -> None:
    """A uid the checkpoint lacks reads as on a first run (restored_splits None), while a
    restored source that owns nothing now still gets empty lists, not None."""

    def job(sources: list[str]) -> StreamEnvironment:
        env = StreamEnvironment(parallelism=2)
        env.set_restart_strategy(RestartStrategy.none())
        env.enable_checkpointing(3600.0, directory=tmp_path)
        streams = [
            env.from_source(ScriptedSource([SourceBatch([uid], [0], "s")])).uid(uid).set_parallelism(1)
            for uid in sources
        ]
        streams[0].union(*streams[1:]).sink_to(CollectSink(out))
        return env

    await job(["old"]).execute("added")
    ScriptedSource.contexts.clear()
    await job(["old", "new"]).execute("added")
    contexts = {c.operator_uid: (c.restored_splits, c.all_restored_splits) for c in ScriptedSource.contexts}
    old = [{"subtask": 0, "polled": 1}]
    assert contexts == {"old": (old, old), "new": (None, None)}
    assert sorted(CollectSink.results(out)) == ["new", "old", "old"]  # the scripted reader replays its script
