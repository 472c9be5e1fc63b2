"""What the Kafka source reader reads of its :class:`~streamflow.connectors.kafka.source.KafkaSource`.

Declared as a protocol so that the reader does not import the source that makes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

from streamflow.connectors.kafka.deserializers import Deserializer
from streamflow.connectors.kafka.offsets import StartingOffsets
from streamflow.connectors.kafka.records import KafkaOutput

__all__ = ["KafkaSourceSettings"]


class KafkaSourceSettings(Protocol):
    @property
    def bootstrap_servers(self) -> str | Sequence[str]: ...
    @property
    def topics(self) -> str | Sequence[str] | None: ...
    @property
    def topic_pattern(self) -> str | re.Pattern[str] | None: ...
    @property
    def group_id(self) -> str | None: ...
    @property
    def starting_offsets(self) -> StartingOffsets: ...
    @property
    def bounded(self) -> bool: ...
    @property
    def isolation_level(self) -> str: ...
    @property
    def value_deserializer(self) -> Deserializer: ...
    @property
    def key_deserializer(self) -> Deserializer: ...
    @property
    def output(self) -> KafkaOutput | str: ...
    @property
    def discovery_interval(self) -> float | timedelta | None: ...
    @property
    def request_timeout(self) -> float | timedelta: ...
    @property
    def consumer_options(self) -> Mapping[str, Any]: ...
