"""The outage tests' harness: a job process, its own server, stopped for a minute; and the
lab that runs the scenarios in the background.

:func:`run_outage` starts a Kafka broker or a MariaDB of its own (with a data directory,
on ports outside the ephemeral range so nothing takes them while the server is away),
fills the input, starts ``outage_job.py``, waits until two checkpoints completed, stops
the server (SIGTERM, a clean shutdown), keeps it away for ``OUTAGE`` seconds, starts it
again on the same ports and data, and waits for the job to finish. Meanwhile it reads the
job's log lines (stderr) with their arrival times and samples the process's CPU time,
so a test can bound what the job logs and burns while the server is away.

The scenarios take ~1.5 minutes and mostly wait, so conftest.py starts each as a process
of its own (``python outage_harness.py KIND WORKDIR``, which writes WORKDIR/result.json)
when the session begins, and they run while the rest of the suite does. A process, not a
thread: nothing they log or warn can land in another test, and the servers and the job
die with it (PDEATHSIG) if the session ends first.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

import outage_job
from streamflow.devtools.kafka_broker import KafkaBroker
from streamflow.devtools.mariadb_server import MariaDbServer
from streamflow.devtools.processes import ServerProcess, die_with_parent
from streamflow.testing.kafka import create_topic, produce, read_committed, undecided_partitions
from streamflow.testing.mysql import create_database, execute, prepared_xids_of, query

JOB = Path(outage_job.__file__).resolve()
HARNESS = Path(__file__).resolve()
OUTAGE = 60.0  # seconds the server is away
MEASURED = 30.0  # the first seconds from the stop, where log lines and CPU are counted
JOB_TIMEOUT = 240.0  # seconds a job process may take in all
SCENARIO_TIMEOUT = 420.0  # seconds from the start of the session; a scenario takes ~1.5 min


@dataclass(slots=True)
class OutageRun:
    """What happened in one scenario."""

    kind: str
    returncode: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    stderr: list[tuple[float, str]] = field(default_factory=list)  # (seconds since the server's stop began, line)
    cpu_measured: float = 0.0  # CPU seconds of the job process in the first MEASURED s from the stop
    cpu_outage: float = 0.0  # ... until the server is started again
    recovered_after: float = 0.0  # seconds from the server's return to the job's end
    seconds: float = 0.0  # the whole scenario
    results: Counter[tuple[str, int]] = field(default_factory=Counter)
    left_open: Any = None  # open Kafka transactions / prepared XA transactions after the job

    def to_json(self) -> bytes:
        data = asdict(self)
        data["results"] = [[key, count, n] for (key, count), n in self.results.items()]
        data["left_open"] = repr(self.left_open) if self.left_open else ""
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> OutageRun:
        data = orjson.loads(raw)
        data["results"] = Counter({(key, count): n for key, count, n in data["results"]})
        data["stderr"] = [(at, line) for at, line in data["stderr"]]
        return cls(**data)

    def lines_between(self, start: float, end: float) -> list[str]:
        return [line for at, line in self.stderr if start <= at < end]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(line for _, line in self.stderr[-lines:])


def stable_port() -> int:
    """A free 127.0.0.1 port below the ephemeral range: while the server is away, no
    client socket of this machine is given it as its local port."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    while True:
        port = random.randint(10_000, max(low, 10_001) - 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Lines:
    """Reads a pipe in a thread, keeping each line with its arrival time."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def join(self) -> None:
        self._thread.join(10)

    def wait_for(self, text: str, process: subprocess.Popen[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text == line for _, line in self.lines):
            if process.poll() is not None:
                raise AssertionError(f"the job ended (exit {process.returncode}) before {text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from the job within {timeout:.0f} s")
            time.sleep(0.05)


def _server(kind: str, workdir: Path) -> ServerProcess:
    if kind == "kafka":
        broker = KafkaBroker(workdir / "kafka", port=stable_port())
        broker.controller_port = stable_port()
        return broker
    return MariaDbServer(workdir / "mariadb", port=stable_port())


def _prepare(kind: str, server: ServerProcess) -> list[str]:
    """Input and output of the job; returns the job's arguments for them."""
    if isinstance(server, KafkaBroker):
        bootstrap = server.bootstrap_servers

        async def fill() -> None:
            await create_topic(bootstrap, "in", partitions=4)
            await create_topic(bootstrap, "out", partitions=4)
            await produce(bootstrap, "in", [outage_job.record(i).encode() for i in range(outage_job.RECORDS)])

        asyncio.run(fill())
        return ["--bootstrap", bootstrap, "--input", "in", "--output", "out"]
    assert isinstance(server, MariaDbServer)
    url = create_database(server.url)
    execute(url, "CREATE TABLE results (seq BIGINT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(16) NOT NULL, "
                 "v INT NOT NULL, UNIQUE KEY kv (k, v)) ENGINE=InnoDB")
    return ["--url", url, "--table", "results"]


def _collect(run: OutageRun, server: ServerProcess, job_args: list[str]) -> None:
    if isinstance(server, KafkaBroker):
        bootstrap = server.bootstrap_servers

        async def read() -> None:
            for r in await read_committed(bootstrap, "out"):
                key, count = r.value.decode().split(",")
                run.results[(key, int(count))] += 1
            run.left_open = await undecided_partitions(bootstrap, "out")

        asyncio.run(read())
        return
    url = job_args[job_args.index("--url") + 1]
    run.results.update((k, int(v)) for k, v in query(url, "SELECT k, v FROM results"))
    run.left_open = prepared_xids_of(url, "outage-mysql", "out")


def run_outage(kind: str, workdir: Path) -> OutageRun:
    """Run the scenario of ``kind`` ("kafka" or "mysql") in ``workdir``."""
    run = OutageRun(kind)
    began = time.monotonic()
    server = _server(kind, workdir)
    server.start()
    process: subprocess.Popen[str] | None = None
    try:
        job_args = _prepare(kind, server)
        process = subprocess.Popen(
            [sys.executable, str(JOB), kind, "--checkpoints", str(workdir / "checkpoints"), *job_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None and process.stderr is not None
        out, err = _Lines(process.stdout), _Lines(process.stderr)
        out.wait_for("CHECKPOINT 2", process, timeout=60)
        stopping_at, cpu_at_stop = time.monotonic(), cpu_seconds(process.pid)
        server.stop()  # a clean shutdown: Kafka moves its partition leaders away first
        down_at = time.monotonic()
        time.sleep(max(0.0, stopping_at + MEASURED - time.monotonic()))
        run.cpu_measured = cpu_seconds(process.pid) - cpu_at_stop
        time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
        run.cpu_outage = cpu_seconds(process.pid) - cpu_at_stop
        server.start()
        back_at = time.monotonic()
        run.returncode = process.wait(JOB_TIMEOUT)
        run.recovered_after = time.monotonic() - back_at
        out.join()
        err.join()
        run.stderr = [(at - stopping_at, line) for at, line in err.lines]
        lines = [line for _, line in out.lines if line.startswith("{")]
        run.summary = orjson.loads(lines[-1]) if lines else {}
        if run.returncode == 0:
            _collect(run, server, job_args)
        return run
    finally:
        if process is not None:
            if process.poll() is None:
                process.kill()
                process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        server.stop()
        run.seconds = time.monotonic() - began


class OutageLab:
    """The scenario processes; :meth:`result` waits for one and reads what it found."""

    def __init__(self, kinds: list[str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="streamflow-outages-"))
        self.started = time.monotonic()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        for kind in kinds:
            with open(self.root / f"{kind}.log", "wb") as log:  # the child keeps its own copy
                self._processes[kind] = subprocess.Popen(
                    [sys.executable, str(HARNESS), kind, str(self.root / kind)],
                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )

    def result(self, kind: str) -> OutageRun:
        process = self._processes[kind]
        try:
            process.wait(max(1.0, SCENARIO_TIMEOUT - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        result = self.root / kind / "result.json"
        log = self.root / f"{kind}.log"
        assert process.returncode == 0 and result.is_file(), (
            f"the {kind} outage scenario failed (exit {process.returncode}):\n{log.read_text()[-5000:]}"
        )
        return OutageRun.from_json(result.read_bytes())

    def close(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.kill()  # its servers and job die with it (PDEATHSIG)
            process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> int:
    kind, workdir = sys.argv[1], Path(sys.argv[2])
    workdir.mkdir(parents=True, exist_ok=True)
    run = run_outage(kind, workdir)
    (workdir / "result.json").write_bytes(run.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
