"""Helpers of the workers tests: topics and input of ``workers_job``, the job run as real
processes through the command line (``streamflow run ... --workers N``), the committed
output read back by an independent read_committed client, and the exactness check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import workers_job
from streamflow.control import JobEntry, JobRegistry
from streamflow.testing.kafka import create_topic, partitions_of, produce, read_committed, undecided_partitions, unique_topic

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXCHANGE_PARTITIONS = 8
CHECKPOINT_INTERVAL = 0.3


async def new_settings(bootstrap: str, **changes: Any) -> workers_job.JobSettings:
    """Fresh topics: input (8 partitions), codes (1), output (2)."""
    settings = workers_job.JobSettings(
        bootstrap=bootstrap, input=unique_topic("w-in"), codes=unique_topic("w-codes"), output=unique_topic("w-out"),
    )
    await create_topic(bootstrap, settings.input, workers_job.PARTITIONS)
    await create_topic(bootstrap, settings.codes, 1)
    await create_topic(bootstrap, settings.output, 2)
    return replace(settings, **changes)


async def produce_records(settings: workers_job.JobSettings, records: list[dict[str, Any]]) -> None:
    """``records`` to the input, each key to its own partition (its order is kept)."""
    for partition in range(workers_job.PARTITIONS):
        mine = [r for r in records if workers_job.partition_of(r["key"]) == partition]
        if mine:
            await produce(settings.bootstrap, settings.input, [json.dumps(r).encode() for r in mine], partition=partition)


async def produce_codes(settings: workers_job.JobSettings, codes: list[str]) -> None:
    await produce(
        settings.bootstrap, settings.codes,
        [json.dumps({"code": code, "name": workers_job.name_of(code)}).encode() for code in codes],
    )


def all_codes() -> list[str]:
    return [f"c{i}" for i in range(workers_job.CODES)]


@dataclass(slots=True)
class JobRun:
    """One ``streamflow run workers_job:build`` process (a supervisor of N workers, or a
    single job without ``workers``), with its output collected."""

    name: str
    process: asyncio.subprocess.Process
    stdout: bytes = b""
    stderr: bytes = b""
    code: int | None = None
    log: list[str] = field(default_factory=list)

    async def wait(self, timeout: float) -> int:
        """The exit code; a run still going after ``timeout`` is killed and the test fails
        with what it printed."""
        communicating = asyncio.ensure_future(self.process.communicate())
        done, _ = await asyncio.wait({communicating}, timeout=timeout)
        if not done:
            raise AssertionError(f"still running after {timeout:.0f} s, killed: {await self.kill(communicating)}")
        self.stdout, self.stderr = communicating.result()
        assert self.process.returncode is not None
        self.code = self.process.returncode
        return self.code

    async def kill(self, communicating: asyncio.Future[tuple[bytes, bytes]] | None = None) -> str:
        """Kill the run and its workers; what it printed (:meth:`describe`)."""
        kill_tree(self.process.pid)
        self.stdout, self.stderr = await (communicating or self.process.communicate())
        return self.describe()

    def describe(self) -> str:
        return f"{self.name} exit {self.code}\n{self.stdout.decode()[-2000:]}\n{self.stderr.decode()[-6000:]}"


def job_environment(settings: workers_job.JobSettings, home: Path, crash: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STREAMFLOW_CRASH"}
    env.update(settings.environment())
    env["STREAMFLOW_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if crash is not None:
        env["STREAMFLOW_CRASH"] = crash
    return env


def run_arguments(
    settings: workers_job.JobSettings,
    *,
    job: str,
    root: Path,
    workers: int | None,
    index: int | None = None,
    parallelism: int = 2,
    extra: tuple[str, ...] = (),
    entry: str = "workers_job:build",
) -> list[str]:
    args = [
        "run", entry, "--job-name", job, "--parallelism", str(parallelism),
        "--checkpoint-dir", str(root), "--checkpoint-interval", str(CHECKPOINT_INTERVAL),
        "--metrics-interval", "0", "--log-level", "WARNING",
    ]
    if workers is not None:
        args += [
            "--workers", str(workers), "--exchange-bootstrap", settings.bootstrap,
            "--exchange-partitions", str(EXCHANGE_PARTITIONS), "--exchange-replication", "1",
        ]
    if index is not None:
        args += ["--worker-index", str(index)]
    return [*args, *extra]


STARTED: list[JobRun] = []
"""Every job process the tests started: ``conftest.py`` kills those still running when a
test ends (a failed test must not leave workers retrying against a stopped broker)."""


async def start_job(args: list[str], env: dict[str, str], name: str) -> JobRun:
    """``streamflow <args>`` in a session of its own (with the workers it supervises)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamflow", *args, cwd=HERE, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    run = JobRun(name, process)
    STARTED.append(run)
    return run


async def kill_leftovers() -> None:
    """SIGKILL every started job process still running, and the workers it started (a
    supervisor starts each worker in a session of its own); reap them."""
    while STARTED:
        run = STARTED.pop()
        if run.process.returncode is None:
            kill_tree(run.process.pid)
            await run.process.communicate()


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process it started (their pipes close with them)."""
    for each in [*_descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def cli(args: list[str], env: dict[str, str], timeout: float = 120.0) -> tuple[int, str, str]:
    """``streamflow <args>``: exit code, stdout, stderr (killed, failing the test, after
    ``timeout``; killed at the test's end if the test fails while it runs)."""
    run = await start_job(args, env, f"streamflow {args[0]}")
    code = await run.wait(timeout)
    return code, run.stdout.decode(), run.stderr.decode()


async def output_rows(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in await read_committed(bootstrap, topic, timeout=30.0) if r.value]


async def wait_for_output(
    settings: workers_job.JobSettings, count: int, *, timeout: float, runs: list[JobRun] = ()  # type: ignore[assignment]
) -> list[dict[str, Any]]:
    """The committed output once it holds ``count`` records (commit markers land a
    little after a job's commit returns, so a read may briefly see fewer)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await output_rows(settings.bootstrap, settings.output)
        if len(rows) >= count:
            return rows
        ended = [r for r in runs if r.process.returncode is not None and r.process.returncode != 0]
        assert not ended, f"a job process ended with {ended[0].process.returncode} before its output was complete"
        if time.monotonic() >= deadline:
            printed = [await r.kill() for r in runs if r.process.returncode is None]
            raise AssertionError(f"{len(rows)} of {count} records after {timeout}s; " + "\n".join(printed))
        await asyncio.sleep(0.3)


def check_exact(
    rows: list[dict[str, Any]], records: list[dict[str, Any]], where: str = "", *, ranked: bool = True
) -> None:
    """Every input record exactly once, with its key's name and count and its types
    intact. ``ranked``: each record's count is its rank among its key's records (the
    job keeps every key's order); else each key's counts are exactly 1..n (records that
    waited in operator list state are dealt over the subtasks of a rescaled job, as in
    Flink, so a key's waiting records may be counted in another order)."""
    ids = Counter(int(row["id"]) for row in rows)
    duplicates = sorted(i for i, n in ids.items() if n > 1)
    missing = sorted({r["id"] for r in records} - set(ids))
    assert not duplicates and not missing, f"{where}: duplicates {duplicates[:20]}, missing {missing[:20]}"
    expected = workers_job.expected_output(records)
    if ranked:
        got = {int(row["id"]): (row["key"], row["name"], row["count"]) for row in rows}
    else:
        got = {int(row["id"]): (row["key"], row["name"], expected[int(row["id"])][2]) for row in rows}
        counts: dict[str, list[int]] = {}
        for row in rows:
            counts.setdefault(row["key"], []).append(int(row["count"]))
        per_key = Counter(r["key"] for r in records)
        assert {k: sorted(c) for k, c in counts.items()} == {k: list(range(1, n + 1)) for k, n in per_key.items()}, where
    wrong = sorted(i for i in expected if got[i] != expected[i])
    assert not wrong, f"{where}: {len(wrong)} records differ, e.g. id {wrong[0]}: {got[wrong[0]]} != {expected[wrong[0]]}"
    assert {tuple(row["types"]) for row in rows} == {("Decimal", "tuple")}, where


async def open_transactions(bootstrap: str, topics: list[str]) -> dict[str, dict[int, tuple[int, int]]]:
    """Topics with a transaction still open (read_committed readers would be held back)."""
    found = {}
    for topic in topics:
        if await partitions_of(bootstrap, topic):
            undecided = await undecided_partitions(bootstrap, topic)
            if undecided:
                found[topic] = undecided
    return found


def exchange_topics(job: str, *, lookup: bool = False) -> list[str]:
    """The exchange topics of ``workers_job`` run as ``job`` (``lookup``: with a lookup delay)."""
    keyed = [f"streamflow.{job}.enrich.lookup.0", f"streamflow.{job}.lookup.count.0"] if lookup else [
        f"streamflow.{job}.enrich.count.0"
    ]
    return [*keyed, f"streamflow.{job}.parse-codes.enrich.1"]


def registered_workers(home: Path, job: str) -> list[JobEntry]:
    return [e for e in JobRegistry(home).entries() if e.name == job and e.worker is not None]


async def wait_for_workers(home: Path, job: str, count: int, timeout: float = 60.0) -> list[JobEntry]:
    """The registry entries of ``count`` workers of ``job`` once all are registered."""
    deadline = time.monotonic() + timeout
    while True:
        entries = registered_workers(home, job)
        if len({e.worker.index for e in entries if e.worker is not None}) == count:
            return sorted(entries, key=lambda e: e.worker.index if e.worker is not None else 0)
        assert time.monotonic() < deadline, f"{len(entries)} of {count} workers of {job!r} registered"
        await asyncio.sleep(0.2)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
