"""The word count of the rollback tests: words from a real file, a keyed count, lines
``word=n`` into an ExactlyOnceFileSink (real files, two-phase commit by rename).

``build(env)`` serves ``streamflow run rollback_jobs:build`` (paths from the environment:
``ROLLBACK_WORDS``, ``ROLLBACK_OUT``); :func:`wordcount` builds the same job in process.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

from streamflow import KeyedProcessFunction, StreamEnvironment
from streamflow.connectors import ExactlyOnceFileSink, FileSource
from streamflow.state import ValueStateDescriptor

VOCABULARY = ["alpha", "beta", "gamma", "delta", "epsilon"]
LINES = 120


def write_words(path: Path) -> Counter[str]:
    """A deterministic text of 120 lines of 3 words; returns the word totals."""
    lines = [" ".join(VOCABULARY[(i * 7 + k) % len(VOCABULARY)] for k in range(3)) for i in range(LINES)]
    path.write_text("\n".join(lines) + "\n")
    return Counter(word for line in lines for word in line.split())


def expected_lines(totals: Counter[str]) -> set[str]:
    return {f"{word}={n}" for word, total in totals.items() for n in range(1, total + 1)}


class Count(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, word: str, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)
        out.collect(f"{word}={self.count.value()}")


async def paced(line: str) -> str:
    """A line every few milliseconds: several checkpoints complete while words flow."""
    await asyncio.sleep(0.004)
    return line


def wordcount(env: StreamEnvironment, words: Path, out: Path, sink: Any = None) -> StreamEnvironment:
    env.set_source_batch_size(1)
    (
        env.from_source(FileSource(words, batch_size=1), name="words").uid("words")
        .map(paced).uid("paced")
        .flat_map(str.split).uid("split")
        .key_by(lambda w: w).process(Count()).uid("count")
        .sink_to(sink if sink is not None else ExactlyOnceFileSink(out)).uid("out")
    )
    return env


def build(env: StreamEnvironment) -> None:
    wordcount(env, Path(os.environ["ROLLBACK_WORDS"]), Path(os.environ["ROLLBACK_OUT"]))
