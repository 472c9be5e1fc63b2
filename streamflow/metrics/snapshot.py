"""The metrics of a running job, read on demand from its tasks, channels and coordinator.

Nothing is sampled on the hot path: counters live on the operators and channels, and
this module reads them (and derives ratios) when asked: ``JobClient.metrics()``, the
periodic log line, and the metrics registry (:mod:`streamflow.metrics.registry`), which
turns successive reads into Flink's per-second rates. Values are cumulative since the
current attempt started, or the state right now; nothing here is a rate over time.

Sources and sinks may add their own numbers: a source reader or sink writer with a
``metrics()`` method returning ``{name: number}`` (the Kafka reader's ``pendingRecords``,
a two-phase-commit writer's transaction counts) is read here, under ``"connector"``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from streamflow.runtime.checkpoint_timing import SubtaskCheckpointTiming
from streamflow.runtime.executor import Execution
from streamflow.runtime.source_task import SourceTask
from streamflow.runtime.task import Task

log = logging.getLogger("streamflow.metrics")


def task_times(task: Any) -> dict[str, float]:
    """Seconds busy / idle / backpressured since the task started, and their ratios.

    Idle: waiting for input (a source: polls that returned no record). Backpressured:
    blocked writing to a full output channel. Busy: the rest (processing).
    """
    # Waits in progress count up to the moment they are read; the end of the wall-clock
    # window is read last, so idle + blocked never exceeds it.
    idle = task.gate.current_idle_seconds() + task.stats.empty_poll_seconds
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


def connector_metrics(component: Any) -> dict[str, float]:
    """What a source reader or sink writer reports through its optional ``metrics()``.

    A metric must never fail the job: a hook that raises or returns something else than
    a mapping of numbers is logged at DEBUG and read as empty.
    """
    hook = getattr(component, "metrics", None)
    if not callable(hook):
        return {}
    try:
        values = hook()
        return {
            str(name): float(value)
            for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("metrics() of %r raised %r; reading it as empty", component, exc)
        return {}


def timing_dict(timing: SubtaskCheckpointTiming) -> dict[str, Any]:
    """One task's phases of one checkpoint, in seconds and bytes."""
    return {
        "checkpoint_id": timing.checkpoint_id,
        "start_delay": timing.start_delay,
        "alignment": timing.alignment,
        "sync": timing.sync_duration,
        "async": timing.async_duration,
        "size": timing.size,
        "persisted_bytes": timing.persisted_bytes,
        "unaligned": timing.unaligned,
    }


def _vertex_of(task: Task) -> str:
    """A task named ``uid[i]`` belongs to the job vertex ``uid`` (its chain's head)."""
    suffix = f"[{task.subtask}]"
    return task.name[: -len(suffix)] if task.name.endswith(suffix) else task.name


def _tasks_and_operators(execution: Execution) -> tuple[dict[str, Any], dict[str, Any]]:
    tasks: dict[str, Any] = {}
    operators: dict[str, Any] = {}
    for task in execution.tasks:
        vertex = _vertex_of(task)
        entry: dict[str, Any] = task_times(task)
        entry["vertex"] = vertex
        entry["subtask"] = task.subtask
        entry["input_watermark"] = task.input_watermark
        entry["output_watermark"] = task.output_watermark
        entry["input_idle"] = task.input_status.value == "idle"  # every input channel is idle
        last = task.checkpoint_timings.last
        entry["checkpoint"] = None if last is None else timing_dict(last)
        entry["restored_in_flight"] = task.restored_in_flight  # elements an unaligned checkpoint put back
        placed = {"task": task.name, "vertex": vertex, "subtask": task.subtask}
        if isinstance(task, SourceTask):  # its reader and the records it read
            entry["source_records_out"] = task.records_out
            read = task.source_metrics
            operators[f"{task.source_uid}[{task.subtask}]"] = {
                "uid": task.source_uid,
                "kind": "source",
                **placed,
                # what the reader produced: records passed on plus those it could not decode
                "records_in": task.records_out + read.records_skipped + read.records_dead_lettered,
                "records_out": task.records_out,
                "records_skipped": read.records_skipped,
                "records_dead_lettered": read.records_dead_lettered,
                "records_late_dropped": 0,
                "connector": connector_metrics(task.reader),
            }
        tasks[task.name] = entry
        for op in task.operators:
            m = op.metrics
            operators[f"{op.uid}[{task.subtask}]"] = {
                "uid": op.uid,
                "kind": op.spec.kind.value,
                **placed,
                "records_in": m.records_in,
                "records_out": m.records_out,
                "records_skipped": m.records_skipped,
                "records_dead_lettered": m.records_dead_lettered,
                "records_late_dropped": m.records_late_dropped,  # Flink's numLateRecordsDropped
                "connector": connector_metrics(getattr(op, "writer", None)),
                **op.extra_metrics(),  # by kind: "async" (calls in flight, calls/s, timeouts, latency) of map_async
            }
    return tasks, operators


def _channels(execution: Execution) -> dict[str, Any]:
    ends: dict[int, list[str]] = {}  # id(channel) -> [upstream task, downstream task]
    for task in execution.tasks:
        for writer in task.all_writers:
            for channel in writer.channels:
                ends.setdefault(id(channel), ["", ""])[0] = task.name
        for channel in task.gate.channels:
            ends.setdefault(id(channel), ["", ""])[1] = task.name
    channels: dict[str, dict[str, Any]] = {}
    for c in execution.channels:
        upstream, downstream = ends.get(id(c), ["", ""])
        # Keyed by the tasks it joins (uids: unique), not by its name (operator names,
        # which two operators may share); a second channel between the same two tasks
        # (two edges) is numbered.
        key = f"{upstream} -> {downstream}"
        if key in channels:
            key = f"{key} #{len([k for k in channels if k.startswith(key)])}"
        channels[key] = {
            "name": c.name,
            "fill": c.fill,
            "queued": len(c),
            "capacity": c.capacity,
            "record_capacity": c.record_capacity,  # None: bounded in batches only
            "queued_records": c.records if c.record_capacity is not None else None,
            "blocked_seconds": c.current_blocked_seconds(),
            "puts": c.puts,
            "upstream": upstream,
            "downstream": downstream,
        }
    return channels


def _checkpoints(execution: Execution) -> dict[str, Any]:
    stats = execution.stats
    coordinator = execution.coordinator
    now = execution.settings.clock.now()
    in_progress = [
        {
            "id": record.checkpoint_id,
            "triggered_at": record.triggered_at,
            "elapsed": max(0.0, now - record.triggered_at),
            "acknowledged": acknowledged,
            "expected": expected,
        }
        for record, acknowledged, expected in (coordinator.in_progress() if coordinator is not None else [])
    ]
    return {
        "completed": stats.completed,
        "failed": stats.failed,
        "restored_from": stats.restored_from,
        "restored_path": stats.restored_path,
        "in_progress": in_progress,
        "history": [
            {
                "id": r.checkpoint_id,
                "status": r.status,
                "triggered_at": r.triggered_at,
                "duration": r.duration,
                "size": r.size,
                "reason": r.reason,
                "final": r.is_final,
                "savepoint": r.savepoint,
                "subtasks": {name: timing_dict(t) for name, t in sorted(r.subtasks.items())},
            }
            for r in stats.history
        ],
    }


def job_metrics(execution: Execution) -> dict[str, Any]:
    """Everything the job's metrics show, read now (see the module docstring)."""
    tasks, operators = _tasks_and_operators(execution)
    uptime = time.perf_counter() - execution.started
    return {
        "job": execution.settings.job_name,
        "status": execution.status,
        "attempt": execution.attempt,
        "failures": list(execution.failures),
        "started_at": time.time() - uptime,
        "uptime_seconds": uptime,
        "tasks": tasks,
        "operators": operators,
        "channels": _channels(execution),
        "checkpoints": _checkpoints(execution),
    }


def finite_or_none(value: float | None) -> float | None:
    """JSON has no infinities: a watermark of -inf (none yet) or +inf (end of input)
    is shown as absent."""
    return value if value is not None and math.isfinite(value) else None


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
    late = sum(o["records_late_dropped"] for o in metrics["operators"].values())
    if late:
        parts.append(f"{late} late records dropped")
    return "; ".join(parts)
