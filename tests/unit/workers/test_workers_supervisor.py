"""The local supervisor of N worker processes, on a trivial worker program (real processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from streamflow.config import RestartStrategy
from streamflow.workers.supervisor import EXIT_CANCELLED, Supervisor

PROBE = Path(__file__).with_name("worker_probe.py")
QUICK = RestartStrategy.fixed_delay(2, 0.05)


def supervisor(directory: Path, plan: str, workers: int = 3, restart: RestartStrategy = QUICK) -> Supervisor:
    commands = [[sys.executable, str(PROBE), str(directory), "--worker-index", str(i)] for i in range(workers)]
    return Supervisor(commands, restart=restart, env={**os.environ, "PROBE_PLAN": plan, "PROBE_WORKERS": str(workers)})


def starts(directory: Path, index: int) -> int:
    path = directory / f"started-{index}"
    return path.read_text().count("\n") if path.exists() else 0


async def until_started(directory: Path, indices: range) -> None:
    async with asyncio.timeout(20):
        while not all(starts(directory, i) for i in indices):
            await asyncio.sleep(0.02)


async def test_workers_that_finish_end_the_job_with_0(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, "0:exit0,1:exit0,2:exit0")
    assert await sup.run(handle_signals=False) == 0
    assert [starts(tmp_path, i) for i in range(3)] == [1, 1, 1]
    assert [w.exit_codes for w in sup.workers] == [[0], [0], [0]]


async def test_a_killed_worker_is_restarted_alone(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, "0:exit0,1:kill-once,2:exit0")
    assert await sup.run(handle_signals=False) == 0
    assert [starts(tmp_path, i) for i in range(3)] == [1, 2, 1]
    assert sup.workers[1].exit_codes == [-signal.SIGKILL, 0] and sup.workers[1].restarts == 1
    assert sup.workers[0].restarts == sup.workers[2].restarts == 0


async def test_a_worker_killed_past_its_restart_strategy_ends_the_job(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, "0:wait,1:kill-always,2:wait")
    assert await sup.run(handle_signals=False) == 1
    assert starts(tmp_path, 1) == 3  # the first run and QUICK's two restarts
    assert [(tmp_path / f"signal-{i}").read_text() for i in (0, 2)] == ["SIGTERM", "SIGTERM"]


async def test_a_failed_worker_stops_the_others_and_gives_its_exit_code(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, "0:wait,1:fail,2:wait")
    assert await sup.run(handle_signals=False) == 1
    assert starts(tmp_path, 1) == 1  # a failure that is no crash is not retried
    assert [(tmp_path / f"signal-{i}").read_text() for i in (0, 2)] == ["SIGTERM", "SIGTERM"]
    assert [w.exit_codes for w in sup.workers] == [[EXIT_CANCELLED], [1], [EXIT_CANCELLED]]


async def test_a_signal_to_the_supervisor_reaches_every_worker(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, "0:wait,1:wait,2:wait")
    running = asyncio.create_task(sup.run())
    await until_started(tmp_path, range(3))
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C in the terminal would
    assert await running == EXIT_CANCELLED
    assert [(tmp_path / f"signal-{i}").read_text() for i in range(3)] == ["SIGINT"] * 3
    assert all(w.restarts == 0 for w in sup.workers)
    # the handlers are gone again: the default SIGINT handler is back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


async def test_a_cancelled_supervisor_leaves_no_worker_behind(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, "0:wait,1:wait")
    running = asyncio.create_task(sup.run(handle_signals=False), name="supervisor")
    await until_started(tmp_path, range(2))
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert all(w.process is not None and w.process.returncode is not None for w in sup.workers)
    assert [(tmp_path / f"signal-{i}").read_text() for i in range(2)] == ["SIGTERM"] * 2
