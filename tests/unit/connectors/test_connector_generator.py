"""GeneratorSource's reader on its own: positions, splits, pacing, errors, restore.

The reader is driven by hand here (open, poll, snapshot_splits, close) as a source task
would; job-level behaviour (a crash and restore, a rescale) is in
tests/integration/test_generator_source.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streamflow.api.connector import SourceContext
from streamflow.connectors import GeneratorContext, GeneratorSource
from streamflow.connectors.generator import GeneratorReader
from streamflow.errors import ConfigError, ConnectorError, StateError

Seen = list[tuple[str, Any, bool]]


def counter(limit: int | None = None, seen: Seen | None = None) -> Any:
    """An async generator function over ints; records are ``(split, n)``."""

    async def count(ctx: GeneratorContext, position: int | None) -> AsyncIterator[tuple[Any, int]]:
        if seen is not None:
            seen.append((ctx.split, position, ctx.restored))
        n = 0 if position is None else position
        while limit is None or n < limit:
            yield (ctx.split, n), n + 1
            n += 1

    return count


def reader(
    source: GeneratorSource, subtask: int = 0, parallelism: int = 1, restored: list[Any] | None = None
) -> GeneratorReader:
    ctx = SourceContext(
        job_name="job", operator_uid="gen", subtask_index=subtask, parallelism=parallelism,
        restored_splits=restored, all_restored_splits=restored,
    )
    return source.create_reader(ctx)


async def drain(r: GeneratorReader, max_records: int = 100) -> list[Any]:
    out: list[Any] = []
    while (batch := await r.poll(max_records, 1.0)) is not None:
        out.extend(batch.records)
    return out


async def test_the_stored_position_is_the_next_record_after_the_last_handed_out() -> None:
    r = reader(GeneratorSource(counter(), buffer=50))
    await r.open()
    batch = await r.poll(3, 1.0)
    assert batch is not None and batch.records == [("0", 0), ("0", 1), ("0", 2)]
    assert batch.positions == [None, 1, 2]  # each record's own position: where it was read from
    await asyncio.sleep(0.01)  # the generator runs ahead into its buffer ...
    # ... but the checkpoint holds only what the job has: resume at record 3
    assert r.snapshot_splits(1) == [{"split": "0", "position": 3, "finished": False}]
    await r.close()


async def test_a_restored_position_resumes_there_and_ctx_says_restored() -> None:
    seen: Seen = []
    source = GeneratorSource(counter(limit=5, seen=seen))
    r = reader(source, restored=[{"split": "0", "position": 3, "finished": False}])
    await r.open()
    assert await drain(r) == [("0", 3), ("0", 4)]
    assert seen == [("0", 3, True)]
    assert r.snapshot_splits(2) == [{"split": "0", "position": 5, "finished": True}]
    await r.close()


async def test_splits_go_to_subtask_k_mod_parallelism_and_start_at_start() -> None:
    seen: Seen = []
    source = GeneratorSource(counter(limit=2, seen=seen), splits=["a", "b", "c"], start=0)
    r0, r1 = reader(source, 0, 2), reader(source, 1, 2)
    for r in (r0, r1):
        await r.open()
    assert sorted(await drain(r0)) == [("a", 0), ("a", 1), ("c", 0), ("c", 1)]
    assert await drain(r1) == [("b", 0), ("b", 1)]
    assert sorted(seen) == [("a", 0, False), ("b", 0, False), ("c", 0, False)]


async def test_after_a_rescale_each_split_keeps_its_position_and_finished_splits_stay_finished() -> None:
    seen: Seen = []
    source = GeneratorSource(counter(limit=4, seen=seen), splits=3)
    old = [
        {"split": "0", "position": 4, "finished": True},
        {"split": "1", "position": 2, "finished": False},
        # split "2" was declared since the checkpoint: it starts at ``start``
    ]
    r0, r1 = reader(source, 0, 2, restored=old), reader(source, 1, 2, restored=old)
    for r in (r0, r1):
        await r.open()
    assert await drain(r0) == [("2", 0), ("2", 1), ("2", 2), ("2", 3)]
    assert await drain(r1) == [("1", 2), ("1", 3)]
    assert sorted(seen) == [("1", 2, True), ("2", None, False)]  # split 0 was not started again
    assert r0.snapshot_splits(3) == [
        {"split": "0", "position": 4, "finished": True},
        {"split": "2", "position": 4, "finished": True},
    ]


async def test_a_subtask_without_splits_ends_at_once() -> None:
    r = reader(GeneratorSource(counter()), subtask=1, parallelism=2)
    await r.open()
    assert await r.poll(10, 1.0) is None
    assert r.snapshot_splits(1) == []


async def test_restored_splits_no_longer_declared_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    r = reader(GeneratorSource(counter(limit=1)), restored=[{"split": "old", "position": 9, "finished": False}])
    with caplog.at_level(logging.WARNING):
        await r.open()
    assert await drain(r) == [("0", 0)]
    assert "restored splits ['old'] are no longer declared" in caplog.text


async def test_a_slow_generator_gives_empty_batches_within_max_wait_and_is_not_cancelled() -> None:
    release = asyncio.Event()

    async def slow(ctx: GeneratorContext, position: Any) -> AsyncIterator[tuple[str, int]]:
        yield "first", 1
        await release.wait()  # a page that takes long to arrive
        yield "second", 2

    r = reader(GeneratorSource(slow))
    await r.open()
    assert (await r.poll(10, 0.5)).records == ["first"]  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    started = loop.time()
    empty = await r.poll(10, 0.05)
    assert empty is not None and empty.records == [] and loop.time() - started < 0.5
    release.set()
    assert await drain(r) == ["second"]
    assert r.snapshot_splits(1) == [{"split": "0", "position": 2, "finished": True}]


async def test_the_generator_runs_ahead_at_most_buffer_records() -> None:
    produced = 0

    async def endless(ctx: GeneratorContext, position: Any) -> AsyncIterator[tuple[int, int]]:
        nonlocal produced
        while True:
            produced += 1
            yield produced, produced

    r = reader(GeneratorSource(endless, buffer=5))
    await r.open()
    await asyncio.sleep(0.01)
    assert produced == 5
    batch = await r.poll(2, 1.0)
    assert batch is not None and batch.records == [1, 2]
    await asyncio.sleep(0.01)
    assert produced == 7  # room for two more
    await r.close()


async def test_close_runs_the_generators_cleanup() -> None:
    cleaned: list[str] = []

    async def with_cleanup(ctx: GeneratorContext, position: Any) -> AsyncIterator[tuple[int, int]]:
        try:
            n = 0
            while True:
                n += 1
                yield n, n
                await asyncio.sleep(0.001)
        finally:
            cleaned.append(ctx.split)

    r = reader(GeneratorSource(with_cleanup, buffer=2))
    await r.open()
    await r.poll(1, 1.0)
    await r.close()
    assert cleaned == ["0"]


async def test_a_failing_generator_fails_poll_naming_source_split_and_position() -> None:
    async def failing(ctx: GeneratorContext, position: Any) -> AsyncIterator[tuple[str, int]]:
        yield "a", 1
        raise OSError("the feed went away")

    r = reader(GeneratorSource(failing))
    await r.open()
    with pytest.raises(ConnectorError, match=r"GeneratorSource 'gen' \(subtask 0\): the generator of split '0' failed "
                       r"after position None: OSError: the feed went away") as failed:
        await drain(r)
    assert isinstance(failed.value.__cause__, OSError)


async def test_a_generator_that_yields_bare_records_is_told_to_yield_pairs() -> None:
    async def bare(ctx: GeneratorContext, position: Any) -> AsyncIterator[str]:
        yield "just a record"

    r = reader(GeneratorSource(bare))  # type: ignore[arg-type]
    await r.open()
    with pytest.raises(ConnectorError, match=r"must yield \(record, next_position\) pairs, got 'just a record'"):
        await drain(r)


async def test_restored_state_of_another_source_is_refused_naming_the_uid() -> None:
    with pytest.raises(StateError, match="restored split {'next': 3} is not a GeneratorSource split"):
        reader(GeneratorSource(counter()), restored=[{"next": 3}])


def test_fn_must_be_an_async_generator_taking_ctx_and_position() -> None:
    def plain(ctx: Any, position: Any) -> list[int]:
        return [1]

    def sync_generator(ctx: Any, position: Any) -> Any:
        yield 1, 1

    async def coroutine(ctx: Any, position: Any) -> None:
        return None

    for fn in (plain, sync_generator, coroutine, None):
        with pytest.raises(ConfigError, match="needs an async generator function fn\\(ctx, position\\)"):
            GeneratorSource(fn)  # type: ignore[arg-type]

    async def one_argument(ctx: Any) -> AsyncIterator[tuple[int, int]]:
        yield 1, 1

    with pytest.raises(ConfigError, match="with two arguments"):
        GeneratorSource(one_argument)  # type: ignore[arg-type]

    class Feed:  # a callable object whose __call__ is an async generator is fine
        async def __call__(self, ctx: Any, position: Any) -> AsyncIterator[tuple[int, int]]:
            yield 1, 1

    assert GeneratorSource(Feed()).splits == ("0",)


@pytest.mark.parametrize(
    ("splits", "message"),
    [(0, "at least 1"), ("ab", "positive int or a non-empty list"), ([], "positive int or a non-empty list"),
     (["a", "a"], "distinct"), (["a", ""], "distinct non-empty"), (True, "positive int or a non-empty list")],
)
def test_bad_splits_are_refused(splits: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GeneratorSource(counter(), splits=splits)


def test_bad_buffer_is_refused() -> None:
    with pytest.raises(ConfigError, match="buffer must be a positive int"):
        GeneratorSource(counter(), buffer=0)
