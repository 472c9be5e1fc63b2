"""Windows through savepoints. Rescaling: a job at parallelism 1 stops with a savepoint while
windows are open and their timers pending, a job at parallelism 3 resumes from it and
stops with another, a job at parallelism 2 finishes. The committed output (exactly-once
file sink) must equal the hand computation: every window fired once, with all its
records, whichever job fired it; the window contents and timers moved by key group. Run
on the heap, on RocksDB (incremental checkpoints; savepoints canonical), and alternating
between the two.

And a window that fired before a savepoint does not fire again in the job that resumes
from it, for a record that was late before (the operator keeps the event time it reached).

Events: ``u0``..``u4`` are active in even 50-second blocks and ``u5``..``u9`` in odd
ones, a record every 5 s each, so a user's sessions (gap 30 s) end between blocks and
each block spans minutes (tumbling, 60 s) that are open when a job stops.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from event_time_kit import Count, wait_for

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.checkpoint.serde import decode
from streamflow.connectors.file_sink import ExactlyOnceFileSink, read_committed_lines
from streamflow.connectors.generator import GeneratorSource
from streamflow.eventtime import WatermarkStrategy
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.savepoint import locate_snapshot
from streamflow.state import EmbeddedRocksDBStateBackend
from streamflow.windowing import EventTimeSessionWindows, ProcessWindowFunction, TumblingEventTimeWindows

EVENTS = [(f"u{(i % 5) + 5 * ((i // 50) % 2)}", float(i), i) for i in range(600)]  # (user, time, value)
MAX_PARALLELISM = 128


def paced_events(until: int | None) -> Any:
    """The events from a restored position, paced; with ``until``, the source waits
    before event ``until`` (so a savepoint taken then holds exactly the events before it,
    however long it takes)."""

    async def events(ctx: Any, position: Any) -> Any:
        for index in range(position or 0, len(EVENTS)):
            if index == until:
                await asyncio.Event().wait()
            yield EVENTS[index], index + 1
            if index % 10 == 9:
                await asyncio.sleep(0.01)

    return events


def event_time(event: tuple[str, float, int]) -> float:
    return event[1]


class Sum(Count):
    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + value[2]


class Line(ProcessWindowFunction):
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        for result in elements:
            out.collect(f"{self.kind} {key} {context.window.start:g} {context.window.end:g} {result}")


def job(
    parallelism: int, checkpoints: Path, out: Path, rocksdb: Path | None = None, until: int | None = None
) -> StreamEnvironment:
    """The windows job, its source waiting before event ``until``; with ``rocksdb`` its
    state is in RocksDB there (incremental checkpoints)."""
    env = StreamEnvironment(parallelism=parallelism, max_parallelism=MAX_PARALLELISM)
    env.set_restart_strategy(RestartStrategy.none())
    env.enable_checkpointing(0.1, directory=checkpoints)
    if rocksdb is not None:
        env.set_state_backend(EmbeddedRocksDBStateBackend(rocksdb, memory_budget=16 << 20))
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(event_time).with_emit_interval(0.02)
    keyed = env.from_source(GeneratorSource(paced_events(until)), watermark_strategy=strategy).uid("events").set_parallelism(
        1
    ).key_by(lambda e: e[0])
    minutes = keyed.window(TumblingEventTimeWindows.of(60.0)).aggregate(Sum(), window_function=Line("minute")).uid(
        "minutes"
    )
    sessions = keyed.window(EventTimeSessionWindows.with_gap(30.0)).aggregate(
        Count(), window_function=Line("session")
    ).uid("sessions")
    minutes.union(sessions).sink_to(ExactlyOnceFileSink(out)).uid("out")
    return env


def expected() -> Counter[str]:
    minutes: dict[tuple[str, float], int] = defaultdict(int)
    times: dict[str, list[float]] = defaultdict(list)
    for user, ts, value in EVENTS:
        minutes[(user, ts // 60 * 60)] += value
        times[user].append(ts)
    lines = [f"minute {user} {start:g} {start + 60:g} {total}" for (user, start), total in minutes.items()]
    for user, stamps in times.items():
        group = [stamps[0]]
        for ts in stamps[1:]:
            if ts - group[-1] <= 30.0:
                group.append(ts)
            else:
                lines.append(f"session {user} {group[0]:g} {group[-1] + 30:g} {len(group)}")
                group = [ts]
        lines.append(f"session {user} {group[0]:g} {group[-1] + 30:g} {len(group)}")
    return Counter(lines)


def records_read(client: Any) -> int:
    return int(client.metrics()["tasks"].get("events[0]", {}).get("source_records_out", 0))


async def stop_after(client: Any, records: int, savepoints: Path) -> Path:
    await wait_for(lambda: records_read(client) >= records, timeout=30, what=f"{records} records read")
    path = await client.stop_with_savepoint(savepoints)
    assert (await client.wait()).stopped_with_savepoint == path
    return path


async def open_windows(savepoint: Path, uid: str) -> tuple[set[int], int]:
    """The key groups with window contents, and the number of timers, in a savepoint."""
    snapshot = await locate_snapshot(savepoint)
    groups: set[int] = set()
    timers = 0
    for handle in snapshot.metadata.operators[uid].subtasks.values():
        state = decode(await snapshot.storage.read_state(snapshot.completed.checkpoint_id, handle))
        groups |= {int(g) for g, keys in state["keyed"]["states"]["window-contents"]["key_groups"].items() if keys}
        timers += len(state["timers"]["event"])
    return groups, timers


@pytest.mark.parametrize("backends", ["heap", "rocksdb", "heap-rocksdb-heap", "rocksdb-heap-rocksdb"])
async def test_open_windows_and_pending_timers_rescale_1_3_2_through_savepoints_exactly(
    tmp_path: Path, backends: str
) -> None:
    """The three jobs on one backend, or alternating (savepoints are canonical: windows
    and timers move between the heap and RocksDB, which keeps timers in its database)."""
    out, savepoints = tmp_path / "out", tmp_path / "savepoints"
    stages = backends.split("-") if "-" in backends else [backends] * 3
    first_db, second_db, third_db = (tmp_path / f"rocksdb-{n}" if b == "rocksdb" else None for n, b in enumerate(stages))
    first = await stop_after(job(1, tmp_path / "chk-1", out, first_db, 200).execute_async("windows"), 200, savepoints)
    for uid in ("minutes", "sessions"):
        groups, timers = await open_windows(first, uid)
        assert groups and timers, f"{uid}: no open window or timer in the first savepoint"
    second = await stop_after(
        job(3, tmp_path / "chk-3", out, second_db, 400).execute_async("windows", from_savepoint=first), 200, savepoints
    )
    groups, timers = await open_windows(second, "minutes")
    assert groups and timers
    # each of the 3 subtasks stored exactly the key groups it owns
    snapshot = await locate_snapshot(second)
    for subtask, handle in snapshot.metadata.operators["minutes"].subtasks.items():
        state = decode(await snapshot.storage.read_state(snapshot.completed.checkpoint_id, handle))
        owned = key_group_range(MAX_PARALLELISM, 3, subtask)
        stored = {int(g) for g in state["keyed"]["states"]["window-contents"]["key_groups"]}
        assert stored <= set(owned)
        assert all(owned.start <= group < owned.stop for _, group, _ in state["timers"]["event"])
    await job(2, tmp_path / "chk-2", out, third_db).execute("windows", from_savepoint=second)
    assert Counter(read_committed_lines(out)) == expected()


def test_the_events_spread_over_key_groups_of_every_subtask() -> None:
    """The rescale above moves keys between subtasks: at 3 and at 2 subtasks every subtask owns users."""
    groups = {key_group_for(user, MAX_PARALLELISM) for user, _, _ in EVENTS}
    for parallelism in (2, 3):
        owners = {next(s for s in range(parallelism) if g in key_group_range(MAX_PARALLELISM, parallelism, s)) for g in groups}
        assert owners == set(range(parallelism))


async def test_a_window_that_fired_before_the_savepoint_does_not_fire_again_for_a_late_record(tmp_path: Path) -> None:
    events = [("k", 10.0, 1), ("k", 70.0, 1), ("k", 20.0, 1), ("k", 130.0, 1)]

    async def two_then_wait(ctx: Any, position: Any) -> Any:
        for index in range(position or 0, len(events)):
            if index == 2 and not ctx.restored:
                await asyncio.Event().wait()  # the first job stops here; the third event is late in any run
            yield events[index], index + 1

    def build(checkpoints: Path, out: Path) -> StreamEnvironment:
        env = StreamEnvironment(parallelism=1)
        env.set_restart_strategy(RestartStrategy.none())
        env.enable_checkpointing(0.1, directory=checkpoints)
        strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(event_time).with_emit_interval(0.02)
        env.from_source(GeneratorSource(two_then_wait), watermark_strategy=strategy).uid("events").key_by(
            lambda e: e[0]
        ).window(TumblingEventTimeWindows.of(60.0)).aggregate(Count(), window_function=Line("minute")).uid(
            "minutes"
        ).sink_to(ExactlyOnceFileSink(out)).uid("out")
        return env

    out = tmp_path / "out"
    client = build(tmp_path / "chk-1", out).execute_async("late-after-restore")
    await wait_for(
        lambda: out.exists() and read_committed_lines(out) == ["minute k 0 60 1"], timeout=30, what="minute 0 committed"
    )
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoints")
    await client.wait()
    result = await build(tmp_path / "chk-2", out).execute("late-after-restore", from_savepoint=savepoint)
    assert sorted(read_committed_lines(out)) == ["minute k 0 60 1", "minute k 120 180 1", "minute k 60 120 1"]
    assert result.metrics["operators"]["minutes[0]"]["records_late_dropped"] == 1  # 20, as before the savepoint
