"""Sinks for looking at results: print them, or collect them for a test to read.

Delivery guarantee of both: AT-LEAST-ONCE. Records show up as they are written; after a
failure and restore, records written since the last completed checkpoint are written
again. Use :class:`~streamflow.connectors.file_sink.ExactlyOnceFileSink` or
:class:`~streamflow.connectors.sqlite.ExactlyOnceSqliteSink` for exactly-once output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, ClassVar

from streamflow.api.connector import SinkContext, SinkWriterBase
from streamflow.errors import ConfigError

__all__ = ["CollectSink", "CollectWriter", "PrintSink", "PrintWriter"]


@dataclass(frozen=True, slots=True)
class PrintSink:
    """Print each record as ``f"{prefix}{record}"`` to standard output.

    With parallelism > 1, lines start with the 1-based subtask number, ``"2> "``, as in
    Flink. Each batch is written and flushed as it arrives, as Flink's ``print()`` is
    immediate: lines show up at once also when standard output is a pipe or a file
    (Python buffers those), not only at the next checkpoint. Flushing blocks the
    subtask while the reader of a pipe lags, which is backpressure, as in Flink.

    Keeps no state (``stateful = False``): it needs no ``.uid(...)`` for savepoints.
    """

    prefix: str = ""
    stateful: ClassVar[bool] = False

    def create_writer(self, ctx: SinkContext) -> PrintWriter:
        subtask = f"{ctx.subtask_index + 1}> " if ctx.parallelism > 1 else ""
        return PrintWriter(subtask + self.prefix)


class PrintWriter(SinkWriterBase):
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    async def write(self, records: list[Any]) -> None:
        prefix = self._prefix
        # Resolve sys.stdout per call: tests and tools swap it. One write and one flush
        # per batch, never per record.
        out = sys.stdout
        out.write("".join(f"{prefix}{r}\n" for r in records))
        out.flush()


@dataclass(frozen=True, slots=True)
class CollectSink:
    """Append records to a process-local list named ``name``; for tests and notebooks.

    Read them with ``CollectSink.results(name)``; reset with ``CollectSink.clear(name)``.
    Every subtask appends to the same list, so across subtasks the order is the order of
    writes. Only works when the job runs in the reading process. Keeps no state
    (``stateful = False``).
    """

    name: str
    stateful: ClassVar[bool] = False
    _registry: ClassVar[dict[str, list[Any]]] = {}

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"CollectSink needs a non-empty str name, got {self.name!r}", value=self.name)

    @classmethod
    def results(cls, name: str) -> list[Any]:
        """A copy of what was collected under ``name`` so far (``[]`` if nothing was)."""
        return list(cls._registry.get(name, ()))

    @classmethod
    def clear(cls, name: str) -> None:
        """Forget what was collected under ``name``."""
        cls._registry.pop(name, None)

    def create_writer(self, ctx: SinkContext) -> CollectWriter:
        return CollectWriter(self._registry, self.name)


class CollectWriter(SinkWriterBase):
    def __init__(self, registry: dict[str, list[Any]], name: str) -> None:
        self._registry = registry
        self._name = name

    async def write(self, records: list[Any]) -> None:
        # Looked up per write, so a clear() between runs never strands a writer's list.
        self._registry.setdefault(self._name, []).extend(records)
