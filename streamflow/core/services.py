"""The objects one job run owns and hands down to its tasks, operators, readers and writers.

Nothing of a job run lives in a process global: two jobs in one process (or one event
loop) never see each other's armed faults, offloaded work or shared boards. An
:class:`~streamflow.runtime.executor.Execution` makes one :class:`JobServices` per run;
it stays the same across the run's attempts (an armed fault fires once per run, a board
outlives a failed attempt) and reaches the parts of the job through their contexts
(``SourceContext.services``, ``SinkContext.services``, the operator context).
"""

from __future__ import annotations

from typing import Any, TypeVar

from streamflow.core.faults import FaultInjector
from streamflow.core.offload import Offloader

__all__ = ["JobServices"]

T = TypeVar("T")


class JobServices:
    """One job run's fault injector, offloader and shared objects.

    Args:
        faults: the run's fault injector (default: armed as the environment says, see
            :meth:`FaultInjector.from_environment`).
    """

    __slots__ = ("faults", "offload", "_shared")

    def __init__(self, faults: FaultInjector | None = None) -> None:
        self.faults = faults if faults is not None else FaultInjector.from_environment()
        self.offload = Offloader()
        self._shared: dict[type[Any], Any] = {}

    def shared(self, kind: type[T]) -> T:
        """This run's one instance of ``kind`` (made by ``kind()`` on first use), for parts
        of a job that pass things to each other outside the dataflow: the Kafka source's
        offsets board, which an offsets-storing sink reads."""
        instance = self._shared.get(kind)
        if instance is None:
            instance = self._shared[kind] = kind()
        return instance
