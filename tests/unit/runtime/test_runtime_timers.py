"""TimerQueue: timers of one timestamp in registration order (keys never compared, so a
window operator's ``(key, window)`` keys work), ``pop_next`` handing out timers
registered meanwhile, deletion, and a snapshot without deleted or duplicate entries
that restores by key group."""

from __future__ import annotations

from streamflow.runtime.timers import TimerQueue
from streamflow.windowing import TimeWindow


def test_timers_of_one_time_come_in_registration_order_whatever_their_keys() -> None:
    timers = TimerQueue()
    keys = [("k", TimeWindow(0.0, 10.0)), ("k", TimeWindow(5.0, 15.0)), None, object()]
    for key in keys:
        timers.register(9.0, key, 1)  # same time, same key group: keys would have to be compared
    timers.register(3.0, "early", 2)
    assert [key for _, _, key in timers.pop_due(9.0)] == ["early", *keys]


def test_pop_next_hands_out_timers_registered_while_firing() -> None:
    timers = TimerQueue()
    timers.register(5.0, "a", 0)
    fired = []
    while (due := timers.pop_next(10.0)) is not None:
        fired.append(due)
        if due[2] == "a":
            timers.register(7.0, "b", 0)  # due too: fires in the same pass
            timers.register(11.0, "c", 0)  # not yet
    assert fired == [(5.0, 0, "a"), (7.0, 0, "b")]
    assert timers.next_time() == 11.0 and len(timers) == 1


def test_a_deleted_timer_never_fires_and_registering_twice_keeps_one() -> None:
    timers = TimerQueue()
    timers.register(1.0, "a", 0)
    timers.register(1.0, "a", 0)
    timers.register(2.0, "b", 0)
    timers.delete(2.0, "b")
    assert timers.pop_due(5.0) == [(1.0, 0, "a")]
    assert timers.next_time() is None and len(timers) == 0


def test_the_snapshot_holds_each_live_timer_once_in_order_and_restores_by_key_group() -> None:
    timers = TimerQueue()
    timers.register(4.0, "x", 0)
    timers.register(2.0, ("y", TimeWindow(0.0, 2.0)), 5)
    timers.delete(4.0, "x")
    timers.register(4.0, "x", 0)  # deleted, then registered again: two heap entries, one timer
    timers.register(3.0, "gone", 1)
    timers.delete(3.0, "gone")
    snapshot = timers.snapshot()
    assert snapshot == [(2.0, 5, ("y", TimeWindow(0.0, 2.0))), (4.0, 0, "x")]
    restored = TimerQueue()
    restored.restore(snapshot, range(0, 4), 128)  # this subtask owns key groups 0..3
    assert restored.snapshot() == [(4.0, 0, "x")]
