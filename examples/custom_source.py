"""Write your own source: a paged feed read by an async generator, its position in the checkpoint.

What it shows (the README section "Write your own source"):
- ``GeneratorSource``: the whole source is one ``async def`` that is given the position
  to resume from and yields ``(record, next_position)``; the runtime stores the position
  of each split in every checkpoint (Flink's source with its offset in operator state);
- two splits, one per feed ("orders", "refunds"), each read by its own generator; a
  position is ``(page, index in page)`` of the NEXT record, so a restore re-reads nothing
  and skips nothing;
- the feed is slow (every page is a "request" that takes a few milliseconds): the source
  keeps serving checkpoints while its generator waits;
- a crash on purpose midway: the job restores from the latest checkpoint, each feed goes
  on from its stored position, and an exactly-once file sink commits each record once.
  The script checks the committed output against the feeds, record by record.

Run it: ``python examples/custom_source.py [--out DIR]`` (prints ``CHECK OK``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.connectors import ExactlyOnceFileSink, GeneratorContext, GeneratorSource, read_committed_lines

PAGE_SIZE = 25
PAGES = {"orders": 16, "refunds": 6}


class PagedFeed:
    """Stands in for an HTTP API that serves a feed page by page (``GET /feed?page=n``)."""

    async def fetch(self, feed: str, page: int) -> list[str] | None:
        """Page ``page`` of ``feed``, or ``None`` past the last page."""
        await asyncio.sleep(0.02)  # the request
        if page >= PAGES[feed]:
            return None
        return [f"{feed}-{page * PAGE_SIZE + i:04d}" for i in range(PAGE_SIZE)]


async def read_feed(ctx: GeneratorContext, position: Any) -> AsyncIterator[tuple[str, tuple[int, int]]]:
    """The source: one generator per split (feed), resumed at ``position``.

    ``position`` is ``None`` on a first run, else the ``(page, index)`` of the next record,
    as yielded before the checkpoint the job restored from.
    """
    page, index = position if position is not None else (0, 0)
    api = PagedFeed()
    while (records := await api.fetch(ctx.split, page)) is not None:
        for i in range(index, len(records)):
            # the NEXT record's position: the next one on this page, or the next page
            yield records[i], ((page, i + 1) if i + 1 < len(records) else (page + 1, 0))
        page, index = page + 1, 0
    # returning ends this split for good: a bounded feed


class CrashOnce:
    """Fails the job attempt once, at the first record after ``at`` records and a completed
    checkpoint (the "once" lives on the class: every subtask and attempt gets its own copy
    of the function)."""

    crashed = False

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0
        self.checkpointed = False

    def __call__(self, record: str) -> str:
        self.seen += 1
        if not CrashOnce.crashed and self.checkpointed and self.seen >= self.at:
            CrashOnce.crashed = True
            raise RuntimeError(f"crash on purpose after {self.seen} records (the example's injected failure)")
        return record

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.checkpointed = True

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        return None


def build(env: StreamEnvironment, out: Path, *, crash_at: int | None = None) -> None:
    stream = env.from_source(GeneratorSource(read_feed, splits=list(PAGES)), name="feeds").uid("feeds")
    if crash_at is not None:
        stream = stream.map(CrashOnce(crash_at)).uid("chaos")
    stream.sink_to(ExactlyOnceFileSink(out)).uid("out")


async def run(out: Path) -> bool:
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.1, directory=out / "checkpoints")
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=2, delay=0.2))
    build(env, out / "records", crash_at=300)
    result = await env.execute("custom-source")
    print(
        f"finished after {result.attempts} attempts, restored from checkpoint {result.restored_from}, "
        f"{result.checkpoints_completed} checkpoints"
    )
    expected = Counter(f"{feed}-{n:04d}" for feed, pages in PAGES.items() for n in range(pages * PAGE_SIZE))
    got = Counter(read_committed_lines(out / "records"))
    if result.attempts == 2 and result.restored_from is not None and got == expected:
        print(f"CHECK OK: {sum(got.values())} records of {len(PAGES)} feeds committed, each exactly once")
        return True
    print(f"CHECK FAILED: missing {sorted(expected - got)[:5]}, duplicated or unexpected {sorted(got - expected)[:5]}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the output and checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-custom-source-"))
    return 0 if asyncio.run(run(out)) else 1


if __name__ == "__main__":
    sys.exit(main())
