"""GeneratorSource: a source written as one async generator, its position in the checkpoint.

The simple rung of the source ladder (the full one is :class:`~streamflow.api.connector.Source`
and :class:`~streamflow.api.connector.SourceReader`). Flink's classic pattern is a source
function that keeps its offset in operator state; here the runtime keeps it::

    async def numbers(ctx: GeneratorContext, position: int | None):
        n = 0 if position is None else position
        while True:
            yield n, n + 1          # (record, the position of the NEXT record)
            n += 1

    env.from_source(GeneratorSource(numbers)).uid("numbers")

Contract of ``fn(ctx, position)``:

1. It is called once per split, with the split's restored position, or ``start`` when
   the split has none (a first run, a source added to the job since, a split added since).
2. It yields ``(record, next_position)``: ``next_position`` is where reading resumes
   AFTER this record, never the record's own position, so a restore does not replay it.
   Positions go into checkpoints: keep them small and plain (numbers, strings, tuples).
3. Returning ends the split for good (a bounded input); a subtask whose splits all ended
   ends its input. A generator that never returns is an unbounded source. It may await
   freely (pages, sleeps): the runtime keeps serving checkpoints meanwhile.
4. From ``position`` it must yield the same records again (a file offset, a database
   cursor, a page token): that makes the source replayable, so exactly-once downstream.

Splits: ``splits=3`` (or names, ``splits=["eu", "us"]``) runs one generator per split;
split ``k`` of the declared order goes to subtask ``k % parallelism``, on a fresh start
and after a restore at any parallelism, so a split's position always follows the split.
A split whose generator returned is stored as finished and never started again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.api.connector_checks import SOURCE_DOCS
from streamflow.core.clock import Clock, SystemClock
from streamflow.errors import ConfigError, ConnectorError, StateError

__all__ = ["GeneratorContext", "GeneratorReader", "GeneratorSource"]

log = logging.getLogger("streamflow.connectors.generator")

GeneratorFunction = Callable[["GeneratorContext", Any], AsyncIterator[tuple[Any, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratorContext:
    """What the generator of one split knows: which split, where it runs, whether its
    position came from a checkpoint (``restored``)."""

    split: str
    restored: bool
    job_name: str
    operator_uid: str
    subtask_index: int
    parallelism: int
    clock: Clock = field(default_factory=SystemClock)


@dataclass(frozen=True, slots=True)
class GeneratorSource:
    """A replayable source from an async generator ``fn(ctx, position)``; see the module
    docstring for its contract.

    Args:
        fn: an async generator function (or an object whose ``__call__`` is one) taking
            a :class:`GeneratorContext` and the position to resume from.
        splits: how many independent generators (int), or their names.
        start: the position a split starts from when nothing was restored for it.
        buffer: records a split's generator may run ahead of the job; reading stops
            there until the job has taken them (backpressure).
    """

    fn: GeneratorFunction
    _: KW_ONLY
    splits: int | Sequence[str] = 1
    start: Any = None
    buffer: int = 1000

    def __post_init__(self) -> None:
        if not (inspect.isasyncgenfunction(self.fn) or inspect.isasyncgenfunction(getattr(self.fn, "__call__", None))):
            raise ConfigError(
                f"GeneratorSource needs an async generator function fn(ctx, position) that yields "
                f"(record, next_position), got {self.fn!r}: write it as 'async def fn(ctx, position): ... "
                f"yield record, next_position'. See {SOURCE_DOCS}.",
                value=repr(self.fn),
            )
        try:
            inspect.signature(self.fn).bind(None, None)
        except TypeError as exc:
            raise ConfigError(
                f"GeneratorSource calls fn(ctx, position) with two arguments, but {self.fn!r} does not accept "
                f"them ({exc}). See {SOURCE_DOCS}.",
                value=repr(self.fn),
            ) from None
        except ValueError:
            pass  # no signature to look at (a builtin): the call will tell
        names = self._split_names()
        object.__setattr__(self, "splits", names)
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 1:
            raise ConfigError(f"GeneratorSource buffer must be a positive int, got {self.buffer!r}", value=self.buffer)

    def _split_names(self) -> tuple[str, ...]:
        splits = self.splits
        if isinstance(splits, int) and not isinstance(splits, bool):
            if splits < 1:
                raise ConfigError(f"GeneratorSource splits must be at least 1, got {splits!r}", value=splits)
            return tuple(str(k) for k in range(splits))
        if isinstance(splits, str) or not isinstance(splits, Sequence) or not splits:
            raise ConfigError(
                f"GeneratorSource splits must be a positive int or a non-empty list of names, got {splits!r}",
                value=repr(splits),
            )
        names = tuple(splits)
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ConfigError(
                f"GeneratorSource split names must be distinct non-empty str, got {splits!r}", value=repr(splits)
            )
        return names

    def create_reader(self, ctx: SourceContext) -> GeneratorReader:
        return GeneratorReader(self, ctx)


class _Split:
    """One split of this subtask: its generator's task and the records it ran ahead with.

    ``position`` is the position after the last record handed to the job (what a
    checkpoint stores); each buffered entry is ``(record, its own position, the next)``.
    """

    __slots__ = ("name", "position", "restored", "finished", "buffered", "room", "task", "error")

    def __init__(self, name: str, position: Any, *, restored: bool, finished: bool) -> None:
        self.name = name
        self.position = position
        self.restored = restored
        self.finished = finished  # the generator returned (maybe with records still buffered)
        self.buffered: deque[tuple[Any, Any, Any]] = deque()
        self.room = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.finished and not self.buffered

    def state(self) -> dict[str, Any]:
        return {"split": self.name, "position": self.position, "finished": self.done}


class GeneratorReader:
    """Runs one generator per owned split in a task of its own; ``poll`` hands out what
    they produced, one split per batch, round robin."""

    def __init__(self, source: GeneratorSource, ctx: SourceContext) -> None:
        self._source = source
        self._ctx = ctx
        self._where = f"GeneratorSource {ctx.operator_uid!r} (subtask {ctx.subtask_index})"
        self._ready = asyncio.Event()
        self._splits = self._owned_splits()
        self._next = 0  # round robin over splits

    def _owned_splits(self) -> list[_Split]:
        ctx, names = self._ctx, self._source.splits
        assert isinstance(names, tuple)  # normalised in GeneratorSource.__post_init__
        restored: dict[str, dict[str, Any]] = {}
        for state in ctx.all_restored_splits or ():
            if not isinstance(state, dict) or not {"split", "position", "finished"} <= state.keys():
                raise StateError(
                    f"{self._where}: restored split {state!r} is not a GeneratorSource split; was this uid used "
                    "by another source before? Give this source a new uid.",
                    operator=ctx.operator_uid,
                    split=repr(state),
                )
            restored[state["split"]] = state
        gone = sorted(set(restored) - set(names))
        if gone and ctx.subtask_index == 0:
            log.warning("%s: restored splits %s are no longer declared; they are not read", self._where, gone)
        owned = []
        for k, name in enumerate(names):
            if k % ctx.parallelism != ctx.subtask_index:
                continue
            state = restored.get(name)
            if state is None:
                owned.append(_Split(name, self._source.start, restored=False, finished=False))
            else:
                owned.append(_Split(name, state["position"], restored=True, finished=bool(state["finished"])))
        return owned

    async def open(self) -> None:
        for split in self._splits:
            if not split.finished:
                split.task = asyncio.create_task(self._produce(split), name=f"{self._where} split {split.name}")

    async def _produce(self, split: _Split) -> None:
        ctx = self._ctx
        context = GeneratorContext(
            split=split.name,
            restored=split.restored,
            job_name=ctx.job_name,
            operator_uid=ctx.operator_uid,
            subtask_index=ctx.subtask_index,
            parallelism=ctx.parallelism,
            clock=ctx.clock,
        )
        limit = self._source.buffer
        position = split.position
        generator = self._source.fn(context, position)
        try:
            async for item in generator:
                if type(item) is not tuple or len(item) != 2:
                    raise TypeError(f"it must yield (record, next_position) pairs, got {item!r:.200}")
                split.buffered.append((item[0], position, item[1]))
                position = item[1]
                self._ready.set()
                if len(split.buffered) >= limit:
                    split.room.clear()
                    await split.room.wait()
        except Exception as exc:  # handed to poll, which fails the attempt with it
            split.error = exc
        finally:
            close = getattr(generator, "aclose", None)  # runs the generator's own finally blocks
            if close is not None:
                try:
                    await close()
                except Exception as exc:  # noqa: BLE001 - a failing cleanup fails the split
                    split.error = split.error or exc
            split.finished = True
            self._ready.set()

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        deadline = asyncio.get_running_loop().time() + max_wait
        while True:
            self._ready.clear()
            batch = self._take(max(1, max_records))
            if batch is not None:
                return batch
            if all(split.done for split in self._splits):
                return None
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return SourceBatch([], [], self._splits[0].name)
            try:
                async with asyncio.timeout(remaining):
                    await self._ready.wait()
            except TimeoutError:
                return SourceBatch([], [], self._splits[0].name)

    def _take(self, max_records: int) -> SourceBatch | None:
        """The next split's buffered records (up to ``max_records``), round robin."""
        splits = self._splits
        for step in range(len(splits)):
            split = splits[(self._next + step) % len(splits)]
            if split.error is not None:
                raise ConnectorError(
                    f"{self._where}: the generator of split {split.name!r} failed after position "
                    f"{split.position!r}: {type(split.error).__name__}: {split.error}",
                    operator=self._ctx.operator_uid,
                    split=split.name,
                    position=repr(split.position),
                ) from split.error
            if not split.buffered:
                continue
            self._next = (self._next + step + 1) % len(splits)
            buffered = split.buffered
            count = min(max_records, len(buffered))
            records, positions = [], []
            for _ in range(count):
                record, position, split.position = buffered.popleft()
                records.append(record)
                positions.append(position)
            split.room.set()
            return SourceBatch(records, positions, split.name)
        return None

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [split.state() for split in self._splits]

    def active_splits(self) -> list[str]:
        """The splits with records still to come (for per-split watermarks)."""
        return [split.name for split in self._splits if not split.done]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        tasks = [split.task for split in self._splits if split.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
