"""The crash suite's harness: real job processes, killed and restarted.

A :class:`Scenario` is one sink, one parallelism, the crash points to arm, one per
process, before a last process runs without any (a reference run arms none), and the
state backend (the heap, or RocksDB with incremental checkpoints). Running a
scenario means: a fresh output and checkpoint directory; one ``crash_job.py`` process per
crash point with ``STREAMFLOW_CRASH`` set; then one without, on the same directories.
After every process the committed output is read back.

Each job process takes 1-3 s and mostly sleeps, so the scenarios of the selected tests
run concurrently in a small thread pool (:class:`CrashLab`); conftest.py submits those
of the selected tests up front, and every test waits only for its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import crash_job

JOB = Path(crash_job.__file__).resolve()
PROCESS_TIMEOUT = 60.0  # seconds per job process
WORKERS = 4
CRASH_EXIT_CODE = 137


@dataclass(frozen=True, slots=True)
class KafkaInput:
    """The broker and the filled input topic of the Kafka scenarios."""

    bootstrap: str
    topic: str


@dataclass(frozen=True, slots=True)
class Scenario:
    sink: str
    parallelism: int
    crashes: tuple[str, ...] = ()
    state_backend: str = "heap"  # or "rocksdb", "heap-fork"
    unaligned: bool = False  # unaligned checkpoints under backpressure (crash_job --unaligned)
    aligned_timeout: float | None = None  # with unaligned: start aligned, switch after this

    @property
    def id(self) -> str:
        crashes = "+".join(c.replace(":", "@") for c in self.crashes) or "no-crash"
        backend = "" if self.state_backend == "heap" else f"-{self.state_backend}"
        unaligned = "-unaligned" if self.unaligned else ""
        if self.aligned_timeout is not None:
            unaligned += f"-after-{self.aligned_timeout}s"
        return f"{self.sink}{backend}{unaligned}-p{self.parallelism}-{crashes}"

    @property
    def reference(self) -> Scenario:
        return Scenario(
            self.sink, self.parallelism, state_backend=self.state_backend, unaligned=self.unaligned,
            aligned_timeout=self.aligned_timeout,
        )


@dataclass(slots=True)
class JobRun:
    """One job process."""

    crash: str | None
    argv: list[str]
    returncode: int | None  # None: killed after PROCESS_TIMEOUT
    stdout: str
    stderr: str
    seconds: float

    @property
    def summary(self) -> dict[str, Any]:
        """The JSON line a finished job prints (empty if there is none)."""
        lines = self.stdout.strip().splitlines()
        return orjson.loads(lines[-1]) if lines else {}

    def describe(self, tail: int = 60) -> str:
        err = "\n".join(self.stderr.rstrip().splitlines()[-tail:])
        crash = f"STREAMFLOW_CRASH={self.crash} " if self.crash else ""
        return (
            f"$ {crash}{' '.join(self.argv)}\n"
            f"exit code {self.returncode} after {self.seconds:.2f}s\n"
            f"--- stdout ---\n{self.stdout.rstrip()}\n--- stderr (last {tail} lines) ---\n{err}"
        )


@dataclass(slots=True)
class Inspection:
    """What is on disk besides the committed results, after a process."""

    subtasks_with_output: set[int]  # sink subtasks that committed anything
    committed_count: int  # lines of published files / SELECT count(*), counted apart
    leftovers: list[str]  # in-progress files, staged rows: should be gone after a finished run


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    out: Path
    checkpoints: Path
    output_topic: str | None = None  # Kafka scenarios
    mysql_url: str | None = None  # MySQL scenarios: a database of the scenario's own
    runs: list[JobRun] = field(default_factory=list)
    committed: list[list[Any]] = field(default_factory=list)  # after each run (Results, or WindowResults)
    inspections: list[Inspection] = field(default_factory=list)  # after each run

    @property
    def final(self) -> list[Any]:
        return self.committed[-1]

    def describe(self) -> str:
        return "\n\n".join(run.describe() for run in self.runs)


def inspect_kafka(kafka: KafkaInput, output_topic: str, committed: int, run: JobRun) -> Inspection:
    """Kafka keeps no per-subtask trace in the topic: the sink subtasks that wrote come from
    the finished job's metrics; open transactions show as a last stable offset below the
    high watermark."""
    from streamflow.testing.kafka import undecided_partitions

    undecided = asyncio.run(undecided_partitions(kafka.bootstrap, output_topic))
    leftovers = [f"partition {p}: open transaction (last stable {s} < high watermark {h})"
                 for p, (s, h) in sorted(undecided.items())]
    subtasks = set(run.summary.get("sink_subtasks_written", ())) if run.returncode == 0 else set()
    return Inspection(subtasks, committed, leftovers)


def inspect_mysql(url: str, sink: str = "mysql") -> Inspection:
    """Committed XA transactions leave their marker rows (subtask); prepared xids of this
    database's sink that are still on the server are leftovers."""
    from streamflow.testing.mysql import prepared_xids_of, query, table_exists

    leftovers = [f"prepared XA transaction {xid}" for xid in prepared_xids_of(url, "crash-job", f"{sink}-sink")]
    if not table_exists(url, "_streamflow_xa_markers"):
        return Inspection(set(), 0, leftovers)
    subtasks = {int(r[0]) for r in query(url, "SELECT DISTINCT subtask FROM _streamflow_xa_markers")}
    table = crash_job.WINDOW_TABLE if sink in crash_job.WINDOW_SINKS else crash_job.TABLE
    (count,), = query(url, f"SELECT count(*) FROM {table}")
    return Inspection(subtasks, int(count), leftovers)


def inspect_mysql_offsets(url: str, kafka: KafkaInput) -> Inspection:
    """The one sink subtask committed if there are rows; its offsets short of the input
    topic's ends are leftovers once the job finished (it stores the ends last)."""
    from streamflow.connectors.mysql.offsets_sink import OFFSETS_TABLE
    from streamflow.testing.mysql import query, table_exists

    if not table_exists(url, crash_job.TABLE):
        return Inspection(set(), 0, [])
    (count,), = query(url, f"SELECT count(*) FROM {crash_job.TABLE}")
    stored: dict[int, int] = {}
    if table_exists(url, OFFSETS_TABLE):
        rows = query(url, f"SELECT `partition`, next_offset FROM {OFFSETS_TABLE} WHERE name = %s AND topic = %s",
                     (crash_job.OFFSETS_NAME, kafka.topic))
        stored = {int(p): int(o) for p, o in rows}
    short = [f"partition {p}: offset {stored.get(p)} stored in MySQL, the end is {crash_job.LINES_PER_FILE}"
             for p in range(crash_job.INPUT_FILES) if stored.get(p) != crash_job.LINES_PER_FILE]
    return Inspection({0} if count else set(), int(count), short)


def inspect_sink(sink: str, out: Path) -> Inspection:
    if sink == "file":
        names = re.compile(r"^part-file-sink-(\d+)-\d+\.txt$")
        subtasks = set()
        if out.exists():
            for p in out.iterdir():
                m = names.match(p.name)
                if m:
                    subtasks.add(int(m.group(1)))
        count = sum(p.read_bytes().count(b"\n") for p in out.glob("*.txt")) if out.exists() else 0
        pending = out / ".pending"
        leftovers = sorted(f".pending/{p.name}" for p in pending.iterdir()) if pending.exists() else []
        return Inspection(subtasks, count, leftovers)
    db = out / crash_job.DB_NAME
    if not db.exists():
        return Inspection(set(), 0, [])
    with closing(sqlite3.connect(db)) as conn:
        subtasks = {row[0] for row in conn.execute("SELECT DISTINCT subtask FROM _streamflow_commits")}
        (count,) = conn.execute(f"SELECT count(*) FROM {crash_job.TABLE}").fetchone()
        staged = conn.execute(
            "SELECT subtask, checkpoint_id, count(*) FROM _streamflow_staged GROUP BY 1, 2"
        ).fetchall()
    return Inspection(
        subtasks, count, [f"_streamflow_staged: subtask {s} checkpoint {c}: {n} rows" for s, c, n in staged]
    )


def run_job(
    scenario: Scenario, inputs: Path, out: Path, checkpoints: Path, crash: str | None,
    kafka: KafkaInput | None = None, output_topic: str | None = None, mysql_url: str | None = None,
) -> JobRun:
    argv = [
        sys.executable, str(JOB),
        "--sink", scenario.sink,
        "--input", str(inputs),
        "--out", str(out),
        "--checkpoints", str(checkpoints),
        "--parallelism", str(scenario.parallelism),
        "--state-backend", scenario.state_backend,
    ]  # fmt: skip
    if scenario.unaligned:
        argv.append("--unaligned")
    if scenario.aligned_timeout is not None:
        argv += ["--aligned-timeout", str(scenario.aligned_timeout)]
    if kafka is not None:
        argv += ["--bootstrap", kafka.bootstrap, "--input-topic", kafka.topic]
    if output_topic is not None:
        argv += ["--output-topic", output_topic]
    if mysql_url is not None:
        argv += ["--mysql-url", mysql_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_CRASH")}
    if crash is not None:
        env["STREAMFLOW_CRASH"] = crash
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, cwd=out.parent, capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False
        )
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = None
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr) + f"\n[killed by the test after {PROCESS_TIMEOUT:.0f}s]"
    return JobRun(crash, argv, returncode, stdout, stderr, time.perf_counter() - started)


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def run_scenario(scenario: Scenario, inputs: Path, base: Path, kafka: KafkaInput | None = None,
                 mysql_server: str | None = None) -> ScenarioResult:
    base.mkdir(parents=True, exist_ok=False)
    result = ScenarioResult(scenario, base / "out", base / "checkpoints")
    target = None
    if scenario.sink in crash_job.MYSQL_OUTPUT:
        from streamflow.testing.mysql import create_database

        if kafka is None or mysql_server is None:
            raise ValueError("a MySQL scenario needs the broker, the input topic and the MySQL server")
        result.mysql_url = create_database(mysql_server, prefix="crash")
    if scenario.sink in crash_job.KAFKA_OUTPUT:
        from streamflow.testing.kafka import create_topic, unique_topic

        if kafka is None:
            raise ValueError("a Kafka scenario needs the broker and input topic (KafkaInput)")
        result.output_topic = unique_topic(f"crash-{scenario.id}".replace("@", "-").replace("+", "-"))
        asyncio.run(create_topic(kafka.bootstrap, result.output_topic, partitions=crash_job.INPUT_FILES))
        target = (kafka.bootstrap, result.output_topic)
    for crash in (*scenario.crashes, None):
        run = run_job(scenario, inputs, result.out, result.checkpoints, crash,
                      kafka if scenario.sink in crash_job.KAFKA_INPUT else None, result.output_topic, result.mysql_url)
        result.runs.append(run)
        committed = crash_job.read_committed(scenario.sink, result.out, target, result.mysql_url)
        result.committed.append(committed)
        if result.mysql_url is not None and kafka is not None and scenario.sink == "mysql-offsets":
            result.inspections.append(inspect_mysql_offsets(result.mysql_url, kafka))
        elif result.mysql_url is not None:
            result.inspections.append(inspect_mysql(result.mysql_url, scenario.sink))
        elif kafka is not None and result.output_topic is not None:
            result.inspections.append(inspect_kafka(kafka, result.output_topic, len(committed), run))
        else:
            result.inspections.append(inspect_sink(scenario.sink, result.out))
        if crash is not None and run.returncode != CRASH_EXIT_CODE:
            break  # the crash did not happen as planned; the test fails on this run
    return result


class CrashLab:
    """Runs scenarios in a thread pool, each once; ``result`` waits for one."""

    def __init__(
        self, inputs: Path, base: Path, workers: int = WORKERS, kafka: KafkaInput | None = None,
        mysql_server: str | None = None,
    ) -> None:
        self.inputs = inputs
        self.base = base
        self.kafka = kafka
        self.mysql_server = mysql_server
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crash-lab")
        self._futures: dict[Scenario, Future[ScenarioResult]] = {}
        self._lock = threading.Lock()

    def submit(self, scenario: Scenario) -> Future[ScenarioResult]:
        with self._lock:
            future = self._futures.get(scenario)
            if future is None:
                base = self.base / scenario.id
                future = self._pool.submit(run_scenario, scenario, self.inputs, base, self.kafka, self.mysql_server)
                self._futures[scenario] = future
            return future

    def result(self, scenario: Scenario) -> ScenarioResult:
        return self.submit(scenario).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
