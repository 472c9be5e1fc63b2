"""The shapes of user function a Flink user writes first, each run in a real job:
a CheckpointListener with only ``notify_checkpoint_complete``, a "rich" map function (a
plain object with ``open(ctx)``), state with a time to live, and ``async def build(env)``
for ``streamflow run``. README shows each of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streamflow import CheckpointListener, KeyedProcessFunction, StreamEnvironment
from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.cli import main
from streamflow.connectors import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.core.clock import ManualClock
from streamflow.state import StateTtlConfig, ValueStateDescriptor


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"user-functions::{request.node.name}"
    CollectSink.clear(name)
    yield name
    CollectSink.clear(name)


async def paced(x: int) -> int:
    await asyncio.sleep(0.002)  # the run spans several checkpoints
    return x


# -- CheckpointListener -----------------------------------------------------------------


class OnlyComplete:
    """Defines one hook and subclasses nothing."""

    heard: list[int] = []

    def __call__(self, value: int) -> int:
        return value

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        OnlyComplete.heard.append(checkpoint_id)


class SubclassOnlyComplete(CheckpointListener):
    heard: list[int] = []

    def __call__(self, value: int) -> int:
        return value

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        SubclassOnlyComplete.heard.append(checkpoint_id)


@pytest.mark.parametrize("listener", [OnlyComplete, SubclassOnlyComplete])
async def test_a_listener_with_only_notify_checkpoint_complete_is_called(
    listener: Any, out: str, tmp_path: Path
) -> None:
    listener.heard = []
    env = StreamEnvironment()
    env.enable_checkpointing(0.01, directory=tmp_path)
    env.set_source_batch_size(2)
    (env.from_source(CollectionSource(list(range(40)), batch_size=2)).uid("src")
        .map(paced).map(listener()).uid("listener").sink_to(CollectSink(out)))
    result = await env.execute("listener")
    completed = [h["id"] for h in result.metrics["checkpoints"]["history"] if h["status"] == "completed"]
    assert len(completed) >= 2 and listener.heard == completed


def test_the_checkpoint_listener_contract_is_flinks() -> None:
    assert isinstance(OnlyComplete(), CheckpointListener)  # detected by the method it defines
    assert not isinstance(paced, CheckpointListener)
    assert SubclassOnlyComplete().notify_checkpoint_aborted(3) is None  # the default hook

    class OnlyAborted(CheckpointListener):
        def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
            pass

    with pytest.raises(TypeError, match="notify_checkpoint_complete"):
        OnlyAborted()  # type: ignore[abstract]


# -- a "rich" map function ------------------------------------------------------------------


class Label:
    """Flink's RichMapFunction as a plain object: ``open(ctx)`` once per subtask (each
    subtask has its own copy), ``__call__`` per record, ``close()`` at the end; after
    ``key_by``, ``ctx.get_state`` gives keyed state."""

    closed: list[int] = []

    def open(self, ctx: Any) -> None:
        self.subtask = ctx.subtask_index
        self.seen = ctx.get_state(ValueStateDescriptor("seen", default=0))

    def __call__(self, word: str) -> tuple[str, int, int]:
        self.seen.update(self.seen.value() + 1)
        return word, self.seen.value(), self.subtask

    def close(self) -> None:
        Label.closed.append(self.subtask)


async def test_an_object_with_open_passed_to_map_works_like_a_rich_map_function(out: str) -> None:
    Label.closed = []
    env = StreamEnvironment(parallelism=2)
    words = ["a", "b", "a", "c", "a", "b"]
    env.from_source(CollectionSource(words)).key_by(lambda w: w).map(Label()).sink_to(CollectSink(out))
    await env.execute("rich-map")
    got = CollectSink.results(out)
    assert sorted((w, n) for w, n, _ in got) == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)]
    subtask_of = {w: s for w, _, s in got}
    assert all(s == subtask_of[w] for w, _, s in got)  # a key stays on its subtask, with its state
    assert sorted(Label.closed) == [0, 1]


# -- state with a time to live --------------------------------------------------------------

# The README's example: a user's click count lives 30 minutes after their last click.
CLICKS = ValueStateDescriptor("clicks", default=0, ttl=StateTtlConfig(ttl=timedelta(minutes=30)))


class ClicksPerSession(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.clicks = ctx.get_state(CLICKS)

    def process_element(self, click: dict[str, Any], ctx: Any, out: Any) -> None:
        self.clicks.update(self.clicks.value() + 1)
        out.collect((click["user"], self.clicks.value()))


class ClicksAt:
    """One click per poll, at its minute on the job's ManualClock, each only once the
    previous one reached the sink: the clock never runs ahead of the pipeline."""

    def __init__(self, clicks: list[tuple[float, str]], clock: ManualClock, sink: str) -> None:
        self.clicks, self.clock, self.sink = clicks, clock, sink

    def create_reader(self, ctx: SourceContext) -> ClicksAt:
        return self

    async def open(self) -> None:
        self.next = 0

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        if self.next == len(self.clicks):
            return None
        if len(CollectSink.results(self.sink)) < self.next:
            await asyncio.sleep(0.001)
            return SourceBatch([], [], "clicks")
        minute, user = self.clicks[self.next]
        self.clock.set(minute * 60.0)
        self.next += 1
        return SourceBatch([{"user": user}], [self.next - 1], "clicks")

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [self.next]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_ttl_state_forgets_a_user_30_minutes_after_the_last_click(out: str) -> None:
    clock = ManualClock()
    env = StreamEnvironment()
    env.set_clock(clock)
    clicks = [(0, "ann"), (10, "ann"), (35, "bob"), (39, "ann"), (60, "bob"), (70, "ann")]
    (env.from_source(ClicksAt(clicks, clock, out)).key_by(lambda c: c["user"])
        .process(ClicksPerSession()).sink_to(CollectSink(out)))
    await env.execute("ttl")
    # a count lives on while its user clicks within 30 minutes, and restarts after 30 quiet ones
    assert CollectSink.results(out) == [("ann", 1), ("ann", 2), ("bob", 1), ("ann", 3), ("bob", 2), ("ann", 1)]


# -- async def build(env) ---------------------------------------------------------------------

ASYNC_BUILD = '''
import asyncio
from streamflow.connectors import CollectionSource
from streamflow.connectors.debug import CollectSink

async def build(env):
    words = await asyncio.to_thread(lambda: ["x", "y"])  # e.g. load offsets or a schema first
    env.from_source(CollectionSource(words), name="words").uid("words").sink_to(CollectSink({sink!r})).uid("out")
'''


def test_streamflow_run_awaits_an_async_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "async_pipeline.py").write_text(ASYNC_BUILD.format(sink=out))
    assert main(["run", "async_pipeline:build", "--no-control"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["job"], summary["status"]) == ("async_pipeline", "finished")
    assert CollectSink.results(out) == ["x", "y"]
