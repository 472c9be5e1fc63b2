"""Word count over a socket with keyed state: stop with a savepoint, rescale, resume.

The pipeline (``build``) reads lines from a TCP server, splits them into words and
keeps a running count per word in keyed ValueState, printing ``word=count``. It is
Flink's savepoint walk-through: count some words, stop the job with a savepoint, start
it again from the savepoint with another parallelism, and the counts go on.

By hand, in three terminals::

    nc -lk 9999                                       # 1: type lines here
    streamflow run examples.socket_wordcount:build -p 2 \\
        --checkpoint-dir /tmp/wc-chk --checkpoint-interval 1 --job-name wordcount
    streamflow stop wordcount --savepoint /tmp/wc-savepoints   # prints the savepoint
    streamflow run examples.socket_wordcount:build -p 3 \\
        --checkpoint-dir /tmp/wc-chk --checkpoint-interval 1 --job-name wordcount \\
        --from-savepoint /tmp/wc-savepoints/savepoint-wordcount-...

Automated (a server on a free port, the job and the commands as subprocesses, a check
of the counts at the end)::

    python examples/socket_wordcount.py

The server address comes from ``WORDCOUNT_HOST`` / ``WORDCOUNT_PORT`` (default
127.0.0.1:9999). The socket source is at-most-once (a socket cannot replay); the counts
survive the stop because the stop takes its savepoint after the lines were counted.
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamflow import KeyedProcessFunction, StreamEnvironment
from streamflow.connectors import PrintSink, SocketTextSource
from streamflow.state import ValueStateDescriptor

REPO = Path(__file__).resolve().parents[1]
COUNT_LINE = re.compile(r"^(?:\d+> )?(\S+)=(\d+)$")


class WordCount(KeyedProcessFunction):
    """Counts each word (the key) in keyed ValueState and emits ``word=count``."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, word: str, ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect(f"{word}={n}")


def build(env: StreamEnvironment) -> None:
    """The pipeline, for ``streamflow run examples.socket_wordcount:build``. Every
    stateful operator has a uid: that is what matches its state in a savepoint."""
    host = os.environ.get("WORDCOUNT_HOST", "127.0.0.1")
    port = int(os.environ.get("WORDCOUNT_PORT", "9999"))
    (
        env.from_source(SocketTextSource(host, port), name="lines").uid("lines").set_parallelism(1)
        .flat_map(str.split).name("split")
        .key_by(lambda word: word)
        .process(WordCount()).uid("count")
        .sink_to(PrintSink()).uid("print")
    )


# -- the automated walk-through ---------------------------------------------------------


class LineServer:
    """The ``nc -lk`` of the walk-through: a TCP server on 127.0.0.1 that the job connects
    to; ``send`` writes to the newest connection."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._connection: socket.socket | None = None

    def accept(self, timeout: float = 30.0) -> None:
        self._socket.settimeout(timeout)
        connection, _ = self._socket.accept()
        if self._connection is not None:
            self._connection.close()
        self._connection = connection

    def send(self, *lines: str) -> None:
        assert self._connection is not None, "accept() the job's connection first"
        self._connection.sendall("".join(f"{line}\n" for line in lines).encode())

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._socket.close()


class JobProcess:
    """``streamflow run ...`` as a subprocess; its stdout lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamflow.cli", "run", *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self._new), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, None), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: Any, lines: queue.Queue[str] | None) -> None:
        for line in stream:
            if lines is not None:
                lines.put(line.rstrip("\n"))
            else:
                self.stderr.append(line)

    def counts(self) -> dict[str, int]:
        """The latest count printed per word."""
        while not self._new.empty():
            self.lines.append(self._new.get_nowait())
        latest: dict[str, int] = {}
        for line in self.lines:
            match = COUNT_LINE.match(line)
            if match:
                latest[match.group(1)] = max(latest.get(match.group(1), 0), int(match.group(2)))
        return latest

    def wait_for_counts(self, expected: dict[str, int], timeout: float = 30.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if all(counts.get(word) == n for word, n in expected.items()):
                return counts
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"expected counts {expected}, got {counts}\n{self.describe()}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the process to exit; the JSON summary it printed last."""
        self.process.wait(timeout)
        self._close_pipes()
        self.counts()
        summaries = [line for line in self.lines if line.startswith("{")]
        return json.loads(summaries[-1]) if summaries else {}

    def stop_process(self) -> None:
        """Kill the process if it still runs; always release its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pump in self._pumps:
            pump.join(10)  # they end at end of file, once the process has exited
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def describe(self) -> str:
        return f"exit code {self.process.poll()}\nstdout: {self.lines}\nstderr:\n{''.join(self.stderr[-40:])}"


def streamflow(args: list[str], env: dict[str, str], check: Callable[[int], bool] = lambda rc: rc == 0) -> str:
    """Run a ``streamflow`` command and return its stdout (fails loudly otherwise)."""
    done = subprocess.run(
        [sys.executable, "-m", "streamflow.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    if not check(done.returncode):
        raise AssertionError(f"streamflow {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def walkthrough(work: Path) -> dict[str, int]:
    """Flink's savepoint walk-through, step by step; returns the final counts."""
    server = LineServer()
    env = {
        **os.environ,
        "STREAMFLOW_HOME": str(work / "home"),
        "WORDCOUNT_PORT": str(server.port),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    common = ["examples.socket_wordcount:build", "--job-name", "wordcount", "--checkpoint-interval", "0.5",
              "--checkpoint-dir", str(work / "checkpoints")]
    first = second = None
    try:
        print("1. run the job with parallelism 2, send 'hello flink'")
        first = JobProcess([*common, "-p", "2"], env)
        server.accept()
        server.send("hello flink")
        print("   counts:", first.wait_for_counts({"hello": 1, "flink": 1}))
        print("2. stop it with a savepoint")
        savepoint = streamflow(["stop", "wordcount", "--savepoint", str(work / "savepoints")], env).strip()
        print("   savepoint:", savepoint, "| job summary:", first.finish())
        print("3. start again from the savepoint with parallelism 3, send 'hello world' and 'hello flink'")
        second = JobProcess([*common, "-p", "3", "--from-savepoint", savepoint], env)
        server.accept()
        server.send("hello world", "hello flink")
        counts = second.wait_for_counts({"hello": 3, "flink": 2, "world": 1})
        print("   counts:", counts)
        streamflow(["cancel", "wordcount"], env)
        second.finish()
        return counts
    finally:
        for job in (first, second):
            if job is not None:
                job.stop_process()
        server.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="wordcount-") as directory:
        final = walkthrough(Path(directory))
    ok = final == {"hello": 3, "flink": 2, "world": 1}
    print("CHECK OK" if ok else f"CHECK FAILED: {final}")
    sys.exit(0 if ok else 1)
