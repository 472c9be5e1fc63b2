"""The functions users write, and the contexts the runtime hands them.

Any method below may be a plain ``def`` or an ``async def``; the runtime checks once, at
open, and awaits only the async ones. Plain callables work wherever a one-method
function is expected (``map(lambda r: ...)``).

Lifecycle of every function, driven by its operator subtask:
``open(ctx)`` -> ``initialize_state`` (CheckpointedFunction) -> process_element /
on_timer ... -> ``snapshot_state`` at each barrier -> ``notify_checkpoint_complete(n)``
-> ... -> ``close()``. ``close`` is not called after a crash.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from streamflow.state.backend import KeyedStateStore

if TYPE_CHECKING:
    from streamflow.state.operator import OperatorStateStore


class RuntimeContext(KeyedStateStore, Protocol):
    """Where a function runs, and its keyed state when after key_by: ``get_state``
    returns the handle for a descriptor (a ``ValueState[T]`` for a
    ``ValueStateDescriptor[T]``, ...), which follows the current key; StateError when
    the input is not keyed."""

    job_name: str
    operator_uid: str
    subtask_index: int
    parallelism: int
    max_parallelism: int

    def current_processing_time(self) -> float: ...


class Function:
    """Optional base: ``open`` and ``close`` hooks. Subclassing is not required."""

    def open(self, ctx: RuntimeContext) -> Any:
        return None

    def close(self) -> Any:
        return None


class Collector(Protocol):
    def collect(self, value: Any) -> None: ...


class TimerService(Protocol):
    """Timers of the current key. Times are float seconds (processing time: the job clock)."""

    def current_processing_time(self) -> float: ...

    def current_watermark(self) -> float: ...

    def register_processing_time_timer(self, timestamp: float) -> None: ...

    def delete_processing_time_timer(self, timestamp: float) -> None: ...

    def register_event_time_timer(self, timestamp: float) -> None: ...

    def delete_event_time_timer(self, timestamp: float) -> None: ...


class ProcessContext(Protocol):
    def current_processing_time(self) -> float: ...

    def current_watermark(self) -> float: ...


class KeyedContext(ProcessContext, Protocol):
    timer_service: TimerService

    def get_current_key(self) -> Any: ...


class ProcessFunction(Function):
    """One record in, any number out through ``out.collect``."""

    def process_element(self, value: Any, ctx: ProcessContext, out: Collector) -> Any:
        raise NotImplementedError


class KeyedProcessFunction(Function):
    """Like ProcessFunction, after key_by: keyed state and timers of the current key."""

    def process_element(self, value: Any, ctx: KeyedContext, out: Collector) -> Any:
        raise NotImplementedError

    def on_timer(self, timestamp: float, ctx: KeyedContext, out: Collector) -> Any:
        """A timer registered for ``ctx.get_current_key()`` fired."""
        return None


class FunctionInitializationContext(Protocol):
    is_restored: bool
    operator_state_store: OperatorStateStore


class FunctionSnapshotContext(Protocol):
    checkpoint_id: int


@runtime_checkable
class CheckpointedFunction(Protocol):
    """Operator (non-keyed) state: lists kept by the function, saved at each barrier.

    ``initialize_state`` runs after ``open`` on every (re)start; ``ctx.is_restored``
    says whether state came from a checkpoint. ``snapshot_state`` runs at each barrier:
    copy what you keep in fields into the operator state there.
    """

    def snapshot_state(self, ctx: FunctionSnapshotContext) -> Any: ...

    def initialize_state(self, ctx: FunctionInitializationContext) -> Any: ...


class CheckpointListener(abc.ABC):
    """Told when a checkpoint completed or was aborted, as Flink's CheckpointListener.

    ``notify_checkpoint_complete(n)`` runs once checkpoint ``n`` is durable (what a
    function did up to its barrier is safe); ``notify_checkpoint_aborted(n)`` when ``n``
    timed out or was declined, and does nothing unless overridden. Both may be async.

    Subclassing is optional: the runtime calls each hook a function defines, by name, so
    a class that only defines ``notify_checkpoint_complete`` is called too (and
    ``isinstance(fn, CheckpointListener)`` is True for it).
    """

    @abc.abstractmethod
    def notify_checkpoint_complete(self, checkpoint_id: int) -> Any:
        """Checkpoint ``checkpoint_id`` is complete."""

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> Any:
        """Checkpoint ``checkpoint_id`` was aborted; the next one covers its work."""
        return None

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        if cls is CheckpointListener and _defines(other, "notify_checkpoint_complete"):
            return True
        return super().__subclasshook__(other)  # NotImplemented: the usual rules decide


def is_checkpointed_function(fn: Any) -> bool:
    """Whether ``fn`` keeps operator state: it defines both ``snapshot_state`` and
    ``initialize_state`` (subclassing :class:`CheckpointedFunction` is optional)."""
    return callable(getattr(fn, "snapshot_state", None)) and callable(getattr(fn, "initialize_state", None))


def checkpoint_hook(fn: Any, name: str) -> Callable[[int], Any] | None:
    """``fn``'s checkpoint notification method ``name`` (``"notify_checkpoint_complete"``
    or ``"notify_checkpoint_aborted"``), or None when it has none: each hook is optional
    on its own, whatever ``fn`` subclasses."""
    hook = getattr(fn, name, None)
    return hook if callable(hook) else None


def _defines(cls: type, name: str) -> bool:
    return any(callable(vars(base).get(name)) for base in cls.__mro__)
