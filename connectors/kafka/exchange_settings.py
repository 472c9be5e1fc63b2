"""What the exchange's writer and reader read of their
:class:`~streamflow.connectors.kafka.exchange.KafkaExchange`.

Declared as a protocol so that the two ends do not import the factory that makes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from streamflow.api.exchange import ExchangeSpec

__all__ = ["ExchangeSettings"]


class ExchangeSettings(Protocol):
    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def transaction_timeout(self) -> float | timedelta: ...
    @property
    def producer_config(self) -> Mapping[str, Any]: ...
    @property
    def consumer_options(self) -> Mapping[str, Any]: ...
    @property
    def request_timeout_seconds(self) -> float: ...

    async def ensure_topic(self, spec: ExchangeSpec, where: str) -> None:
        """Create the exchange's topic if it is missing, check it if not."""
