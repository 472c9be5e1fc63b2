"""PrintSink prints each batch at once, also into a pipe (Flink's print is immediate).

Python block-buffers standard output when it is a pipe; a sink that flushed only at
checkpoints left a ``streamflow run ... | grep`` showing nothing for a whole checkpoint
interval. The job here never ends and checkpoints once a minute, so lines can only
arrive through the per-batch flush.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

JOB = '''
import asyncio, sys
from streamflow import StreamEnvironment
from streamflow.api.connector import SourceBatch
from streamflow.connectors import PrintSink

class Once:
    """Two lines, then idle polls forever (never end of input)."""
    def create_reader(self, ctx):
        return Reader()

class Reader:
    sent = False
    async def open(self): pass
    async def poll(self, max_records, max_wait):
        if self.sent:
            await asyncio.sleep(max_wait)
            return SourceBatch([], [], "once")
        self.sent = True
        return SourceBatch(["first", "second"], [0, 1], "once")
    def snapshot_splits(self, checkpoint_id): return [{"sent": self.sent}]
    async def notify_checkpoint_complete(self, checkpoint_id): pass
    async def close(self): pass

async def main():
    env = StreamEnvironment()
    env.enable_checkpointing(60.0, directory=sys.argv[1])
    env.from_source(Once(), name="once").uid("once").sink_to(PrintSink(prefix="got ")).uid("print")
    await env.execute("print-into-a-pipe")

asyncio.run(main())
'''


def read_until(pipe: int, wanted: bytes, timeout: float) -> bytes:
    """Bytes read from ``pipe`` until ``wanted`` was among them or ``timeout`` passed."""
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([pipe], [], [], left)[0]:
            break
        chunk = os.read(pipe, 4096)
        if not chunk:
            break
        data += chunk
    return data


def test_lines_reach_a_pipe_while_the_job_runs(tmp_path: Path) -> None:
    script = tmp_path / "print_job.py"
    script.write_text(JOB)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "STREAMFLOW_CRASH")}
    job = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "chk")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        assert job.stdout is not None
        printed = read_until(job.stdout.fileno(), b"got second\n", timeout=30.0)
        assert printed == b"got first\ngot second\n"
        assert job.poll() is None, "the job must still be running: the lines came before its end"
    finally:
        job.kill()
        job.wait()
        if job.stdout is not None:
            job.stdout.close()
