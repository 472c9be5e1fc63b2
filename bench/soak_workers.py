"""The soak's multi-worker mode (``soak.py --workers N``, Kafka target): the job runs as N
worker processes, and the kills are spread over them.

One round: the N workers of ``soak_job.py --workers N --worker-index i`` start on one
checkpoint root (their exchange topics on the soak's broker). Then, until the round's
share of ``--kills`` is spent: wait a random ``--kill-delay`` (seconds since the last
kill), SIGKILL one live worker chosen at random, and start it again at once, alone,
on its own checkpoints (what a supervisor does), while the others keep running. A worker
that exits on its own with an error is started again and counted as an unexpected exit.
When the kills are spent, every worker runs to its end (the input is bounded).

Besides the output check of every round, no transaction may be left open on the job's
exchange topics (a plain read_committed and read_uncommitted consumer compare their end
offsets; nothing of streamflow's is used to judge).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from soak_process import KILLED, JobProcess
from soak_report import Kill, TargetReport

MAX_FAILED_IN_A_ROW = 3
END_TIMEOUT = 600.0  # seconds for the workers to finish once the kills are spent


class WorkerSoak(Protocol):
    """What the worker loop uses of ``soak.TargetSoak``."""

    report: TargetReport
    workdir: Path

    def say(self, line: str) -> None: ...
    def kill_delay(self) -> float: ...
    def pick(self, choices: list[int]) -> int: ...
    def note_ended(self, process: JobProcess) -> None: ...
    @property
    def kills_wanted(self) -> int: ...


async def run_workers(
    soak: WorkerSoak, number: int, argvs: list[list[str]], committed_count: Callable[[], Awaitable[int | None]]
) -> bool:
    """One round of N workers (``argvs[i]`` starts worker i); True once all finished."""
    logs = [open(soak.workdir / f"kafka-r{number}-worker-{i}.log", "w", encoding="utf-8") for i in range(len(argvs))]
    workers: list[JobProcess] = []
    failed_in_a_row = 0
    try:
        workers = [await JobProcess.start(argv, log, soak.workdir, restart=False) for argv, log in zip(argvs, logs)]
        last_kill = time.monotonic()
        while soak.report.kills < soak.kills_wanted:
            await asyncio.sleep(max(0.0, soak.kill_delay() - (time.monotonic() - last_kill)))
            failed_in_a_row = await _restart_failed(soak, number, workers, argvs, logs, failed_in_a_row)
            if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                return False
            live = [i for i, w in enumerate(workers) if w.process.returncode is None]
            if not live:
                break  # the round finished before its kills were spent
            victim = soak.pick(live)
            process = workers[victim]
            killed_at = process.age()
            if await process.kill() != KILLED:
                continue  # it ended on its own just before the signal
            last_kill = time.monotonic()
            soak.report.kills += 1
            soak.note_ended(process)
            committed = await committed_count()
            soak.report.kill_log.append(Kill(soak.report.kills, number, killed_at, process.restart,
                                             process.restored_from, process.restart_seconds, committed, False,
                                             worker=victim))
            shown = "?" if committed is None else f"{committed:,}"
            soak.say(f"kill #{soak.report.kills}: worker {victim} (pid {process.pid}) at {killed_at:.2f}s "
                     f"({process.describe()}); committed so far {shown}")
            workers[victim] = await JobProcess.start(argvs[victim], logs[victim], soak.workdir, restart=True)
        return await _finish(soak, number, workers, argvs, logs)
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                await worker.kill()
        for log in logs:
            log.close()


async def _restart_failed(soak: WorkerSoak, number: int, workers: list[JobProcess], argvs: list[list[str]],
                          logs: list[IO[str]], failed_in_a_row: int) -> int:
    """Start again every worker that exited on its own with an error (counted)."""
    for index, worker in enumerate(workers):
        code = worker.process.returncode
        if code is None or code == 0:
            continue
        await worker.wait(1.0)
        soak.report.unexpected_exits.append(f"round {number}: worker {index} (pid {worker.pid}) exited with {code}")
        tail = "\n    ".join(worker.tail)
        soak.say(f"UNEXPECTED: worker {index} exited with {code}; log tail:\n    {tail}")
        failed_in_a_row += 1
        workers[index] = await JobProcess.start(argvs[index], logs[index], soak.workdir, restart=True)
    return failed_in_a_row


async def _finish(soak: WorkerSoak, number: int, workers: list[JobProcess], argvs: list[list[str]],
                  logs: list[IO[str]]) -> bool:
    """Let every worker run to its end; one that fails is started again (up to a limit)."""
    deadline = time.monotonic() + END_TIMEOUT
    failed = 0
    while any(w.process.returncode != 0 for w in workers):
        if time.monotonic() > deadline:
            soak.report.problems.append(f"round {number}: the workers did not finish in {END_TIMEOUT:.0f}s")
            return False
        failed = await _restart_failed(soak, number, workers, argvs, logs, failed)
        if failed >= MAX_FAILED_IN_A_ROW:
            soak.report.problems.append(f"round {number}: given up after {failed} failed worker runs")
            return False
        await asyncio.sleep(0.5)
    for worker in workers:
        await worker.wait(5.0)
        soak.note_ended(worker)
    return True


MARKERS_WAIT = 10.0  # seconds: a commit returns before the broker writes its markers


async def open_transactions(bootstrap: str, topics: list[str]) -> list[str]:
    """Partitions of ``topics`` whose last stable offset is below the high watermark, and
    topics that do not exist (the soak would otherwise check nothing). A partition is
    looked at again for up to ``MARKERS_WAIT`` s: the last commits of a finished job are
    visible only once the broker has written their markers, shortly after they return."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    missing = [f"{t['topic']}: not found (error code {t['error_code']}): the soak checks the wrong exchange topic"
               for t in described if t["error_code"] != 0]
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described if t["error_code"] == 0
                  for p in t["partitions"]]
    if not partitions:
        return missing
    deadline = time.monotonic() + MARKERS_WAIT
    while True:
        ends = {}
        for isolation in ("read_committed", "read_uncommitted"):
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
            await consumer.start()
            try:
                ends[isolation] = await consumer.end_offsets(partitions)
            finally:
                await consumer.stop()
        behind = [tp for tp in partitions if ends["read_committed"][tp] < ends["read_uncommitted"][tp]]
        if not behind or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return missing + [f"{tp.topic}-{tp.partition}: last stable offset {ends['read_committed'][tp]} below the "
                      f"high watermark {ends['read_uncommitted'][tp]} (a transaction left open)"
                      for tp in behind]
