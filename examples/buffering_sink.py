"""Flink's BufferingSink: a sink whose buffer is operator ListState, killed with SIGKILL and restored.

What it shows:
- a sink writer that keeps operator state: ``initialize_state`` registers a ListState of
  ``(name, count)`` tuples and restores the buffer from it, ``snapshot_state`` copies the
  buffer into it at every checkpoint; the writer flushes to a file every 5 elements;
- a real crash: the job runs as a process and is killed with SIGKILL once a checkpoint
  that holds buffered elements has completed; a new process on the same checkpoint
  directory restores that checkpoint, and the writer gets its buffer back, equal and of
  the same types (tuples stay tuples), then ends and flushes it;
- the check: the restored buffers equal the buffers saved in the checkpoint restored from,
  ``repr`` for ``repr``, and the flushed file holds every element once.

Elements flushed between a checkpoint and a crash would be flushed again after the
restore: this sink is at-least-once in general. Here no element arrives after the
checkpoint the job is killed behind (the feed is idle by then), so every element is
flushed exactly once, which the check relies on.

Run it: ``python examples/buffering_sink.py [--out DIR]`` (prints ``CHECK OK``). One job
process alone: ``python examples/buffering_sink.py job --out DIR``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.connectors import GeneratorContext, GeneratorSource, SinkContext, SinkWriterBase
from streamflow.state import ListStateDescriptor

THRESHOLD = 5
FEEDS = {"0": ("alice", "bob", "carol"), "1": ("dave", "erin")}
PER_FEED = {"0": 13, "1": 12}  # 3 and 2 elements stay buffered after the flushes at 5


class BufferingSink:
    """Buffers ``(name, count)`` elements and flushes them to ``<out>/part-<subtask>.txt``
    when ``THRESHOLD`` are buffered. ``<out>/state-log.jsonl`` records each saved and
    restored buffer (``repr``) and each completed checkpoint, for the check."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def create_writer(self, ctx: SinkContext) -> BufferingWriter:
        return BufferingWriter(self.out, ctx.subtask_index)


class BufferingWriter(SinkWriterBase):
    def __init__(self, out: Path, subtask: int) -> None:
        self.part = out / f"part-{subtask}.txt"
        self.log = out / "state-log.jsonl"
        self.subtask = subtask
        self.buffer: list[tuple[str, int]] = []

    def initialize_state(self, ctx: Any) -> None:
        """After open, on every (re)start: the buffer comes back from operator state."""
        self.state = ctx.operator_state_store.get_list_state(ListStateDescriptor("buffered-elements"))
        if ctx.is_restored:
            self.buffer = self.state.get()
            self._log(event="restored", buffer=repr(self.buffer))

    def snapshot_state(self, ctx: Any) -> None:
        """At every checkpoint: what is buffered goes into the checkpoint."""
        self.state.update(self.buffer)
        self._log(event="saved", checkpoint=ctx.checkpoint_id, buffer=repr(self.buffer))

    async def write(self, records: list[Any]) -> None:
        self.buffer.extend(records)
        if len(self.buffer) >= THRESHOLD:
            await self._flush()

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self._log(event="completed", checkpoint=checkpoint_id)

    async def finish(self) -> None:
        await self._flush()

    async def _flush(self) -> None:
        lines = "".join(f"{element!r}\n" for element in self.buffer)
        await asyncio.to_thread(_append, self.part, lines)
        self.buffer = []

    def _log(self, **entry: Any) -> None:
        _append(self.log, json.dumps({"subtask": self.subtask, **entry}) + "\n")


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)
        f.flush()


async def feed(ctx: GeneratorContext, position: int | None) -> AsyncIterator[tuple[tuple[str, int], int]]:
    """``(name, count)`` elements of one feed; a first run then idles (a feed with nothing
    new), a restored one ends, so the resumed job finishes."""
    names, n = FEEDS[ctx.split], position or 0
    while n < PER_FEED[ctx.split]:
        yield (names[n % len(names)], n // len(names) + 1), n + 1
        n += 1
        await asyncio.sleep(0.01)
    if not ctx.restored:
        await asyncio.Event().wait()


def expected_elements() -> list[tuple[str, int]]:
    return [(FEEDS[f][n % len(FEEDS[f])], n // len(FEEDS[f]) + 1) for f in FEEDS for n in range(PER_FEED[f])]


async def run_job(out: Path) -> None:
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.1, directory=out / "checkpoints")
    env.set_restart_strategy(RestartStrategy.none())
    (
        env.from_source(GeneratorSource(feed, splits=list(FEEDS)), name="feeds").uid("feeds")
        .sink_to(BufferingSink(out)).uid("buffering-sink")
    )
    result = await env.execute("buffering-sink")
    print(json.dumps({"attempts": result.attempts, "restored_from": result.restored_from}))


# -- the demo: a process killed with SIGKILL, a new one restoring ------------------------------


def read_log(out: Path) -> list[dict[str, Any]]:
    log = out / "state-log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def saved_buffers(log: list[dict[str, Any]], checkpoint: int) -> dict[int, str]:
    return {e["subtask"]: e["buffer"] for e in log if e["event"] == "saved" and e["checkpoint"] == checkpoint}


def full_checkpoint(log: list[dict[str, Any]]) -> int | None:
    """A completed checkpoint that holds every element not flushed yet, if there is one."""
    unflushed = sum(count % THRESHOLD for count in PER_FEED.values())
    for entry in log:
        if entry["event"] == "completed":
            saved = saved_buffers(log, entry["checkpoint"])
            if len(saved) == len(FEEDS) and sum(len(ast.literal_eval(b)) for b in saved.values()) == unflushed:
                return int(entry["checkpoint"])
    return None


def job_process(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "job", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def demo(out: Path) -> bool:
    first = job_process(out)
    deadline = time.monotonic() + 60
    while (checkpoint := full_checkpoint(read_log(out))) is None:
        if first.poll() is not None or time.monotonic() > deadline:
            first.kill()
            print(f"CHECK FAILED: no checkpoint with the buffered elements; the job said {first.communicate()}")
            return False
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    print(f"1. killed the job process with SIGKILL (exit code {first.returncode}) after checkpoint {checkpoint} "
          f"completed holding {saved_buffers(read_log(out), checkpoint)}")

    second = job_process(out)
    stdout, stderr = second.communicate(timeout=60)
    if second.returncode != 0:
        print(f"CHECK FAILED: the restarted job exited with {second.returncode}: {stderr}")
        return False
    restored_from = json.loads(stdout.strip().splitlines()[-1])["restored_from"]
    log = read_log(out)
    restored = {e["subtask"]: e["buffer"] for e in log if e["event"] == "restored"}
    saved = saved_buffers(log, restored_from)
    print(f"2. a new process restored checkpoint {restored_from}: buffers {restored}")

    if restored != saved:  # repr for repr: equal values of the same types
        print(f"CHECK FAILED: the restored buffers {restored} are not the saved {saved}")
        return False
    flushed = Counter(line for part in sorted(out.glob("part-*.txt")) for line in part.read_text().splitlines())
    if flushed != Counter(repr(element) for element in expected_elements()):
        print(f"CHECK FAILED: flushed {sorted(flushed)}, expected each of {expected_elements()} once")
        return False
    print(f"CHECK OK: the buffers came back equal and typed as saved, and all {sum(flushed.values())} "
          "elements were flushed once")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["demo", "job"], default="demo")
    parser.add_argument("--out", type=Path, default=None, help="directory for the output, log and checkpoints")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-buffering-sink-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.mode == "job":
        asyncio.run(run_job(out))
        return 0
    return 0 if demo(out) else 1


if __name__ == "__main__":
    sys.exit(main())
