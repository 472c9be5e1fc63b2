"""The async operator's semantics, driven as a task drives it (async_harness.py).

Calls are controlled by the tests: :class:`Gated` holds every call until the test
releases it, so "completes in reverse order" or "still in flight at the barrier" is a
fact of the test, not a hope about timing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from async_harness import MAX_PARALLELISM, ORIGIN, AsyncHarness, Out
from streamflow import ErrorPolicy, StateError, UserFunctionError
from streamflow.api.async_io import AsyncFunction, AsyncRetry
from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.connectors import DiscardingSink
from streamflow.core.elements import Watermark
from streamflow.eventtime.status import WatermarkStatus
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.state import ValueStateDescriptor


class Gated:
    """An async function whose calls wait until the test releases them, one by one.

    Tracks the calls in flight (and the most at once), and per key whether two calls of
    one key ever overlapped.
    """

    def __init__(self, key_of: Any = None) -> None:
        self.gates: dict[Any, asyncio.Event] = {}
        self.started: list[Any] = []
        self.in_flight = 0
        self.peak = 0
        self.key_of = key_of
        self.running_keys: set[Any] = set()
        self.overlaps: list[Any] = []
        self.cancelled: list[Any] = []

    def gate(self, record: Any) -> asyncio.Event:
        return self.gates.setdefault(record, asyncio.Event())

    def release(self, *records: Any) -> None:
        for record in records:
            self.gate(record).set()

    async def __call__(self, record: Any) -> Any:
        self.started.append(record)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        key = self.key_of(record) if self.key_of is not None else None
        if key is not None:
            if key in self.running_keys:
                self.overlaps.append(record)
            self.running_keys.add(key)
        try:
            await self.gate(record).wait()
        except asyncio.CancelledError:
            self.cancelled.append(record)
            raise
        finally:
            self.in_flight -= 1
            self.running_keys.discard(key)
        return f"r{record}"


async def settle() -> None:
    """Let the calls that can run, run (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- order ---------------------------------------------------------------------------------


async def test_ordered_mode_emits_in_input_order_whatever_order_calls_complete_in() -> None:
    h = AsyncHarness(Gated(), ordered=True)
    fn = h.fn
    await h.open()
    await h.process([1, 2, 3])
    fn.release(3)
    fn.release(2)
    await settle()
    await h.operator.on_wakeup()
    assert h.out == []  # 1 is still running: nothing may pass it
    fn.release(1)
    await h.serve(lambda: len(h.out) == 3)
    assert h.out == [Out("r1", 0, ORIGIN), Out("r2", 1, ORIGIN), Out("r3", 2, ORIGIN)]


async def test_unordered_mode_emits_as_calls_complete() -> None:
    h = AsyncHarness(Gated(), ordered=False)
    fn = h.fn
    await h.open()
    await h.process([1, 2, 3])
    fn.release(3)
    await h.serve(lambda: len(h.out) == 1)
    fn.release(1)
    await h.serve(lambda: len(h.out) == 2)
    fn.release(2)
    await h.serve(lambda: len(h.out) == 3)
    assert h.records == ["r3", "r1", "r2"]
    assert [o.position for o in h.out if isinstance(o, Out)] == [2, 0, 1]  # each result keeps its record's position


@pytest.mark.parametrize("ordered", [False, True])
async def test_a_watermark_waits_for_every_record_before_it_and_none_after_it_overtakes_it(ordered: bool) -> None:
    h = AsyncHarness(Gated(), ordered=ordered)
    fn = h.fn
    await h.open()
    await h.process([1, 2])
    await h.watermark(10.0)
    await h.process([3])
    await h.watermark(20.0)
    fn.release(3)  # after both watermarks: must wait for them
    await settle()
    await h.operator.on_wakeup()
    assert h.out == []
    fn.release(2)
    await settle()
    await h.operator.on_wakeup()
    assert h.records == ([] if ordered else ["r2"])  # unordered: 2 may pass 1, not the watermark
    fn.release(1)
    await h.serve(lambda: len(h.out) == 5)
    expected_first = ["r1", "r2"] if ordered else ["r2", "r1"]
    assert [o.record if isinstance(o, Out) else o for o in h.out] == [
        *expected_first, Watermark(10.0), "r3", Watermark(20.0)
    ]


@pytest.mark.parametrize("ordered", [False, True])
async def test_results_keep_the_event_timestamps_of_their_input_records(ordered: bool) -> None:
    async def twice(x: int) -> list[str]:
        await asyncio.sleep(0.001 * (4 - x))  # later records complete first
        return [f"r{x}", f"r{x}!"]

    h = AsyncHarness(twice, ordered=ordered, flat=True)
    await h.open()
    await h.process([1, 2, 3], timestamps=[10.0, None, 30.0])
    await h.operator.end_input()
    stamps = {o.record: o.timestamp for o in h.out if isinstance(o, Out)}
    assert stamps == {"r1": 10.0, "r1!": 10.0, "r2": None, "r2!": None, "r3": 30.0, "r3!": 30.0}


async def test_a_watermark_status_is_held_behind_the_records_before_it_like_a_watermark() -> None:
    h = AsyncHarness(Gated(), ordered=False)
    fn = h.fn
    await h.open()
    await h.status(WatermarkStatus.ACTIVE)  # nothing held: passes at once
    await h.process([1], timestamps=[5.0])
    await h.status(WatermarkStatus.IDLE)  # an IDLE ahead of r1 would let event time pass it downstream
    await h.process([2], timestamps=[6.0])
    fn.release(2)
    await settle()
    await h.operator.on_wakeup()
    assert h.out == [WatermarkStatus.ACTIVE]
    fn.release(1)
    await h.serve(lambda: len(h.out) == 4)
    assert h.out == [WatermarkStatus.ACTIVE, Out("r1", 0, ORIGIN, 5.0), WatermarkStatus.IDLE, Out("r2", 1, ORIGIN, 6.0)]


async def test_held_inputs_keep_their_timestamps_through_a_snapshot_and_a_restore() -> None:
    h = AsyncHarness(Gated(), ordered=True)
    await h.open()
    await h.process(["a", "b"], timestamps=[1.5, None])
    snapshot = await h.snapshot()
    assert [(i["record"], i["timestamp"]) for i in snapshot.async_inputs or []] == [("a", 1.5), ("b", None)]
    await h.close()
    stored = OperatorSnapshot.from_stored(snapshot.to_stored())
    again = AsyncHarness(Gated(), ordered=True)
    await again.open([stored])
    again.fn.release("a", "b")
    await again.operator.end_input()
    assert again.out == [Out("ra", 0, ORIGIN, 1.5), Out("rb", 1, ORIGIN, None)]


async def test_a_watermark_with_nothing_held_passes_at_once() -> None:
    h = AsyncHarness(Gated())
    await h.open()
    await h.watermark(5.0)
    assert h.out == [Watermark(5.0)]


async def test_per_key_order_runs_one_call_per_key_at_a_time_and_keeps_each_keys_order() -> None:
    h = AsyncHarness(Gated(key_of=lambda r: r[0]), ordered="per_key", key_selector=lambda r: r[0], capacity=10)
    fn = h.fn
    await h.open()
    records = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
    await h.process(records)
    await settle()
    assert fn.started == [("a", 1), ("b", 1)]  # a2, a3, b2 wait for their key
    fn.release(("b", 2), ("a", 3), ("a", 2))  # released before their turn: still one at a time
    await settle()
    assert fn.started == [("a", 1), ("b", 1)]
    fn.release(("b", 1))
    await h.serve(lambda: len(h.out) == 2)  # b1, then b2 at once
    fn.release(("a", 1))
    await h.serve(lambda: len(h.out) == 5)
    assert fn.overlaps == []
    got = h.records
    assert [r for r in got if r.startswith("r('a'")] == ["r('a', 1)", "r('a', 2)", "r('a', 3)"]
    assert [r for r in got if r.startswith("r('b'")] == ["r('b', 1)", "r('b', 2)"]
    assert got.index("r('b', 2)") < got.index("r('a', 1)")  # other keys overtake a slow one


async def test_keys_are_taken_from_the_batch_when_an_exchange_set_them() -> None:
    h = AsyncHarness(Gated(key_of=lambda r: r % 2), ordered="per_key", key_selector=lambda r: pytest.fail("selector called"))
    fn = h.fn
    await h.open()
    await h.process([1, 3, 2], keys=[1, 1, 0])
    await settle()
    assert fn.started == [1, 2]


# -- capacity --------------------------------------------------------------------------------


async def test_never_more_than_capacity_calls_in_flight_and_a_full_capacity_holds_process() -> None:
    h = AsyncHarness(Gated(), capacity=3, ordered=True)
    fn = h.fn
    await h.open()
    processing = asyncio.create_task(h.process(list(range(10))))
    await settle()
    assert fn.started == [0, 1, 2] and not processing.done()  # backpressure: the batch waits for room
    for record in range(10):
        fn.release(record)
        await settle()
    await asyncio.wait_for(processing, 5)
    await h.operator.end_input()
    assert fn.peak == 3
    assert h.records == [f"r{i}" for i in range(10)]
    metrics = h.operator.extra_metrics()["async"]
    assert metrics["calls"] == 10 and metrics["capacity_wait_seconds"] > 0
    assert metrics["in_flight"] == 0 and metrics["held"] == 0


async def test_end_input_waits_for_every_call_and_emits_held_watermarks() -> None:
    h = AsyncHarness(Gated(), ordered=False)
    fn = h.fn
    await h.open()
    await h.process([1, 2])
    await h.watermark(float("inf"))
    ending = asyncio.create_task(h.operator.end_input())
    await settle()
    assert not ending.done()
    fn.release(1, 2)
    await asyncio.wait_for(ending, 5)
    assert h.out[-1] == Watermark(float("inf")) and sorted(h.records) == ["r1", "r2"]


# -- checkpoints and restore -------------------------------------------------------------------


async def test_a_snapshot_holds_the_inputs_of_calls_in_flight_and_of_results_not_yet_emitted() -> None:
    h = AsyncHarness(Gated(), ordered=True)
    fn = h.fn
    await h.open()
    await h.process([("x", 1), ("y", 2), ("z", 3)])
    fn.release(("x", 1), ("z", 3))  # z is done but waits behind y
    await h.serve(lambda: len(h.out) == 1)
    snapshot = await h.snapshot()
    assert snapshot.async_inputs == [
        {"record": ("y", 2), "position": 1, "origin": ORIGIN, "key": None, "timestamp": None},
        {"record": ("z", 3), "position": 2, "origin": ORIGIN, "key": None, "timestamp": None},
    ]
    assert type(snapshot.async_inputs[0]["record"]) is tuple  # exact values: the task pickles them
    await h.close()
    assert fn.cancelled == [("y", 2)]


async def test_restored_inputs_are_called_again_before_new_records_in_their_order() -> None:
    h = AsyncHarness(Gated(), ordered=True, capacity=2)
    fn = h.fn
    restored = OperatorSnapshot(async_inputs=[
        {"record": 7, "position": 40, "origin": ORIGIN, "key": None},
        {"record": 8, "position": 41, "origin": ORIGIN, "key": None},
        {"record": 9, "position": 42, "origin": ORIGIN, "key": None},
    ])  # fmt: skip
    await h.open([restored])
    await settle()
    assert fn.started == [7, 8]  # three restored, capacity 2: the third waits for a slot
    fn.release(7, 8, 9, 100)
    await h.process([100])
    await h.operator.end_input()
    assert h.out == [Out("r7", 40, ORIGIN), Out("r8", 41, ORIGIN), Out("r9", 42, ORIGIN), Out("r100", 0, ORIGIN)]
    assert h.operator.extra_metrics()["async"]["restored_inputs"] == 3
    assert fn.peak <= 2


def held(records: list[Any], keys: list[Any] | None = None) -> OperatorSnapshot:
    return OperatorSnapshot(async_inputs=[
        {"record": r, "position": i, "origin": ORIGIN, "key": None if keys is None else keys[i]}
        for i, r in enumerate(records)
    ])  # fmt: skip


async def restored_calls(snapshots: list[OperatorSnapshot], parallelism: int, **options: Any) -> list[list[Any]]:
    """What each new subtask calls again after a restore at ``parallelism``."""
    calls = []
    for subtask in range(parallelism):
        h = AsyncHarness(Gated(), subtask=subtask, parallelism=parallelism, capacity=100, **options)
        await h.open(snapshots)
        await settle()
        calls.append(h.fn.started)
        await h.close()
    return calls


async def test_on_rescale_held_inputs_are_dealt_out_evenly_when_not_keyed() -> None:
    old = [held(["a0", "a1", "a2"]), held(["b0", "b1"])]
    assert await restored_calls(old, 2) == [["a0", "a1", "a2"], ["b0", "b1"]]  # unchanged: each keeps its own
    three = await restored_calls(old, 3)
    assert sorted(r for calls in three for r in calls) == ["a0", "a1", "a2", "b0", "b1"]
    assert [len(c) for c in three] == [2, 2, 1]


async def test_on_rescale_held_inputs_follow_their_key_group_and_keep_their_order() -> None:
    keys = [f"user-{i % 5}" for i in range(12)]
    old = [
        held(list(range(0, 6)), keys[0:6]),
        OperatorSnapshot(async_inputs=[
            {"record": r, "position": r, "origin": ORIGIN, "key": keys[r]} for r in range(6, 12)
        ]),
    ]  # fmt: skip
    calls = await restored_calls(old, 3, key_selector=lambda r: keys[r], ordered=True)
    assert sorted(r for c in calls for r in c) == list(range(12))
    for subtask, records in enumerate(calls):
        owned = key_group_range(MAX_PARALLELISM, 3, subtask)
        assert all(key_group_for(keys[r], MAX_PARALLELISM) in owned for r in records)
        assert records == sorted(records)  # old subtask order, and each old subtask's own order


# -- timeouts, retries, errors -----------------------------------------------------------------


async def never(record: Any) -> Any:
    await asyncio.Event().wait()


async def test_a_timeout_fails_the_attempt_naming_operator_record_and_position() -> None:
    h = AsyncHarness(never, timeout=0.02)
    await h.open()
    await h.process(["slow"])
    with pytest.raises(UserFunctionError) as caught:
        await h.operator.end_input()
    message = str(caught.value)
    assert "async operator 'enrich' (subtask 0) failed on record 'slow' at src[0] split-0 @ 0" in message
    assert "after 1 attempt(s): TimeoutError: no result within 0.02 s" in message
    assert caught.value.position == "src[0] split-0 @ 0"
    assert h.operator.extra_metrics()["async"]["timeouts"] == 1


async def test_skip_and_dead_letter_set_failed_records_aside_and_the_rest_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def half_fail(x: int) -> int:
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    skipping = AsyncHarness(half_fail, policy=ErrorPolicy.skip(), ordered=True)
    await skipping.open()
    with caplog.at_level(logging.WARNING, logger="streamflow.operator"):
        await skipping.process([0, 1, 2, 3])
        await skipping.operator.end_input()
    assert skipping.records == [0, 2]
    assert skipping.operator.metrics.records_skipped == 2
    assert "skipped record 1 at src[0] split-0 @ 1 after 1 attempt(s): ValueError: odd 1" in caplog.text

    dead = AsyncHarness(never, policy=ErrorPolicy.dead_letter(DiscardingSink()), timeout=0.01)
    await dead.open()
    await dead.process([5])
    await dead.operator.end_input()
    assert dead.records == []
    assert dead.dead == [{
        "operator": "enrich", "subtask": 0, "position": "src[0] split-0 @ 0",
        "error": "TimeoutError: no result within 0.01 s", "record": 5,
    }]  # fmt: skip
    assert dead.operator.metrics.records_dead_lettered == 1


async def test_retries_call_again_after_an_exception_and_count_the_retries() -> None:
    tries: dict[int, int] = {}

    async def flaky(x: int) -> int:
        tries[x] = tries.get(x, 0) + 1
        if tries[x] < 3:
            raise ConnectionError("try again")
        return x

    h = AsyncHarness(flaky, retry=AsyncRetry.fixed_delay(3, 0.001), ordered=True)
    await h.open()
    await h.process([1, 2])
    await h.operator.end_input()
    assert h.records == [1, 2] and tries == {1: 3, 2: 3}
    metrics = h.operator.extra_metrics()["async"]
    assert metrics["retries"] == 4 and metrics["calls"] == 6 and metrics["failures"] == 0


async def test_exhausted_retries_go_to_the_error_policy_with_the_last_error() -> None:
    async def broken(x: int) -> int:
        raise ConnectionError(f"down for {x}")

    h = AsyncHarness(broken, retry=AsyncRetry.fixed_delay(2, 0.0))
    await h.open()
    await h.process([1])
    with pytest.raises(UserFunctionError, match=r"after 2 attempt\(s\): ConnectionError: down for 1"):
        await h.operator.end_input()


async def test_a_timed_out_attempt_is_retried_like_an_exception() -> None:
    attempts: list[int] = []

    async def slow_first(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            await asyncio.Event().wait()
        return x

    h = AsyncHarness(slow_first, timeout=0.02, retry=AsyncRetry.fixed_delay(2, 0.0))
    await h.open()
    await h.process([4])
    await h.operator.end_input()
    assert h.records == [4] and attempts == [4, 4]
    metrics = h.operator.extra_metrics()["async"]
    assert metrics["timeouts"] == 1 and metrics["retries"] == 1


async def test_flat_map_async_emits_every_result_of_a_call_with_its_records_position() -> None:
    async def pieces(x: int) -> list[int]:
        return [x] * x

    h = AsyncHarness(pieces, flat=True, ordered=True)
    await h.open()
    await h.process([2, 0, 1])
    await h.operator.end_input()
    assert [(o.record, o.position) for o in h.out if isinstance(o, Out)] == [(2, 0), (2, 0), (1, 2)]
    assert h.operator.metrics.records_out == 3


# -- lifecycle ---------------------------------------------------------------------------------


class Session(AsyncFunction):
    """A function with a client session: opened once per subtask, closed at the end."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def open(self, ctx: Any) -> None:
        self.events.append(f"open {ctx.operator_uid}[{ctx.subtask_index}/{ctx.parallelism}]")
        self.ctx = ctx

    async def __call__(self, record: Any) -> Any:
        return record

    async def close(self) -> None:
        self.events.append("close")


async def test_the_function_is_opened_with_the_runtime_context_and_closed() -> None:
    h = AsyncHarness(Session(), subtask=1, parallelism=2)
    await h.open()
    fn = h.fn
    assert isinstance(fn, Session)
    with pytest.raises(StateError, match="an async function has no keyed state"):
        fn.ctx.get_state(ValueStateDescriptor("seen"))
    await h.process([1])
    await h.operator.end_input()
    await h.close()
    assert fn.events == ["open enrich[1/2]", "close"]


async def test_close_cancels_the_calls_in_flight_quietly(caplog: pytest.LogCaptureFixture) -> None:
    h = AsyncHarness(Gated(), capacity=5)
    fn = h.fn
    await h.open()
    await h.process([1, 2, 3])
    await settle()
    with caplog.at_level(logging.DEBUG):
        await h.close()
        await settle()
    assert sorted(fn.cancelled) == [1, 2, 3]
    assert not h.operator._tasks
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_result_the_retry_rejects_is_called_again_and_the_last_one_is_final() -> None:
    answers: dict[int, list[Any]] = {1: [None, "ready"], 2: [None, None]}

    async def cache(x: int) -> Any:
        return answers[x].pop(0)

    retry = AsyncRetry.fixed_delay(2, 0.0, on_result=lambda r: r is None)
    h = AsyncHarness(cache, retry=retry, ordered=True)
    await h.open()
    await h.process([1, 2])
    await h.operator.end_input()
    assert h.records == ["ready", None]  # 2: retries used up, its last result goes out (Flink's rule)
    assert h.operator.extra_metrics()["async"]["retries"] == 2


async def test_a_call_that_ends_while_results_are_being_emitted_is_not_missed() -> None:
    h = AsyncHarness(Gated())
    fn = h.fn
    await h.open()
    await h.process([1, 2])

    async def slow_emit(batch: Any) -> None:  # a downstream that takes its time
        h.out.extend(Out(r, None, None) for r in batch.records)
        fn.release(2)  # the last call ends meanwhile: its wake-up goes to the mailbox
        await settle()

    h.operator.emit = slow_emit
    fn.release(1)
    await asyncio.wait_for(h.operator.end_input(), 2)
    assert h.records == ["r1", "r2"]


async def test_a_cancellation_the_function_raises_by_itself_is_a_failure_not_a_hang() -> None:
    async def gives_up(x: int) -> int:
        raise asyncio.CancelledError  # as some client libraries do on a dropped connection

    h = AsyncHarness(gives_up, policy=ErrorPolicy.skip())
    await h.open()
    await h.process([1])
    await asyncio.wait_for(h.operator.end_input(), 2)
    assert h.records == [] and h.operator.metrics.records_skipped == 1
