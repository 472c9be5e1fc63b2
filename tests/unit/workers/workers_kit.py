"""A stand-in exchange factory for the graph tests: the graph only holds what it makes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamflow.workers import ExchangeSpec


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
