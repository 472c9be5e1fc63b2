"""Flink's BufferingSink killed with SIGKILL and restored in a new process.

``examples/buffering_sink.py`` runs the job as a process, kills it with SIGKILL once a
completed checkpoint holds buffered ``(name, count)`` tuples in the sink writer's operator
ListState, and starts a new process on the same checkpoint directory, which ends the
input and flushes. This test reads what the writers logged (each saved and each restored
buffer, as ``repr``) and what they flushed, and checks it on its own terms: the restored
buffers equal the buffers saved in the checkpoint restored from, type for type, and every
element was flushed once.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.crash

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "buffering_sink.py"

def as_lists(buffers: dict[int, list[Any]]) -> dict[int, list[list[Any]]]:
    return {subtask: [list(element) for element in buffer] for subtask, buffer in buffers.items()}


def test_a_killed_buffering_sink_gets_its_buffer_back_equal_and_typed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_CRASH")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert "killed the job process with SIGKILL (exit code -9)" in done.stdout, done.stdout + done.stderr
    found = re.search(r"a new process restored checkpoint (\d+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    restored_from = int(found.group(1))

    log = [json.loads(line) for line in (tmp_path / "state-log.jsonl").read_text().splitlines()]
    saved = {e["subtask"]: ast.literal_eval(e["buffer"]) for e in log
             if e["event"] == "saved" and e["checkpoint"] == restored_from}
    restored = {e["subtask"]: ast.literal_eval(e["buffer"]) for e in log if e["event"] == "restored"}
    # the kill came after a checkpoint that holds buffered tuples (13 and 12 elements, flushed by 5)
    assert {s: len(b) for s, b in saved.items()} == {0: 3, 1: 2}
    assert all(type(element) is tuple for buffer in saved.values() for element in buffer)
    # equal in value, element for element and in order
    assert as_lists(restored) == as_lists(saved)
    flushed = [ast.literal_eval(line) for part in tmp_path.glob("part-*.txt") for line in part.read_text().splitlines()]
    assert Counter(tuple(e) for e in flushed) == Counter(
        [("alice", 1), ("bob", 1), ("carol", 1), ("alice", 2), ("bob", 2), ("carol", 2), ("alice", 3), ("bob", 3),
         ("carol", 3), ("alice", 4), ("bob", 4), ("carol", 4), ("alice", 5)]
        + [("dave", n) for n in range(1, 7)] + [("erin", n) for n in range(1, 7)]
    )

    # and equal in type: tuples stay tuples
    assert restored == saved
    assert all(type(element) is tuple for buffer in restored.values() for element in buffer)
    assert all(type(element) is tuple for element in flushed)
    assert done.returncode == 0 and done.stdout.rstrip().endswith("elements were flushed once"), done.stdout
