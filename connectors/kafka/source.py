"""KafkaSource: read Kafka topics with offsets kept in the job's checkpoints.

Delivery guarantee: exactly-once (replayable). Each partition is a split whose state is
the offset of the NEXT record to read; it lives only in operator state and a restore
seeks straight to it. Committing offsets to a consumer group (``group_id``) happens
after a checkpoint completes and serves lag monitoring only; recovery never reads them.

Partitions are assigned to subtasks by hand (``consumer.assign``), never by consumer
group rebalancing: subtask ``owner_of(topic, partition, parallelism)`` reads a partition,
at a fresh start, after a restore with any parallelism, and when the partition is found
while running (see :mod:`.offsets`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
from typing import Any

from streamflow.api.connector import SourceContext
from streamflow.connectors.kafka.deserializers import Deserializer, resolve_deserializer
from streamflow.connectors.kafka.offsets import StartingOffsets
from streamflow.connectors.kafka.reader import KafkaSourceReader
from streamflow.connectors.kafka.records import KafkaOutput
from streamflow.connectors.kafka.watermarks import BoundedOutOfOrderness
from streamflow.errors import ConfigError
from streamflow.eventtime.strategy import WatermarkStrategy

__all__ = ["KafkaSource"]

_ISOLATION_LEVELS = ("read_committed", "read_uncommitted")
# Set by KafkaSource itself; a consumer option may not change them.
_RESERVED_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "isolation_level",
        "key_deserializer",
        "value_deserializer",
        "request_timeout_ms",
        "loop",
    }
)


@dataclass(frozen=True, slots=True)
class KafkaSource:
    """Read ``topics`` (names) or every topic matching ``topic_pattern`` (a regex that
    must match the whole name).

    Args:
        bootstrap_servers: ``"host:port[,host:port]"`` or a list of them.
        topics: a topic name or a list of names; each must exist (topics are never
            created by reading).
        topic_pattern: instead of ``topics``; topics created later that match are found
            by discovery.
        group_id: consumer group to commit offsets to after each completed checkpoint,
            for lag monitoring (and ``StartingOffsets.committed()``). Optional.
        starting_offsets: where partitions start when the job starts without a
            checkpoint, or from one that holds no state of this source's uid (a
            source added to the job since; default earliest). Partitions that appear
            later, found while running or at a restore that does not cover them
            (including topics added to ``topics`` since the checkpoint), start at their
            earliest offset: their records were written after the job started, and none
            is lost between the partition's creation and its discovery.
        bounded: stop at the end offsets seen at start (batch runs, tests); a subtask
            without partitions ends at once. Partition discovery is off.
        isolation_level: ``"read_committed"`` (default: aborted transactions and open
            ones are invisible) or ``"read_uncommitted"``.
        value_deserializer / key_deserializer: ``"bytes"`` (default), ``"str"``,
            ``"json"`` or a callable taking bytes. A record that fails goes to the
            source's error policy (``.with_error_policy`` on the source).
        output: ``KafkaOutput.VALUE`` (default: the value alone) or
            ``KafkaOutput.RECORD`` (a :class:`KafkaRecord` with key, headers,
            timestamp and position).
        watermark_strategy: a ``WatermarkStrategy`` for event time: one watermark
            generator per partition; records take their Kafka timestamps (float
            seconds) unless the strategy has a timestamp assigner. A subtask without
            partitions is idle and holds nothing back downstream. ``None`` (default):
            no watermarks (records still carry their timestamps). The same as passing
            it to ``env.from_source``, which takes precedence.
        watermarks: deprecated; a :class:`BoundedOutOfOrderness` is turned into the
            equal ``watermark_strategy`` (with a DeprecationWarning).
        discovery_interval: seconds between looks for new partitions and topics
            (default 30; ``None`` turns discovery off).
        request_timeout: seconds a request to the broker (and connecting) may take
            before the job attempt fails.
        consumer_options: further ``AIOKafkaConsumer`` arguments (security, fetch
            sizes, ``client_rack``, ...); the security ones also reach the admin client
            used for metadata.
    """

    bootstrap_servers: str | Sequence[str]
    _: KW_ONLY
    topics: str | Sequence[str] | None = None
    topic_pattern: str | re.Pattern[str] | None = None
    group_id: str | None = None
    starting_offsets: StartingOffsets = field(default_factory=StartingOffsets.earliest)
    bounded: bool = False
    isolation_level: str = "read_committed"
    value_deserializer: Deserializer = "bytes"
    key_deserializer: Deserializer = "bytes"
    output: KafkaOutput | str = KafkaOutput.VALUE
    watermark_strategy: WatermarkStrategy | None = None
    watermarks: BoundedOutOfOrderness | None = None
    discovery_interval: float | timedelta | None = 30.0
    request_timeout: float | timedelta = 30.0
    consumer_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        servers = self.bootstrap_servers
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",")]
        if not isinstance(servers, Sequence) or not servers or not all(isinstance(s, str) and s for s in servers):
            raise ConfigError(
                f"KafkaSource bootstrap_servers must be 'host:port[,host:port]' or a list of them, got "
                f"{self.bootstrap_servers!r}",
                value=repr(self.bootstrap_servers),
            )
        object.__setattr__(self, "bootstrap_servers", ",".join(servers))
        self._check_topics()
        if self.group_id is not None and (not isinstance(self.group_id, str) or not self.group_id):
            raise ConfigError(f"KafkaSource group_id must be a non-empty str or None, got {self.group_id!r}")
        if not isinstance(self.starting_offsets, StartingOffsets):
            raise ConfigError(
                f"KafkaSource starting_offsets must be a StartingOffsets (e.g. StartingOffsets.earliest()), "
                f"got {self.starting_offsets!r}"
            )
        if self.starting_offsets.needs_group and self.group_id is None:
            raise ConfigError(
                "KafkaSource starting_offsets=StartingOffsets.committed() needs a group_id to read committed "
                "offsets from; pass group_id=... or choose another StartingOffsets"
            )
        if not isinstance(self.bounded, bool):
            raise ConfigError(f"KafkaSource bounded must be True or False, got {self.bounded!r}")
        if self.isolation_level not in _ISOLATION_LEVELS:
            raise ConfigError(
                f"KafkaSource isolation_level must be 'read_committed' or 'read_uncommitted', got "
                f"{self.isolation_level!r}"
            )
        resolve_deserializer(self.value_deserializer, "value_deserializer")
        resolve_deserializer(self.key_deserializer, "key_deserializer")
        try:
            object.__setattr__(self, "output", KafkaOutput(self.output))
        except ValueError:
            raise ConfigError(
                f"KafkaSource output must be KafkaOutput.VALUE or KafkaOutput.RECORD, got {self.output!r}"
            ) from None
        self._check_event_time()
        object.__setattr__(
            self, "discovery_interval", _positive_seconds(self.discovery_interval, "discovery_interval")
        )
        object.__setattr__(
            self, "request_timeout", _positive_seconds(self.request_timeout, "request_timeout", allow_none=False)
        )
        if not isinstance(self.consumer_options, Mapping):
            raise ConfigError(f"KafkaSource consumer_options must be a mapping, got {self.consumer_options!r}")
        reserved = sorted(_RESERVED_OPTIONS.intersection(self.consumer_options))
        if reserved:
            raise ConfigError(
                f"KafkaSource consumer_options may not set {reserved}: KafkaSource sets them (use its own "
                "arguments: group_id, isolation_level, the deserializers, request_timeout)"
            )
        object.__setattr__(self, "consumer_options", dict(self.consumer_options))

    def _check_event_time(self) -> None:
        strategy, legacy = self.watermark_strategy, self.watermarks
        if strategy is not None and not isinstance(strategy, WatermarkStrategy):
            raise ConfigError(
                f"KafkaSource watermark_strategy must be a WatermarkStrategy or None, got {strategy!r}; e.g. "
                "WatermarkStrategy.for_bounded_out_of_orderness(5.0)"
            )
        if legacy is None:
            return
        if not isinstance(legacy, BoundedOutOfOrderness):
            raise ConfigError(f"KafkaSource watermarks must be a BoundedOutOfOrderness or None, got {legacy!r}")
        replacement = legacy.describe_replacement()
        if strategy is not None:
            raise ConfigError(
                f"KafkaSource got both watermark_strategy and the deprecated watermarks={legacy!r}; "
                f"drop watermarks (it stands for watermark_strategy={replacement})"
            )
        warnings.warn(
            f"KafkaSource(watermarks={legacy!r}) is deprecated; pass watermark_strategy={replacement} instead",
            DeprecationWarning,
            stacklevel=4,
        )
        object.__setattr__(self, "watermark_strategy", legacy.to_strategy())

    def _check_topics(self) -> None:
        topics, pattern = self.topics, self.topic_pattern
        if (topics is None) == (pattern is None):
            raise ConfigError(
                "KafkaSource needs exactly one of topics=[...] and topic_pattern='regex', got "
                f"topics={topics!r}, topic_pattern={pattern!r}"
            )
        if topics is not None:
            names = [topics] if isinstance(topics, str) else topics
            if (
                not isinstance(names, Sequence)
                or not names
                or not all(isinstance(t, str) and t for t in names)
            ):
                raise ConfigError(f"KafkaSource topics must be a topic name or a list of names, got {topics!r}")
            object.__setattr__(self, "topics", tuple(dict.fromkeys(names)))
        else:
            try:
                compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(str(pattern))
            except re.error as exc:
                raise ConfigError(f"KafkaSource topic_pattern {pattern!r} is not a valid regex: {exc}") from exc
            if not isinstance(pattern, (str, re.Pattern)):
                raise ConfigError(f"KafkaSource topic_pattern must be a str or re.Pattern, got {pattern!r}")
            object.__setattr__(self, "topic_pattern", compiled)

    def create_reader(self, ctx: SourceContext) -> KafkaSourceReader:
        return KafkaSourceReader(self, ctx)


def _positive_seconds(value: float | timedelta | None, what: str, *, allow_none: bool = True) -> float | None:
    """A duration argument as float seconds (> 0), with a clear error."""
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"KafkaSource {what} is required")
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"KafkaSource {what} must be a positive number of seconds or a timedelta, got {value!r}")
    return float(value)
