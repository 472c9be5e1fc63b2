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
- when the session grows: its new bounds, kept aside (``_Grown``, integer microseconds,
  no window object per element) until :meth:`FastSessionPath.sync` writes them out as
  the general path would have: the key's session set (``window-state`` under ``(None,
  "merging-windows")``, the same plain rows) and its trigger and cleanup timers moved
  from the old end to the new one. That happens when the watermark reaches the old end
  (a session only grows, so none of its timers is due before), before a snapshot, and
  before the logic takes an element of that key. A session grows with nearly every
  element; this writes it out about once per gap of event time (and per checkpoint)
  instead. What a checkpoint holds and when windows fire is the general path's;
  sessions of different keys due at the same instant may fire in another order among
  themselves (the order across keys is not part of the result).

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

import heapq
import itertools
from typing import Any, Final

from streamflow.core.elements import Batch
from streamflow.eventtime.resolution import MICROS_PER_SECOND
from streamflow.runtime.operators.window_fast import WindowOperator, each_through_logic, process_through_logic
from streamflow.runtime.operators.window_state import CONTENTS_STATE, WINDOW_STATE
from streamflow.state.descriptors import MapStateDescriptor
from streamflow.windowing.assigners import EventTimeSessionWindows
from streamflow.windowing.logic import MERGING_WINDOWS, WindowOperatorLogic
from streamflow.windowing.merging import MergingWindowSet
from streamflow.windowing.store import ABSENT
from streamflow.windowing.triggers import EventTimeTrigger
from streamflow.eventtime.windows import TimeWindow

__all__ = ["FastSessionPath"]

_SESSIONS_ENTRY: Final = (None, MERGING_WINDOWS)  # the key's session set in the window-state map
_NONE: Final[dict[Any, Any]] = {}
_INF: Final = float("inf")


class FastSessionPath:
    """The batch loop of one session window operator subtask (see the module docstring)."""

    __slots__ = (
        "_op", "_logic", "_contents", "_other", "_gap", "_lateness", "_reduce", "_aggregate", "_moved", "_moved_ends",
        "_order",
    )  # fmt: skip

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
        # key -> its session grown here since its session set and timers were last
        # written (see sync)
        self._moved: dict[Any, _Grown] = {}
        # (end of the window with the timers, order, key) of each key in _moved; stale
        # entries (the key synced since) are skipped
        self._moved_ends: list[tuple[float, int, Any]] = []
        self._order = itertools.count()  # (keys need not be comparable)

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
            self.sync()
            return each_through_logic(op, logic, batch, keys, key_groups)
        late_positions: dict[int, Any] = {}
        contents_table, other_table = self._contents, self._other
        cached_sessions = logic._sessions_of
        gap = self._gap
        reduce, aggregate = self._reduce, self._aggregate
        moved, moved_ends, order = self._moved, self._moved_ends, self._order
        watermark = logic.watermark
        last_key: Any = ABSENT
        for index, record in enumerate(batch.records):
            timestamp = timestamps[index]
            key = keys[index]
            grown = moved.get(key)
            if grown is not None:
                if timestamp is None:
                    self._through_logic(batch, index, keys, key_groups, late_positions)
                    last_key = ABSENT
                    continue
                start_us, end_us = grown.start, grown.end
            else:
                key_group = key_groups[index]
                group = other_table.get(key_group)
                entries = None if group is None else group.get(key)
                raw = None if entries is None else entries.get(_SESSIONS_ENTRY)
                cached = None if raw is None else cached_sessions.get(key)
                if timestamp is None or cached is None or cached[0] is not raw or len(raw) != 1:
                    self._through_logic(batch, index, keys, key_groups, late_positions)
                    last_key = ABSENT
                    continue
                sessions = cached[1]
                ((window, state_window),) = sessions._mapping.items()
                start_us, end_us = round(window.start * MICROS_PER_SECOND), round(window.end * MICROS_PER_SECOND)
            at = round(timestamp * MICROS_PER_SECOND)
            if at > end_us or at + gap < start_us:  # a session of its own
                self._through_logic(batch, index, keys, key_groups, late_positions)
                last_key = ABSENT
                continue
            new_start = at if at < start_us else start_us
            new_end = at + gap if at + gap > end_us else end_us
            if (new_end - 1) / MICROS_PER_SECOND <= watermark:  # (max_timestamp) over, or firing at once: the logic's
                self._through_logic(batch, index, keys, key_groups, late_positions)
                last_key = ABSENT
                continue
            if grown is not None:
                key_contents, state_window = grown.contents, grown.state_window
            else:
                found = contents_table.get(key_group, _NONE).get(key)
                if found is None:  # (a session whose first element failed: no contents yet)
                    self._through_logic(batch, index, keys, key_groups, late_positions)
                    last_key = ABSENT
                    continue
                key_contents = found
            stored = key_contents.get(state_window, ABSENT)
            try:
                if reduce is not None:
                    value = record if stored is ABSENT else reduce(stored, record)
                else:
                    value = aggregate.add(record, aggregate.create_accumulator() if stored is ABSENT else stored)
            except Exception as exc:
                op._on_error(exc, batch, index)
                continue
            key_contents[state_window] = value
            if grown is not None:
                grown.start, grown.end = new_start, new_end
            elif new_start != start_us or new_end != end_us:  # grown now: written out in sync()
                assert entries is not None  # (it holds raw)
                moved[key] = _Grown(key_group, window, state_window, new_start, new_end, key_contents, entries, sessions)
                heapq.heappush(moved_ends, (window.max_timestamp, next(order), key))
            last_key = key
        if last_key is not ABSENT:
            op.current_key = last_key
        return late_positions

    def _through_logic(
        self, batch: Batch, index: int, keys: list[Any], key_groups: list[int], late_positions: dict[int, Any]
    ) -> None:
        """Record ``index`` the general way, its key's timers moved first (the logic reads
        and deletes them as it merges sessions)."""
        if keys[index] in self._moved:
            self._sync_key(keys[index])
        process_through_logic(self._op, self._logic, batch, index, keys, key_groups, late_positions)

    def sync(self, watermark: float = _INF) -> None:
        """Move the timers of the sessions grown since their timers last moved, from the
        old end to the new one: of every such session before a snapshot (no argument),
        of those whose timers the ``watermark`` would fire before timers fire. A session
        only grows, so one whose old end is not due yet has no timer due either; its
        timers move when that end comes up or at the next snapshot."""
        moved, ends = self._moved, self._moved_ends
        if watermark == _INF:
            for key in list(moved):
                self._sync_key(key)
            ends.clear()
            return
        while ends and ends[0][0] <= watermark:
            _, _, key = heapq.heappop(ends)
            if key in moved:
                self._sync_key(key)

    def _sync_key(self, key: Any) -> None:
        """Write out ``key``'s grown session: its session set as the general path writes
        it, its timers moved as the general path moves them on a merge (the merged
        window's trigger timer, the old window's trigger and cleanup timers deleted, the
        merged window's cleanup timer)."""
        grown = self._moved.pop(key)
        session = TimeWindow.of_micros(grown.start, grown.end)
        state_window = grown.state_window
        mapping = grown.sessions._mapping
        mapping.clear()
        mapping[session] = state_window
        raw = [[session.start, session.end, state_window.start, state_window.end]]
        grown.entries[_SESSIONS_ENTRY] = raw
        self._logic._sessions_of[key] = (raw, grown.sessions)
        timers = self._op.event_timers
        lateness = self._lateness
        timer_key = (key, session)
        fires_at = session.max_timestamp
        timers.register(fires_at, timer_key, grown.key_group)
        old_key = (key, grown.registered)
        timers.delete(grown.registered.max_timestamp, old_key, grown.key_group)
        if lateness:  # (else the cleanup timers are the trigger timers)
            timers.delete(grown.registered.max_timestamp + lateness, old_key, grown.key_group)
            timers.register(fires_at + lateness, timer_key, grown.key_group)


class _Grown:
    """A key's session grown on the fast path since its state was last written out: its
    bounds (µs) so far, and what writing it out and the next elements need."""

    __slots__ = ("key_group", "registered", "state_window", "start", "end", "contents", "entries", "sessions")

    def __init__(
        self, key_group: int, registered: TimeWindow, state_window: TimeWindow, start: int, end: int,
        contents: dict[Any, Any], entries: dict[Any, Any], sessions: MergingWindowSet,
    ) -> None:
        self.key_group = key_group
        self.registered = registered  # the window the session set and the timers still hold
        self.state_window = state_window  # where its contents are
        self.start = start
        self.end = end
        self.contents = contents  # the key's contents map
        self.entries = entries  # the key's window-state map (its session set is in there)
        self.sessions = sessions
