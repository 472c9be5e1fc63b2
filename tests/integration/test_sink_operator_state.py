"""Sink writers that keep operator state (Flink's BufferingSink), in one process.

The writer buffers records and flushes them to a real file per subtask when 5 are
buffered; the buffer is operator ListState through ``initialize_state`` /
``snapshot_state`` on the writer. The source is a GeneratorSource of 2 splits (13 and 12
records); on a first run each split then idles, so every checkpoint after the last record
holds the same buffers, 3 and 2 records. A restored split (its position at the end)
returns instead, the job ends, and ``finish`` flushes what is left. The killed-process
version of this test, with tuples in the buffer, is tests/crash/test_buffering_sink.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from streamflow import JobClient, RestartStrategy, StreamEnvironment
from streamflow.connectors import GeneratorContext, GeneratorSource, SinkContext, SinkWriterBase
from streamflow.core.faults import FaultInjector
from streamflow.state import ListStateDescriptor

faults = FaultInjector()  # the faults these tests arm; every job built here gets it

SPLITS = {"0": 13, "1": 12}
RECORDS = [int(split) * 100 + n for split, count in SPLITS.items() for n in range(count)]
THRESHOLD = 5


async def records(ctx: GeneratorContext, position: int | None) -> AsyncIterator[tuple[int, int]]:
    n = position or 0
    while n < SPLITS[ctx.split]:
        yield int(ctx.split) * 100 + n, n + 1
        n += 1
        await asyncio.sleep(0.001)
    if not ctx.restored:
        await asyncio.Event().wait()  # a first run idles: its checkpoints keep the buffers


class BufferingSink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create_writer(self, ctx: SinkContext) -> BufferingWriter:
        return BufferingWriter(self.directory / f"part-{ctx.subtask_index}.txt", ctx)


class BufferingWriter(SinkWriterBase):
    """Records what the runtime calls, in order, and what state it saw, on the class
    (each attempt makes new writers)."""

    calls: ClassVar[list[tuple[int, str]]] = []
    snapshots: ClassVar[dict[tuple[int, int], list[int]]] = {}  # (checkpoint, subtask) -> buffer
    restored: ClassVar[dict[int, tuple[Any, list[int]]]] = {}  # subtask -> (restored_state, buffer)

    def __init__(self, path: Path, ctx: SinkContext) -> None:
        self.path = path
        self.ctx = ctx
        self.buffer: list[int] = []

    def _call(self, what: str) -> None:
        BufferingWriter.calls.append((self.ctx.subtask_index, what))

    async def open(self) -> None:
        self._call("open")

    def initialize_state(self, ctx: Any) -> None:
        self._call("initialize_state")
        self.state = ctx.operator_state_store.get_list_state(ListStateDescriptor("buffered-elements"))
        if ctx.is_restored:
            self.buffer = self.state.get()
            BufferingWriter.restored[self.ctx.subtask_index] = (self.ctx.restored_state, list(self.buffer))

    async def write(self, records: list[Any]) -> None:
        self.buffer.extend(records)
        if len(self.buffer) >= THRESHOLD:
            await self._flush()

    async def _flush(self) -> None:
        lines = "".join(f"{r}\n" for r in self.buffer)
        await asyncio.to_thread(self._append, lines)
        self.buffer = []

    def _append(self, lines: str) -> None:
        with self.path.open("a") as f:
            f.write(lines)

    async def snapshot(self, checkpoint_id: int) -> list[Any]:
        self._call("snapshot")
        return []

    def snapshot_state(self, ctx: Any) -> None:
        self._call("snapshot_state")
        self.state.update(self.buffer)
        BufferingWriter.snapshots[(ctx.checkpoint_id, self.ctx.subtask_index)] = list(self.buffer)

    async def finish(self) -> None:
        await self._flush()


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    BufferingWriter.calls, BufferingWriter.snapshots, BufferingWriter.restored = [], {}, {}
    faults.disarm()
    yield
    faults.disarm()


def build(out: Path, checkpoints: Path, parallelism: int) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=parallelism).set_fault_injector(faults)
    env.enable_checkpointing(0.05, directory=checkpoints)
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=2, delay=0))
    (
        env.from_source(GeneratorSource(records, splits=list(SPLITS))).uid("records").set_parallelism(2)
        .sink_to(BufferingSink(out)).uid("buffering")  # forward (chained) at parallelism 2, else rebalance
    )
    return env


def flushed(out: Path) -> Counter[int]:
    return Counter(int(line) for p in out.glob("part-*.txt") for line in p.read_text().splitlines())


async def wait_for_final_buffers(client: JobClient, timeout: float = 15.0) -> int:
    """The id of a completed checkpoint taken after every record reached the sink."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        operators = client.metrics()["operators"]
        received = sum(m.get("records_in", 0) for name, m in operators.items() if name.startswith("buffering"))
        if received == len(RECORDS):
            return await client.trigger_checkpoint()
        assert asyncio.get_running_loop().time() < deadline, f"the sink got {received} of {len(RECORDS)} records"
        await asyncio.sleep(0.02)


async def test_the_writers_buffer_is_restored_after_a_failure_and_nothing_is_lost(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    client = build(out, tmp_path / "chk", 2).execute_async("buffering")
    await wait_for_final_buffers(client)
    faults.arm("after_commit", 1, action="raise")  # the next committed checkpoint fails the attempt
    result = await client.wait()

    assert result.attempts == 2 and result.restored_from is not None
    saved = {s: b for (n, s), b in BufferingWriter.snapshots.items() if n == result.restored_from}
    assert saved == {0: [10, 11, 12], 1: [110, 111]}  # 13 and 12 records, flushed by 5
    # restored exactly as saved; the writer's own snapshot() list (none here) comes as []
    assert BufferingWriter.restored == {s: ([], buffer) for s, buffer in saved.items()}
    # flushed once each: nothing reached the sink after the restored checkpoint
    assert flushed(out) == Counter(RECORDS)
    # initialize_state after open; at a barrier snapshot() first, then snapshot_state()
    for subtask in (0, 1):
        calls = [what for s, what in BufferingWriter.calls if s == subtask]
        assert calls[:2] == ["open", "initialize_state"]
        steps = [w for w in calls if w.startswith("snapshot")]
        assert steps == ["snapshot", "snapshot_state"] * (len(steps) // 2) and steps


async def test_the_writers_buffer_is_dealt_over_the_subtasks_of_a_rescaled_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    client = build(out, tmp_path / "chk", 2).execute_async("buffering")
    await wait_for_final_buffers(client)
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoints")
    await client.wait()
    assert sorted(flushed(out)) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109]

    result = await build(out, tmp_path / "chk-3", 3).execute("buffering", from_savepoint=savepoint)
    assert result.attempts == 1
    # split mode: the old buffers, concatenated, dealt round robin over the 3 new subtasks
    assert {s: buffer for s, (_, buffer) in BufferingWriter.restored.items()} == {
        0: [10, 110], 1: [11, 111], 2: [12],
    }
    assert flushed(out) == Counter(RECORDS)  # the rest flushed at the end, once
