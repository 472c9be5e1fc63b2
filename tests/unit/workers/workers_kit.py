"""Stand-ins for the graph tests: an exchange factory (the graph only holds what it
makes) and a keyed broadcast function (the graph only needs its kind)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamflow import KeyedBroadcastProcessFunction
from streamflow.api.exchange import ExchangeSpec


@dataclass
class FakeEnd:
    """Stands for the Kafka exchange sink or source: the graph only holds it."""

    role: str
    spec: ExchangeSpec

    def create_reader(self, ctx: Any) -> Any:
        raise AssertionError("not run")

    def create_writer(self, ctx: Any) -> Any:
        raise AssertionError("not run")


class FakeExchanges:
    def __init__(self, partitions: int = 8) -> None:
        self._partitions = partitions
        self.made: list[ExchangeSpec] = []

    @property
    def partitions(self) -> int:
        return self._partitions

    def sink(self, spec: ExchangeSpec) -> FakeEnd:
        self.made.append(spec)
        return FakeEnd("sink", spec)

    def source(self, spec: ExchangeSpec) -> FakeEnd:
        return FakeEnd("source", spec)

    async def prepare(self, specs: list[ExchangeSpec], where: str) -> None:
        self.prepared = list(specs)


class Match(KeyedBroadcastProcessFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(value)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        return None
