"""The metrics of a running job, read on demand from its tasks, channels and coordinator.

Nothing is sampled on the hot path: counters live on the operators and channels, and
this module derives ratios when asked (``JobClient.metrics()`` and the periodic log line).
"""

from __future__ import annotations

import time
from typing import Any

from streamflow.runtime.executor import Execution


def task_times(task: Any) -> dict[str, float]:
    """Seconds busy / idle / backpressured since the task started, and their ratios.

    Idle: waiting for input. Backpressured: blocked writing to a full output channel.
    Busy: the rest (processing).
    """
    # Waits in progress count up to the moment they are read; the end of the wall-clock
    # window is read last, so idle + blocked never exceeds it.
    idle = task.gate.current_idle_seconds()
    blocked = task.output_blocked_seconds()
    end = task.stats.ended or time.perf_counter()
    wall = max(1e-9, end - task.stats.started)
    busy = max(0.0, wall - idle - blocked)
    return {
        "busy_seconds": busy,
        "idle_seconds": idle,
        "backpressured_seconds": blocked,
        "busy_ratio": busy / wall,
        "idle_ratio": idle / wall,
        "backpressured_ratio": blocked / wall,
    }


def job_metrics(execution: Execution) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    operators: dict[str, Any] = {}
    for task in execution.tasks:
        entry: dict[str, Any] = dict(task_times(task))
        if hasattr(task, "records_out") and hasattr(task, "source_uid"):
            entry["source_records_out"] = task.records_out
            lag = getattr(getattr(task, "reader", None), "lag", None)
            if callable(lag):  # a reader that knows how far behind its input it is (Kafka)
                entry["source_lag"] = dict(lag())
        tasks[task.name] = entry
        counted = [(op.uid, op.metrics) for op in task.operators]
        source_metrics = getattr(task, "source_metrics", None)  # a source task: bad records it read
        if source_metrics is not None:
            counted.insert(0, (getattr(task, "source_uid"), source_metrics))
        for uid, m in counted:
            operators[f"{uid}[{task.subtask}]"] = {
                "records_in": m.records_in,
                "records_out": m.records_out,
                "records_skipped": m.records_skipped,
                "records_dead_lettered": m.records_dead_lettered,
            }
    channels = {
        c.name: {
            "fill": c.fill,
            "queued": len(c),
            "capacity": c.capacity,
            "blocked_seconds": c.current_blocked_seconds(),
            "puts": c.puts,
        }
        for c in execution.channels
    }
    stats = execution.stats
    return {
        "job": execution.settings.job_name,
        "status": execution.status,
        "attempt": execution.attempt,
        "failures": list(execution.failures),
        "tasks": tasks,
        "operators": operators,
        "channels": channels,
        "checkpoints": {
            "completed": stats.completed,
            "failed": stats.failed,
            "restored_from": stats.restored_from,
            "restored_path": stats.restored_path,
            "history": [
                {
                    "id": r.checkpoint_id,
                    "status": r.status,
                    "duration": r.duration,
                    "size": r.size,
                    "reason": r.reason,
                    "final": r.is_final,
                    "savepoint": r.savepoint,
                }
                for r in stats.history
            ],
        },
    }


def format_line(execution: Execution) -> str:
    """One log line: records, checkpoints, the most backpressured task, the fullest channel."""
    metrics = job_metrics(execution)
    records = sum(t.get("source_records_out", 0) for t in metrics["tasks"].values())
    parts = [f"job {metrics['job']} attempt {metrics['attempt']}: {records} records read"]
    ck = metrics["checkpoints"]
    parts.append(f"checkpoints {ck['completed']} ok / {ck['failed']} failed")
    if metrics["tasks"]:
        name, worst = max(metrics["tasks"].items(), key=lambda kv: kv[1]["backpressured_ratio"])
        parts.append(f"most backpressured {name} {worst['backpressured_ratio']:.0%}")
    if metrics["channels"]:
        cname, fullest = max(metrics["channels"].items(), key=lambda kv: kv[1]["fill"])
        parts.append(f"fullest channel {cname} {fullest['fill']:.0%}")
    skipped = sum(o["records_skipped"] for o in metrics["operators"].values())
    dead = sum(o["records_dead_lettered"] for o in metrics["operators"].values())
    if skipped or dead:
        parts.append(f"bad records: {skipped} skipped, {dead} dead-lettered")
    return "; ".join(parts)
