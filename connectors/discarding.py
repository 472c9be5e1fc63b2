"""DiscardingSink: the end of a stream whose output is a side effect, or is not needed.

Flink's DiscardingSink. A job must end in a sink (a stream that goes nowhere computes
nothing visible, and the job graph refuses it); when the work is done upstream, in a
``map`` that calls a service or a process function that updates something, end the
stream here. Records are dropped as they arrive; the sink keeps no state and no
transactions, so it needs no ``uid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamflow.api.connector import SinkContext, SinkWriterBase

__all__ = ["DiscardingSink"]


@dataclass(frozen=True, slots=True)
class DiscardingSink:
    """Drop every record (see the module docstring)."""

    stateful = False  # nothing to keep: no missing-uid warning

    def create_writer(self, ctx: SinkContext) -> _DiscardingWriter:
        return _DiscardingWriter()


class _DiscardingWriter(SinkWriterBase):
    async def write(self, records: list[Any]) -> None:
        return None
