"""The async operator's queue, without an event loop: what starts, what may go out."""

from __future__ import annotations

from typing import Any

from streamflow.api.async_io import AsyncOrdering
from streamflow.core.elements import Watermark
from streamflow.runtime.operators.async_queue import AsyncEntry, AsyncQueue


def entry(seq: int, key: Any = None) -> AsyncEntry:
    return AsyncEntry(seq, f"record-{seq}", seq, None, key)


def seqs(elements: list[Any]) -> list[Any]:
    return [e.timestamp if isinstance(e, Watermark) else e.seq for e in elements]


def test_ordered_releases_the_head_only_and_watermarks_in_place() -> None:
    queue = AsyncQueue(10, AsyncOrdering.ORDERED)
    a, b, c = entry(1), entry(2), entry(3)
    assert queue.add(a) == [a] and queue.add(b) == [b]
    assert queue.add_watermark(Watermark(5.0)) is True
    queue.add(c)
    queue.complete(c)
    queue.complete(b)
    assert queue.pop_ready() == []
    queue.complete(a)
    assert seqs(queue.pop_ready()) == [1, 2, 5.0, 3]
    assert len(queue) == 0 and queue.empty


def test_unordered_segments_release_in_completion_order_but_never_across_a_watermark() -> None:
    queue = AsyncQueue(10, AsyncOrdering.UNORDERED)
    first = [entry(1), entry(2)]
    for e in first:
        queue.add(e)
    queue.add_watermark(Watermark(1.0))
    queue.add_watermark(Watermark(2.0))  # two in a row
    later = entry(3)
    queue.add(later)
    queue.complete(later)
    queue.complete(first[1])
    assert seqs(queue.pop_ready()) == [2]
    assert len(queue) == 2
    queue.complete(first[0])
    assert seqs(queue.pop_ready()) == [1, 1.0, 2.0, 3]
    assert queue.empty and queue.add_watermark(Watermark(3.0)) is False  # nothing held: passes at once


def test_capacity_bounds_running_calls_and_the_rest_waits_to_start() -> None:
    queue = AsyncQueue(2, AsyncOrdering.UNORDERED)
    entries = [entry(i) for i in range(4)]  # more than capacity, as restored inputs after a rescale
    started = [e for x in entries for e in queue.add(x)]
    assert [e.seq for e in started] == [0, 1] and queue.running == 2 and queue.full
    assert [e.seq for e in queue.complete(entries[1])] == [2]
    assert queue.running == 2 and len(queue) == 4
    queue.pop_ready()
    assert len(queue) == 3


def test_per_key_starts_one_call_per_key_and_the_next_when_it_completes() -> None:
    queue = AsyncQueue(10, AsyncOrdering.PER_KEY)
    a1, b1, a2, a3 = entry(1, "a"), entry(2, "b"), entry(3, "a"), entry(4, "a")
    assert queue.add(a1) == [a1] and queue.add(b1) == [b1]
    assert queue.add(a2) == [] and queue.add(a3) == []
    assert queue.complete(b1) == []
    assert queue.complete(a1) == [a2]
    assert queue.complete(a2) == [a3]
    assert seqs(queue.pop_ready()) == [2, 1, 3]
    queue.complete(a3)
    assert seqs(queue.pop_ready()) == [4] and queue.empty


def test_held_entries_are_everything_not_popped_in_arrival_order() -> None:
    for ordering in AsyncOrdering:
        queue = AsyncQueue(10, ordering)
        entries = [entry(i, key="k" if ordering is AsyncOrdering.PER_KEY else None) for i in range(5)]
        for e in entries[:3]:
            queue.add(e)
        queue.add_watermark(Watermark(1.0))
        for e in entries[3:]:
            queue.add(e)
        if ordering is AsyncOrdering.PER_KEY:
            queue.complete(entries[0])
        else:
            queue.complete(entries[2])
            queue.complete(entries[0])
        queue.pop_ready()
        # ORDERED: 2 is done but behind 1; UNORDERED: 2 and 0 went out; PER_KEY: 0 went out
        expected = [1, 3, 4] if ordering is AsyncOrdering.UNORDERED else [1, 2, 3, 4]
        assert [e.seq for e in queue.held_entries()] == expected, ordering
