"""Jobs for the savepoint tests: a replayable source that never ends, a keyed count.

:class:`EndlessSource` emits its items, then only idle polls (never end of input), so a
job is still running when a savepoint is taken, and a job given more items continues
exactly where a savepoint left off. :class:`Count` counts per key in ValueState and emits
``(word, count)``, which shows whether state was restored.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streamflow import KeyedProcessFunction, StreamEnvironment
from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.state import ValueStateDescriptor

FIRST = ["hello", "flink", "hello", "state"]
MORE = ["hello", "world", "flink"]


class EndlessSource:
    """``items`` in order, two per poll, then empty polls forever (never end of input).
    Split state: the index of the next item. Parallelism 1."""

    def __init__(self, items: list[str]) -> None:
        self.items = items

    def create_reader(self, ctx: SourceContext) -> EndlessReader:
        start = ctx.restored_splits[0]["next"] if ctx.restored_splits else 0
        return EndlessReader(self.items, start)


class EndlessReader:
    def __init__(self, items: list[str], start: int) -> None:
        self.items = items
        self.next = start

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch:
        if self.next >= len(self.items):
            await asyncio.sleep(min(max_wait, 0.01))
            return SourceBatch([], [], "endless")
        first = self.next
        records = self.items[first : first + 2]
        self.next += len(records)
        return SourceBatch(records, list(range(first, self.next)), "endless")

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [{"next": self.next}]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


class Count(KeyedProcessFunction):
    def __init__(self, descriptor: Any = None) -> None:
        self.descriptor = descriptor or ValueStateDescriptor("count", default=0)

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(self.descriptor)

    def process_element(self, word: str, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)
        out.collect((word, self.count.value()))


def job(
    items: list[str],
    directory: Path,
    sink: Any,
    *,
    parallelism: int = 2,
    count_uid: str = "count",
    count: Count | None = None,
    retained: int = 2,
) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(30.0, directory=directory, retained=retained)  # savepoints only, unless triggered
    (
        env.from_source(EndlessSource(items), name="words").uid("words").set_parallelism(1)
        .key_by(lambda word: word)
        .process(count or Count()).uid(count_uid)
        .sink_to(sink).uid("out")
    )
    return env


async def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def final_counts(outputs: list[tuple[str, int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word, n in outputs:
        counts[word] = max(counts.get(word, 0), n)
    return counts
