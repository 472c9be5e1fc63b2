"""The window operator's fast path for event-time sessions that reduce or aggregate, on
the in-memory state backend.

In a session stream most elements land in the one session their key has open: inside it
(nothing changes but the contents) or just past its end (the session grows). The general
path handles both through the whole merging machinery: the assigner builds the element's
window, the key's MergingWindowSet merges the two, the trigger is asked about the merge,
the element and the clear of the old window, and the set is written back sorted, each
step through the state and timer interfaces. Here one loop over the batch does only what
those calls amount to for that case, on the same state:

- the contents of the session's state window (the ``window-contents`` table), folded with
  the reduce or aggregate function;
- when the session grows: its entry in the key's session set (``window-state`` under
  ``(None, "merging-windows")``, the same plain rows the general path writes), its
  trigger and cleanup timers moved from the old end to the new one, in the order the
  general path moves them (so timers due together still fire in the same order).

Every other element goes through :class:`~streamflow.windowing.WindowOperatorLogic` with
its key set: a key with no session or more than one in flight, an element that opens a
session of its own, one without a timestamp, one whose session is already over or would
fire at once (late data and late firings), and any key whose session set the logic has
not read yet (after a restore). Firing is always the logic's. A reduce or aggregate that
raises changes nothing and sends the record to the error policy, as on the general path.

Chosen when the operator opens (:meth:`FastSessionPath.for_operator`): an
:class:`EventTimeSessionWindows` with a fixed gap, the plain :class:`EventTimeTrigger`,
no evictor, a reduce or aggregate function (a ProcessWindowFunction after it is fine),
and a backend that hands out its live tables (the heap backend).
"""

from __future__ import annotations

from typing import Any, Final

from streamflow.core.elements import Batch
from streamflow.eventtime.resolution import MICROS_PER_SECOND
from streamflow.runtime.operators.window_fast import WindowOperator, each_through_logic, process_through_logic
from streamflow.runtime.operators.window_state import CONTENTS_STATE, WINDOW_STATE
from streamflow.state.descriptors import MapStateDescriptor
from streamflow.windowing.assigners import EventTimeSessionWindows
from streamflow.windowing.logic import MERGING_WINDOWS, WindowOperatorLogic
from streamflow.windowing.store import ABSENT
from streamflow.windowing.triggers import EventTimeTrigger
from streamflow.windowing.windows import TimeWindow

__all__ = ["FastSessionPath"]

_SESSIONS_ENTRY: Final = (None, MERGING_WINDOWS)  # the key's session set in the window-state map
_NONE: Final[dict[Any, Any]] = {}


class FastSessionPath:
    """The batch loop of one session window operator subtask (see the module docstring)."""

    __slots__ = ("_op", "_logic", "_contents", "_other", "_gap", "_lateness", "_reduce", "_aggregate")

    def __init__(
        self,
        op: WindowOperator,
        logic: WindowOperatorLogic,
        contents: dict[int, dict[Any, Any]],
        other: dict[int, dict[Any, Any]],
    ) -> None:
        config = logic.config
        self._op = op
        self._logic = logic
        self._contents = contents
        self._other = other
        self._gap: int = config.assigner._gap_us  # type: ignore[attr-defined]
        self._lateness = config.allowed_lateness
        self._reduce = config.reduce_fn
        self._aggregate = config.aggregate_fn

    @classmethod
    def for_operator(cls, op: WindowOperator, logic: WindowOperatorLogic) -> FastSessionPath | None:
        """The fast path for ``op``, or None when its windows need the general one."""
        config = logic.config
        assigner = config.assigner
        if type(assigner) is not EventTimeSessionWindows or assigner.gap_fn is not None:
            return None
        if type(config.trigger) is not EventTimeTrigger or config.evictor is not None:
            return None
        if config.reduce_fn is None and config.aggregate_fn is None:
            return None
        live_table = getattr(op.ctx.keyed_backend, "live_table", None)
        if live_table is None:
            return None
        contents = live_table(MapStateDescriptor[Any, Any](CONTENTS_STATE))
        other = live_table(MapStateDescriptor[Any, Any](WINDOW_STATE))
        if contents is None or other is None:
            return None
        return cls(op, logic, contents, other)

    def process(self, batch: Batch) -> dict[int, Any]:
        """Every record of ``batch`` into its key's session; returns output index -> source
        position of the late records sent to the side output (as the general path)."""
        op, logic = self._op, self._logic
        keys, key_groups = op._keys_of(batch)
        timestamps = batch.timestamps
        if timestamps is None:  # no record has a timestamp: each one is the logic's (an error)
            return each_through_logic(op, logic, batch, keys, key_groups)
        late_positions: dict[int, Any] = {}
        contents_table, other_table = self._contents, self._other
        cached_sessions = logic._sessions_of
        gap, lateness = self._gap, self._lateness
        reduce, aggregate = self._reduce, self._aggregate
        timers = op.event_timers
        register, delete = timers.register, timers.delete
        watermark = logic.watermark
        last_key: Any = ABSENT
        for index, record in enumerate(batch.records):
            timestamp = timestamps[index]
            key = keys[index]
            key_group = key_groups[index]
            group = other_table.get(key_group)
            entries = None if group is None else group.get(key)
            raw = None if entries is None else entries.get(_SESSIONS_ENTRY)
            cached = None if raw is None else cached_sessions.get(key)
            if timestamp is None or cached is None or cached[0] is not raw or len(raw) != 1:
                process_through_logic(op, logic, batch, index, keys, key_groups, late_positions)
                last_key = ABSENT
                continue
            sessions = cached[1]
            mapping = sessions._mapping
            ((window, state_window),) = mapping.items()
            at = round(timestamp * MICROS_PER_SECOND)
            start, end = at / MICROS_PER_SECOND, (at + gap) / MICROS_PER_SECOND
            if start > window.end or end < window.start:  # a session of its own
                process_through_logic(op, logic, batch, index, keys, key_groups, late_positions)
                last_key = ABSENT
                continue
            grown = start < window.start or end > window.end
            session = TimeWindow(min(start, window.start), max(end, window.end)) if grown else window
            fires_at = session.max_timestamp
            if fires_at <= watermark:  # over (late) or firing at once (a late firing): the logic's
                process_through_logic(op, logic, batch, index, keys, key_groups, late_positions)
                last_key = ABSENT
                continue
            key_contents = contents_table.get(key_group, _NONE).get(key)
            if key_contents is None:  # (a session whose first element failed: no contents yet)
                process_through_logic(op, logic, batch, index, keys, key_groups, late_positions)
                last_key = ABSENT
                continue
            stored = key_contents.get(state_window, ABSENT)
            try:
                if reduce is not None:
                    value = record if stored is ABSENT else reduce(stored, record)
                else:
                    value = aggregate.add(record, aggregate.create_accumulator() if stored is ABSENT else stored)
            except Exception as exc:
                op._on_error(exc, batch, index)
                continue
            if grown:
                # As the general path: the merge's trigger timer, the old window's trigger
                # and cleanup timers deleted, the element's trigger timer, the cleanup timer.
                assert entries is not None  # (it holds raw)
                mapping.clear()
                mapping[session] = state_window
                raw = [[session.start, session.end, state_window.start, state_window.end]]
                entries[_SESSIONS_ENTRY] = raw
                cached_sessions[key] = (raw, sessions)
                timer_key = (key, session)
                register(fires_at, timer_key, key_group)
                old_key = (key, window)
                delete(window.max_timestamp, old_key, key_group)
                delete(window.max_timestamp + lateness, old_key, key_group)
                register(fires_at + lateness, timer_key, key_group)
            else:
                timer_key = (key, session)
                register(fires_at, timer_key, key_group)
                register(fires_at + lateness, timer_key, key_group)
            key_contents[state_window] = value
            last_key = key
        if last_key is not ABSENT:
            op.current_key = last_key
        return late_positions
