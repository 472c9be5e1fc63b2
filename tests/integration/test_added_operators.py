"""A job resumed with a source, an operator and a sink it did not have before.

As in Flink, an operator without state in the checkpoint it restores from starts as on a
first run: the new source reads its input from the start (``restored_splits`` None),
the new CheckpointedFunction sees ``is_restored`` False and the new sink's writer gets
``restored_state`` None; the operators that were there continue from their state.
Resumed from a savepoint and from the job's own checkpoint directory, on real files.

The first job tails ``a.txt`` (a GeneratorSource whose position is a byte offset) into
``Seen`` (operator state: how many records it saw) and ``LinesSink("main")``. The second
job adds ``FileSource("b.txt")``, ``Stamp`` after ``Seen`` and ``LinesSink("new")``.
Every writer writes ``("open", restored_state, is_restored, restored count)`` first,
then every record as a tuple, one ``repr`` per line.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from streamflow import ProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.connectors import FileSource, GeneratorContext, GeneratorSource, SinkContext, SinkWriterBase
from streamflow.state import ListStateDescriptor


class TailLines:
    """Lines of a growing file; the position is the byte offset of the next line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def __call__(self, ctx: GeneratorContext, position: int | None) -> AsyncIterator[tuple[str, int]]:
        offset = position or 0
        while True:
            data = await asyncio.to_thread(self._read_from, offset)
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break  # a line still being written
                offset += len(line)
                yield line.decode().rstrip("\n"), offset
            await asyncio.sleep(0.01)

    def _read_from(self, offset: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read()


class Seen(ProcessFunction):
    """Emits ``(record, records seen by this operator so far, is_restored)``."""

    def initialize_state(self, ctx: Any) -> None:
        self.state = ctx.operator_state_store.get_list_state(ListStateDescriptor("seen"))
        self.count = sum(self.state.get())
        self.restored = ctx.is_restored

    def snapshot_state(self, ctx: Any) -> None:
        self.state.update([self.count])

    def process_element(self, value: str, ctx: Any, out: Any) -> None:
        self.count += 1
        out.collect((value, self.count, self.restored))


class Stamp(ProcessFunction):
    """Added in the second job: appends its own ``is_restored``."""

    def initialize_state(self, ctx: Any) -> None:
        self.restored = ctx.is_restored

    def snapshot_state(self, ctx: Any) -> None:
        return None

    def process_element(self, value: tuple[Any, ...], ctx: Any, out: Any) -> None:
        out.collect((*value, self.restored))


class LinesSink:
    def __init__(self, path: Path) -> None:
        self.path = path

    def create_writer(self, ctx: SinkContext) -> LinesWriter:
        return LinesWriter(self.path, ctx)


class LinesWriter(SinkWriterBase):
    """Appends a line per record at once (at-least-once); counts them in operator state."""

    def __init__(self, path: Path, ctx: SinkContext) -> None:
        self.path = path
        self.ctx = ctx
        self.count = 0
        self.file: TextIO | None = None

    async def open(self) -> None:
        self.file = self.path.open("a")

    def initialize_state(self, ctx: Any) -> None:
        self.written = ctx.operator_state_store.get_list_state(ListStateDescriptor("written"))
        restored = self.written.get()
        self.count = sum(restored)
        self._line(("open", self.ctx.restored_state, ctx.is_restored, restored))

    def snapshot_state(self, ctx: Any) -> None:
        self.written.update([self.count])

    async def write(self, records: list[Any]) -> None:
        for record in records:
            self.count += 1
            self._line(record)

    def _line(self, value: Any) -> None:
        assert self.file is not None
        self.file.write(f"{value!r}\n")
        self.file.flush()

    async def close(self) -> None:
        if self.file is not None:
            self.file.close()


def lines(path: Path) -> list[Any]:
    return [ast.literal_eval(line) for line in path.read_text().splitlines()] if path.exists() else []


def build(data: Path, out: Path, checkpoints: Path, *, grown: bool) -> StreamEnvironment:
    env = StreamEnvironment(parallelism=1)
    env.set_restart_strategy(RestartStrategy.none())
    env.enable_checkpointing(3600.0, directory=checkpoints)  # only the triggered ones
    stream = env.from_source(GeneratorSource(TailLines(data / "a.txt")), name="a").uid("src-a")
    if grown:
        stream = stream.union(env.from_source(FileSource(data / "b.txt"), name="b").uid("src-b"))
    seen = stream.process(Seen()).uid("seen")
    if grown:
        seen = seen.process(Stamp()).uid("stamp")
    seen.sink_to(LinesSink(out / "main.txt")).uid("out")
    if grown:
        seen.sink_to(LinesSink(out / "new.txt")).uid("out-new")
    return env


async def wait_for_lines(path: Path, count: int, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(lines(path)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{path.name}: {lines(path)}, wanted {count} lines"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a record read twice would show by now


@pytest.mark.parametrize("resume", ["savepoint", "checkpoint"])
async def test_a_source_an_operator_and_a_sink_added_since_start_as_on_a_first_run(tmp_path: Path, resume: str) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    (data / "a.txt").write_text("a1\na2\na3\n")
    (data / "b.txt").write_text("b1\nb2\n")

    first = build(data, out, tmp_path / "chk", grown=False).execute_async("grow")
    await wait_for_lines(out / "main.txt", 4)
    savepoint = None
    if resume == "savepoint":
        savepoint = await first.stop_with_savepoint(tmp_path / "savepoints")
        await first.wait()
    else:
        await first.trigger_checkpoint()
        await first.cancel()  # checkpoints are retained on cancel; the next run resumes from them
    assert lines(out / "main.txt") == [
        ("open", None, False, []), ("a1", 1, False), ("a2", 2, False), ("a3", 3, False),
    ]

    with (data / "a.txt").open("a") as f:
        f.write("a4\n")
    checkpoints = tmp_path / ("chk-2" if resume == "savepoint" else "chk")
    second = build(data, out, checkpoints, grown=True).execute_async("grow", from_savepoint=savepoint)
    await wait_for_lines(out / "new.txt", 4)
    await wait_for_lines(out / "main.txt", 8)
    await second.cancel()
    assert second.metrics()["checkpoints"]["restored_from"] is not None

    main, new = lines(out / "main.txt")[4:], lines(out / "new.txt")
    # the sink that was there: restored (its 2PC list empty, its own count 3); the new one fresh
    assert main[0] == ("open", [], True, [3])
    assert new[0] == ("open", None, False, [])
    # src-a goes on after a3; src-b (new) reads b.txt from its start; Seen counts on from 3
    # and knows it was restored; Stamp (new) does not
    assert sorted(main[1:]) == sorted(new[1:])
    assert sorted(r[0] for r in main[1:]) == ["a4", "b1", "b2"]
    assert sorted(r[1] for r in main[1:]) == [4, 5, 6]
    assert {r[2:] for r in main[1:]} == {(True, False)}
