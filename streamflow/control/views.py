"""Terminal views of ``streamflow list`` and ``streamflow status`` (``--json`` skips them)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

__all__ = ["format_jobs", "format_status"]

_HISTORY_SHOWN = 10


def format_jobs(jobs: list[dict[str, Any]], now: float | None = None) -> str:
    """One line per job: id, name, status, pid, uptime; and per worker of a job on several
    processes, which worker (``i/N``) of which deployment. ``jobs`` are ``ping`` results."""
    if not jobs:
        return "no running jobs"
    now = time.time() if now is None else now
    workers = any(job.get("worker") for job in jobs)
    rows: list[tuple[str, ...]] = [("JOB ID", "NAME", *(("WORKER",) if workers else ()), "STATUS", "PID", "UPTIME")]
    for job in sorted(jobs, key=_by_job_and_worker):
        started = job.get("started_at")
        uptime = _duration(now - started) if isinstance(started, (int, float)) else "?"
        worker = job.get("worker")
        where = (f"{worker['index']}/{worker['workers']} ({worker['generation'][:8]})" if worker else "-",)
        rows.append(
            (str(job["job_id"]), str(job["name"]), *(where if workers else ()), str(job["status"]), str(job["pid"]),
             uptime)
        )
    return _table(rows)


def _by_job_and_worker(job: dict[str, Any]) -> tuple[str, str, int]:
    worker = job.get("worker") or {}
    return (str(job["name"]), str(worker.get("generation", "")), int(worker.get("index", 0)))


def format_status(status: dict[str, Any], now: float | None = None) -> str:
    """The job, its checkpoints (with savepoints), per task busy / idle / backpressured
    shares and input / output watermarks, late records dropped per operator, per async
    operator its calls, and per channel fill, from a ``status`` result."""
    now = time.time() if now is None else now
    metrics = status["metrics"]
    started = status.get("started_at")
    uptime = f", up {_duration(now - started)}" if isinstance(started, (int, float)) else ""
    lines = [f"job {status['job_id']} ({status['name']}), pid {status['pid']}{uptime}"]
    worker = status.get("worker")
    if worker:
        lines.append(f"  worker {worker['index']} of {worker['workers']} (deployment {worker['generation']})")
    lines.append(f"  status {metrics['status']}, attempt {metrics['attempt']}")
    for label, key in (("dashboard", "web_url"), ("Prometheus metrics", "metrics_url")):
        if status.get(key):
            lines.append(f"  {label} {status[key]}")
    for failure in metrics.get("failures", [])[-3:]:
        lines.append(f"  earlier failure: {failure}")
    checkpoints = metrics["checkpoints"]
    completed = [r["id"] for r in checkpoints.get("history", []) if r.get("status") == "completed"]
    if completed:
        lines.append(f"  last completed checkpoint {completed[-1]}")
    restored = checkpoints.get("restored_from")
    if restored is not None:
        lines.append(f"  restored from checkpoint {restored} ({checkpoints.get('restored_path')})")
    lines.append("")
    lines.append(f"checkpoints: {checkpoints['completed']} completed, {checkpoints['failed']} failed")
    history = checkpoints.get("history", [])[-_HISTORY_SHOWN:]
    if history:
        history_rows: list[tuple[str, ...]] = [("  ID", "STATUS", "DURATION", "SIZE", "NOTE")]
        for record in history:
            duration = record.get("duration")
            note = record.get("savepoint") or record.get("reason") or ("final" if record.get("final") else "")
            if record.get("savepoint"):
                note = f"savepoint {note}"
            history_rows.append(
                (
                    f"  {record['id']}",
                    str(record["status"]),
                    "-" if duration is None else f"{duration:.3f}s",
                    f"{record.get('size', 0)} B",
                    str(note),
                )
            )
        lines.append(_table(history_rows))
    tasks = metrics.get("tasks", {})
    if tasks:
        lines.append("")
        task_rows: list[tuple[str, ...]] = [("task", "BUSY", "IDLE", "BACKPRESSURED", "INPUT WATERMARK", "OUTPUT WATERMARK")]
        for name, t in sorted(tasks.items()):
            task_rows.append(
                (
                    f"  {name}",
                    _pct(t["busy_ratio"]),
                    _pct(t["idle_ratio"]),
                    _pct(t["backpressured_ratio"]),
                    _watermark(t.get("input_watermark")) + (" (idle)" if t.get("input_idle") else ""),
                    _watermark(t.get("output_watermark")),
                )
            )
        lines.append(_table(task_rows))
    late = {name: o["records_late_dropped"] for name, o in metrics.get("operators", {}).items() if o.get("records_late_dropped")}
    if late:
        lines.append("")
        late_rows: list[tuple[str, ...]] = [("operator", "LATE RECORDS DROPPED")]
        for name, count in sorted(late.items()):
            late_rows.append((f"  {name}", str(count)))
        lines.append(_table(late_rows))
    behind = _pending_by_source(metrics.get("operators", {}))
    if behind:
        lines.append("")
        lag_rows: list[tuple[str, ...]] = [("source (exchange readers: <edge>.exchange-reader)", "SUBTASKS",
                                            "RECORDS BEHIND")]
        for uid, (subtasks, pending) in sorted(behind.items()):
            lag_rows.append((f"  {uid}", str(subtasks), f"{pending:,.0f}"))
        lines.append(_table(lag_rows))
    calls = {name: o["async"] for name, o in metrics.get("operators", {}).items() if "async" in o}
    if calls:
        lines.append("")
        call_rows: list[tuple[str, ...]] = [
            ("async operator", "IN FLIGHT", "CALLS/S", "TIMEOUTS", "RETRIES", "FAILED", "P50", "P99", "WAITED")
        ]
        for name, c in sorted(calls.items()):
            call_rows.append(
                (
                    f"  {name}",
                    f"{c['in_flight']}/{c['capacity']}",
                    f"{c['calls_per_second']:.0f}",
                    str(c["timeouts"]),
                    str(c["retries"]),
                    str(c["failures"]),
                    _millis(c["latency_p50"]),
                    _millis(c["latency_p99"]),
                    f"{c['capacity_wait_seconds']:.2f}s",
                )
            )
        lines.append(_table(call_rows))
    channels = metrics.get("channels", {})
    if channels:
        lines.append("")
        channel_rows: list[tuple[str, ...]] = [("channel", "FILL", "BLOCKED")]
        for name, c in sorted(channels.items()):
            channel_rows.append((f"  {name}", _pct(c["fill"]), f"{c['blocked_seconds']:.2f}s"))
        lines.append(_table(channel_rows))
    return "\n".join(lines)


def _pending_by_source(operators: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """Source uid -> (subtasks reporting, records behind the end of their input): the
    readers' ``pendingRecords`` (Kafka sources, and the exchanges between workers)."""
    found: dict[str, tuple[int, float]] = {}
    for op in operators.values():
        pending = (op.get("connector") or {}).get("pendingRecords")
        if op.get("kind") == "source" and pending is not None:
            subtasks, total = found.get(op["uid"], (0, 0.0))
            found[op["uid"]] = (subtasks + 1, total + float(pending))
    return found


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _millis(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def _pct(ratio: float) -> str:
    return f"{ratio:.0%}"


def _watermark(value: Any) -> str:
    """An event time as UTC (``-`` before the first watermark, ``end`` after the last)."""
    if value is None or value == float("-inf"):
        return "-"
    if value == float("inf"):
        return "end"
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
