"""A raw metrics read (the shape of job_metrics()) for the registry and history tests."""

from __future__ import annotations

from typing import Any


def raw_read(
    *,
    attempt: int = 1,
    busy: float = 0.0,
    idle: float = 0.0,
    blocked: float = 0.0,
    records: int = 0,
    channel_blocked: float = 0.0,
    watermark: float = float("-inf"),
    connector: dict[str, float] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One source task ``src[0]`` feeding one channel, as job_metrics() shapes it."""
    return {
        "job": "unit",
        "status": "running",
        "attempt": attempt,
        "failures": [],
        "started_at": 1_000.0,
        "uptime_seconds": 12.5,
        "tasks": {
            "src[0]": {
                "vertex": "src", "subtask": 0,
                "busy_seconds": busy, "idle_seconds": idle, "backpressured_seconds": blocked,
                "input_watermark": watermark, "output_watermark": watermark,
                "checkpoint": None,
            }
        },
        "operators": {
            "src[0]": {
                "uid": "src", "kind": "source", "task": "src[0]", "vertex": "src", "subtask": 0,
                "records_in": records, "records_out": records, "records_skipped": 0,
                "records_dead_lettered": 0, "records_late_dropped": 0, "connector": connector or {},
            }
        },
        "channels": {
            "src[0] -> sink[0]": {
                "fill": 0.5, "queued": 4, "capacity": 8, "blocked_seconds": channel_blocked, "puts": 1,
                "upstream": "src[0]", "downstream": "sink[0]",
            }
        },
        "checkpoints": {
            "completed": len(history or []), "failed": 0, "restored_from": None, "restored_path": None,
            "in_progress": [], "history": history or [],
        },
    }
