"""Exchanges: the edges between workers, as plain data, and the contract of whoever
turns them into a source and a sink.

With several workers, every edge that redistributes records (HASH after ``key_by``,
REBALANCE, BROADCAST) becomes an exchange: upstream subtasks write its topic through an
exchange sink, downstream subtasks read it through an exchange source, each in its own
worker. An :class:`ExchangeSpec` says everything both ends must agree on; an
:class:`ExchangeFactory` (the Kafka one lives in the connectors, which the core never
imports) makes the two graph nodes from it. Like the source and sink contract, this is
what a connector implements, so it lives with that contract; the graph rewrite that
makes the specs is ``streamflow.workers``.

Names. An exchange is identified by its edge: upstream uid, downstream uid and the
downstream input it feeds. Its topic is ``streamflow.<job>.<upstream>.<downstream>.<input>``
where every character Kafka does not allow in a topic name (anything but ASCII letters,
digits, ``.``, ``_`` and ``-``) becomes ``_``; when that changed a name, or the name is
longer than Kafka's 249 characters, it is shortened and ends in ``-`` and 10 hex digits of
the SHA-256 of the unsanitised name, so two edges never share a topic. The topic, and so
the job name, must stay the same for the job's life: the exchange readers' offsets name
it.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamflow.api.connector import Sink, Source
from streamflow.errors import ConfigError

__all__ = ["ExchangeFactory", "ExchangeKind", "ExchangeSpec", "exchange_topic_name", "exchange_uids"]

_KAFKA_TOPIC_MAX = 249
_LEGAL = re.compile(r"[^A-Za-z0-9._-]")
_HASH_DIGITS = 10


class ExchangeKind(enum.Enum):
    """How an exchange spreads records over its partitions (the edge it replaces)."""

    HASH = "hash"
    """By the record's key group (after ``key_by``)."""
    REBALANCE = "rebalance"
    """Whole batches round robin."""
    BROADCAST = "broadcast"
    """Every reader reads every partition."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSpec:
    """What the writing and the reading end of one exchange agree on.

    Attributes:
        topic: the exchange topic (see :func:`exchange_topic_name`).
        kind: HASH (partition by the record's key group), REBALANCE (batches round
            robin over the partitions) or BROADCAST (every reader reads every partition;
            each writer keeps to one partition, so its order holds).
        key_selector: the edge's key selector (HASH only).
        partitions: the topic's partition count E, fixed for the job's life.
        max_parallelism: the job's number of key groups.
        writer_uid / reader_uid: the uids of the exchange sink and source nodes.
        writer_parallelism: the global parallelism of the writing side: how many writers
            a reader hears watermarks and end of input from.
        generation: the deployment that writes: a reader that starts without restored
            offsets skips records of other generations (a topic outlives a job run).
        upstream_uid / downstream_uid / input_index: the edge it replaces, for messages.
    """

    topic: str
    kind: ExchangeKind
    key_selector: Callable[[Any], Any] | None
    partitions: int
    max_parallelism: int
    writer_uid: str
    reader_uid: str
    writer_parallelism: int
    generation: str
    upstream_uid: str
    downstream_uid: str
    input_index: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ExchangeKind):
            raise ConfigError(
                f"an exchange's kind is an ExchangeKind (HASH, REBALANCE or BROADCAST), got {self.kind!r} "
                f"({self.upstream_uid!r} -> {self.downstream_uid!r})"
            )
        if (self.kind is ExchangeKind.HASH) != (self.key_selector is not None):
            raise ConfigError(
                f"exchange {self.topic!r}: a HASH exchange needs the edge's key selector and no other kind takes one"
            )
        for name in ("partitions", "max_parallelism", "writer_parallelism"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"exchange {self.topic!r}: {name} must be an int >= 1, got {value!r}")
        if not isinstance(self.generation, str) or not self.generation or len(self.generation.encode()) > 64:
            raise ConfigError(
                f"exchange {self.topic!r}: generation must be a non-empty str of at most 64 bytes, "
                f"got {self.generation!r}"
            )


class ExchangeFactory(Protocol):
    """Makes the two ends of an exchange; one per job (e.g. a Kafka cluster's settings).

    ``partitions`` is the partition count of every exchange topic of the job.
    """

    @property
    def partitions(self) -> int: ...

    def sink(self, spec: ExchangeSpec) -> Sink:
        """The writing end: an exactly-once sink, committed with the writer's checkpoints."""

    def source(self, spec: ExchangeSpec) -> Source:
        """The reading end: a replayable source whose offsets live in the reader's checkpoints."""

    async def prepare(self, specs: Sequence[ExchangeSpec], where: str) -> None:
        """Create the exchanges' topics if missing and check them if not, before a worker
        starts: a topic that cannot serve the job (another partition count) raises
        ConfigError, saying what to change; an unreachable cluster raises
        ConnectorError (the worker's restart strategy then deals with it)."""


def exchange_topic_name(job_name: str, upstream_uid: str, downstream_uid: str, input_index: int) -> str:
    """The topic of the exchange on edge ``upstream -> downstream`` (its ``input_index``)
    of job ``job_name``; see the module docstring for the rule."""
    raw = f"streamflow.{job_name}.{upstream_uid}.{downstream_uid}.{input_index}"
    name = _LEGAL.sub("_", raw)
    if name == raw and len(name) <= _KAFKA_TOPIC_MAX and name not in (".", ".."):
        return name
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:_HASH_DIGITS]
    return f"{name[: _KAFKA_TOPIC_MAX - _HASH_DIGITS - 1]}-{digest}"


def exchange_uids(upstream_uid: str, downstream_uid: str, input_index: int) -> tuple[str, str]:
    """The uids of the exchange sink (writer) and source (reader) of an edge: their state
    (pending transactions, read offsets) is matched by them on restore."""
    edge = f"{upstream_uid}->{downstream_uid}.{input_index}"
    return f"{edge}.exchange-writer", f"{edge}.exchange-reader"
