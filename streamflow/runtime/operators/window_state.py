"""Window and join state over the keyed state backend, and their timers over the
operator's timer queues: what makes window contents keyed state.

:class:`KeyedWindowStore` is the :class:`~streamflow.windowing.WindowStateStore` of a
window (or interval join) operator subtask. It keeps two map states per key in the
operator's keyed backend, so whatever the backend does for keyed state it does for
windows: checkpoints, savepoints, rescaling by key group, RocksDB:

- ``window-contents``: window -> its contents (the reduced value, the accumulator, or
  the elements), the one value every element touches;
- ``window-state``: ``(namespace, name)`` -> value, for everything else (trigger state,
  per-window and per-key state of a ProcessWindowFunction, a key's session windows, an
  interval join's buffers); the namespace is the window, or None for the key.

The store only uses the map-state handle API (``get`` with a default, ``put``,
``remove``, ``keys``, ``is_empty``), which every backend's handles offer. Values read
from it are written back with ``put`` after a change, as a backend that serializes needs.

:class:`KeyedWindowTimers` is the :class:`~streamflow.windowing.WindowTimerService`: a
window timer is a timer of the operator whose key is ``(key, namespace)``, in the key
group of the key, so it is snapshotted with the keyed state and moves with its key on
rescale. Both rely on the logic's contract: it is called with the current key set to
the key it is given.

:class:`SavedWatermark`: the event time the operator had reached at a checkpoint, kept
with it so that a restored operator judges lateness from there instead of from minus
infinity. Watermarks themselves are not checkpointed (as in Flink: after a restore the
sources make them again from the records they read), but without this a record that was
late before the crash (its window had fired, its output committed) would be on time
again after it, and its window would fire a second time. It is union list state: each
subtask saves its own, and a restored subtask takes the lowest of the ones it gets (on
rescale: of every old subtask's, so no record that was on time for its old subtask is
late for the new one).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from streamflow.state.backend import KeyedStateBackend
from streamflow.state.descriptors import ListStateDescriptor, MapStateDescriptor
from streamflow.state.operator import OperatorStateStore
from streamflow.state.timers import TimerStore
from streamflow.windowing.logic import CONTENTS
from streamflow.windowing.store import ABSENT

__all__ = ["CONTENTS_STATE", "WINDOW_STATE", "KeyedWindowStore", "KeyedWindowTimers", "SavedWatermark"]

CONTENTS_STATE = "window-contents"
WINDOW_STATE = "window-state"
_SAVED_WATERMARK = ListStateDescriptor[float]("event-time-reached")


class KeyedWindowStore:
    """A WindowStateStore over two map states of the keyed backend (see the module docstring)."""

    __slots__ = ("_contents", "_other")

    def __init__(self, backend: KeyedStateBackend) -> None:
        self._contents = backend.get_state(MapStateDescriptor[Any, Any](CONTENTS_STATE))
        self._other = backend.get_state(MapStateDescriptor[Any, Any](WINDOW_STATE))

    def get(self, key: Any, namespace: Hashable | None, name: str) -> Any:
        if name == CONTENTS:
            return self._contents.get(namespace, ABSENT)
        return self._other.get((namespace, name), ABSENT)

    def put(self, key: Any, namespace: Hashable | None, name: str, value: Any) -> None:
        if name == CONTENTS:
            self._contents.put(namespace, value)
        else:
            self._other.put((namespace, name), value)

    def remove(self, key: Any, namespace: Hashable | None, name: str) -> None:
        if name == CONTENTS:
            self._contents.remove(namespace)
        else:
            self._other.remove((namespace, name))

    def remove_namespace(self, key: Any, namespace: Hashable | None) -> None:
        self._contents.remove(namespace)
        other = self._other
        if not other.is_empty():
            for entry in other.keys():
                if entry[0] == namespace:
                    other.remove(entry)


class TimerOwner(Protocol):
    """What the timers read of their operator: its timer queues and the current key group."""

    event_timers: TimerStore
    processing_timers: TimerStore
    current_key_group: int


class KeyedWindowTimers:
    """A WindowTimerService over the operator's timer queues (see the module docstring)."""

    __slots__ = ("_op",)

    def __init__(self, op: TimerOwner) -> None:
        self._op = op

    def register_event_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        op = self._op
        op.event_timers.register(timestamp, (key, namespace), op.current_key_group)

    def delete_event_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        op = self._op
        op.event_timers.delete(timestamp, (key, namespace), op.current_key_group)

    def register_processing_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        op = self._op
        op.processing_timers.register(timestamp, (key, namespace), op.current_key_group)

    def delete_processing_time_timer(self, key: Any, namespace: Hashable, timestamp: float) -> None:
        op = self._op
        op.processing_timers.delete(timestamp, (key, namespace), op.current_key_group)


class SavedWatermark:
    """The operator's event time, saved at each checkpoint (see the module docstring)."""

    __slots__ = ("_state",)

    def __init__(self, store: OperatorStateStore) -> None:
        self._state = store.get_union_list_state(_SAVED_WATERMARK)

    def restored(self) -> float:
        """The event time to start from: the lowest saved one, minus infinity for none."""
        saved = self._state.get()
        return min(saved) if saved else float("-inf")

    def save(self, watermark: float) -> None:
        self._state.update([watermark])
