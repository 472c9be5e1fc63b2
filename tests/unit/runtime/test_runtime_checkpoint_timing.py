"""The phases of a checkpoint in one task, as the task notes them (no event loop)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from streamflow.runtime.checkpoint_timing import CheckpointTimings, subtask_timings


def test_phases_in_order_give_start_delay_alignment_sync_and_async() -> None:
    timings = CheckpointTimings()
    timings.barrier_arrived(3, triggered_at=100.0, now=100.25)
    time.sleep(0.02)
    timings.barrier_arrived(3, triggered_at=100.0, now=100.9)  # a later input: only the first counts
    timings.aligned(3, triggered_at=100.0, now=101.0)
    copy_started = time.perf_counter()
    time.sleep(0.01)
    timings.synced(3, copy_started)
    assert timings.last is None  # the writes are still running
    time.sleep(0.01)
    timings.written(3, size=4096)

    timing = timings.get(3)
    assert timing is not None and timings.last is timing
    assert timing.start_delay == 0.25
    assert 0.02 <= timing.alignment < 1.0
    assert timing.sync_duration is not None and 0.01 <= timing.sync_duration < 1.0
    assert timing.async_duration is not None and 0.01 <= timing.async_duration < 1.0
    assert (timing.size, timing.persisted_bytes, timing.unaligned) == (4096, 0, False)


def test_a_source_is_aligned_the_moment_its_trigger_is_served() -> None:
    timings = CheckpointTimings()
    timings.aligned(1, triggered_at=10.0, now=10.5)  # no barrier_arrived: a source
    timing = timings.get(1)
    assert timing is not None
    assert timing.start_delay == 0.5
    assert timing.alignment < 0.01


def test_last_is_the_newest_finished_checkpoint_and_old_ones_are_forgotten() -> None:
    timings = CheckpointTimings()
    for n in range(1, 12):
        timings.aligned(n, triggered_at=0.0, now=0.0)
        timings.synced(n, time.perf_counter())
    timings.written(11, size=1)
    timings.written(10, size=1)  # finishing late does not make an older one the last
    assert timings.last is not None and timings.last.checkpoint_id == 11
    assert timings.get(1) is None and timings.get(4) is not None


def test_subtask_timings_collects_by_task_name_and_skips_tasks_the_barrier_never_reached() -> None:
    noted = CheckpointTimings()
    noted.aligned(5, triggered_at=0.0, now=0.0)
    tasks = [
        SimpleNamespace(name="a[0]", checkpoint_timings=noted),
        SimpleNamespace(name="b[0]", checkpoint_timings=CheckpointTimings()),  # barrier not there yet
    ]
    found = subtask_timings(tasks, 5)
    assert list(found) == ["a[0]"] and found["a[0]"].checkpoint_id == 5
