"""What the event-time, window and join tests share: a scripted source, a punctuated
watermark generator, environments, the CollectSink names of a test and a counting
AggregateFunction.

``ScriptedSource`` gives each source subtask a script of ``(record, timestamp)`` pairs
(or none: a subtask without splits) and says what happens after it: a bounded script
ends the input, an unbounded one keeps the split open and sends nothing, so that only
idleness can release event time. ``every_record(bound)`` makes a watermark after every
batch (newest timestamp less ``bound`` and a microsecond), so with source batches of
one record the watermark a downstream operator sees is exact and the tests can tell
on-time from late records by hand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.api.connector import SourceBatch, SourceContext, SourceReaderBase
from streamflow.connectors.debug import CollectSink
from streamflow.eventtime import WatermarkGenerator, WatermarkOutput, WatermarkStrategy
from streamflow.eventtime.resolution import RESOLUTION
from streamflow.windowing import AggregateFunction

Script = Sequence[tuple[Any, float]]


class ScriptedSource:
    """``scripts[i]`` is what subtask i reads (None: it has no split at all)."""

    stateful = False

    def __init__(self, scripts: Sequence[Script | None], *, bounded: bool = True, pause: float = 0.0) -> None:
        self.scripts = list(scripts)
        self.bounded = bounded
        self.pause = pause  # seconds to wait before each batch (pacing)

    def create_reader(self, ctx: SourceContext) -> ScriptedReader:
        script = self.scripts[ctx.subtask_index] if ctx.subtask_index < len(self.scripts) else None
        return ScriptedReader(script, f"script-{ctx.subtask_index}", self.bounded, self.pause)


class ScriptedReader(SourceReaderBase):
    def __init__(self, script: Script | None, name: str, bounded: bool, pause: float) -> None:
        self.script = script
        self.name = name
        self.bounded = bounded
        self.pause = pause
        self.next = 0

    def active_splits(self) -> list[str]:
        if self.script is None or (self.bounded and self.next >= len(self.script)):
            return []
        return [self.name]

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        script = self.script
        if script is None or self.next >= len(script):
            if self.bounded:
                return None
            await asyncio.sleep(max_wait)
            return SourceBatch([], [], self.name)
        if self.pause:
            await asyncio.sleep(self.pause)
        start, stop = self.next, min(len(script), self.next + max_records)
        self.next = stop
        chunk = script[start:stop]
        return SourceBatch(
            [record for record, _ in chunk], list(range(start, stop)), self.name, timestamps=[ts for _, ts in chunk]
        )

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return []


class EveryRecord(WatermarkGenerator):
    """A punctuated generator: after each record, the newest timestamp less ``bound``."""

    def __init__(self, bound: float = 0.0) -> None:
        self.bound = bound
        self.newest = float("-inf")

    def on_event(self, event: Any, timestamp: float, output: WatermarkOutput) -> None:
        self.newest = max(self.newest, timestamp)
        output.emit_watermark(self.newest - self.bound - RESOLUTION)


def every_record(bound: float = 0.0) -> WatermarkStrategy:
    return WatermarkStrategy.for_generator(lambda: EveryRecord(bound))


def environment(parallelism: int = 1, *, chaining: bool = True, batch_size: int | None = None) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism)
    env.set_restart_strategy(RestartStrategy.none())
    if not chaining:
        env.disable_operator_chaining()
    if batch_size is not None:
        env.set_source_batch_size(batch_size)
    return env


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.02)


def collected(name: str) -> list[Any]:
    return CollectSink.results(name)


@contextmanager
def sink_names(name: str, *suffixes: str) -> Iterator[str]:
    """A test's CollectSink name: ``name``, and ``name + suffix`` for each of its other
    sinks (side outputs, dead letters), all empty when the test starts and cleared
    after it."""
    names = [name, *(name + suffix for suffix in suffixes)]
    for each in names:
        CollectSink.clear(each)
    try:
        yield name
    finally:
        for each in names:
            CollectSink.clear(each)


class Count(AggregateFunction[Any, int, int]):
    """Counts the elements of a window."""

    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b
