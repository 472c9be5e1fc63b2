"""The job registry on disk: register, find by id / prefix / name, stale entries, and
the text views of ``list`` and ``status``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streamflow.control import HOME_ENV, JobEntry, JobRegistry, streamflow_home
from streamflow.control.views import format_jobs, format_status
from streamflow.errors import ConfigError


def entry(registry: JobRegistry, name: str, started: float = 1.0) -> JobEntry:
    new = registry.new_entry(name)
    registered = JobEntry(job_id=new.job_id, name=name, pid=new.pid, socket=new.socket, started_at=started)
    registry.register(registered)
    return registered


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_home_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "sf"))
    assert streamflow_home() == tmp_path / "sf"
    monkeypatch.delenv(HOME_ENV)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert streamflow_home() == tmp_path / "run" / "streamflow"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert streamflow_home() == Path.home() / ".streamflow"


def test_entries_are_private_and_found_by_id_prefix_or_name(tmp_path: Path) -> None:
    registry = JobRegistry(tmp_path)
    orders = entry(registry, "orders", 1.0)
    clicks = entry(registry, "clicks", 2.0)
    assert stat.S_IMODE(registry.directory.stat().st_mode) == 0o700
    assert registry.entries() == [orders, clicks]
    assert registry.resolve(orders.job_id) == orders
    assert registry.resolve("clicks") == clicks
    assert registry.resolve(orders.job_id[:-2]) == orders
    with pytest.raises(ConfigError, match=r"no running job 'payments' \(running: orders-\w+, clicks-\w+;"):
        registry.resolve("payments")
    second = entry(registry, "orders", 3.0)
    with pytest.raises(ConfigError, match=rf"'orders' matches several running jobs \({orders.job_id}, {second.job_id}\)"):
        registry.resolve("orders")
    assert registry.resolve(second.job_id) == second
    registry.unregister(orders)
    assert registry.resolve("orders") == second


def test_stale_and_unreadable_entries_are_removed(tmp_path: Path) -> None:
    registry = JobRegistry(tmp_path)
    alive = entry(registry, "alive")
    stale = JobEntry(job_id="gone-0000abcd", name="gone", pid=dead_pid(), socket=str(tmp_path / "g.sock"), started_at=0)
    registry.register(stale)
    (tmp_path / "g.sock").write_text("")
    (registry.directory / "broken-1.json").write_text("{")
    (registry.directory / "odd-2.json").write_text(json.dumps({"job_id": "../x", "name": "x"}))
    assert registry.entries() == [alive]
    assert sorted(p.name for p in registry.directory.iterdir()) == [f"{alive.job_id}.json"]
    assert not (tmp_path / "g.sock").exists()


def test_a_socket_path_too_long_for_the_os_goes_to_a_private_temporary_directory(tmp_path: Path) -> None:
    registry = JobRegistry(tmp_path / ("deep" * 30))
    new = registry.new_entry("job")
    socket = Path(new.socket)
    assert socket.parent != registry.directory and socket.parent.name.startswith("streamflow-")
    assert len(os.fsencode(socket)) < 100
    registry.register(new)
    registry.unregister(new)
    assert not socket.parent.exists() and registry.entries() == []


def test_list_and_status_views() -> None:
    jobs = [{"job_id": "wc-1a2b3c4d", "name": "wc", "status": "running", "pid": 42, "started_at": 100.0}]
    assert format_jobs([]) == "no running jobs"
    assert format_jobs(jobs, now=165.0).splitlines() == [
        "JOB ID       NAME  STATUS   PID  UPTIME",
        "wc-1a2b3c4d  wc    running  42   1m05s",
    ]
    status = {
        "job_id": "wc-1a2b3c4d", "name": "wc", "pid": 42, "started_at": 100.0,
        "metrics": {
            "status": "running", "attempt": 2, "failures": ["InjectedFault: boom"],
            "checkpoints": {
                "completed": 1, "failed": 0, "restored_from": 3, "restored_path": "/sp/savepoint-wc-3-abcdef",
                "history": [{"id": 4, "status": "completed", "duration": 0.0123, "size": 310, "reason": None,
                             "final": False, "savepoint": "/sp/savepoint-wc-4-012345"}],
            },
            "tasks": {
                "count[0]": {
                    "busy_ratio": 0.25, "idle_ratio": 0.5, "backpressured_ratio": 0.25,
                    "input_watermark": 1763700000.5, "output_watermark": float("-inf"), "input_idle": True,
                },
            },
            "operators": {"count[0]": {"records_late_dropped": 3}, "lines[0]": {"records_late_dropped": 0}},
            "channels": {"lines[0] -> count[0]": {"fill": 0.5, "blocked_seconds": 1.5}},
        },
    }
    status["web_url"] = "http://127.0.0.1:8081/"
    text = format_status(status, now=100.0)
    for line in [
        "job wc-1a2b3c4d (wc), pid 42, up 0m00s",
        "  status running, attempt 2",
        "  dashboard http://127.0.0.1:8081/",
        "  earlier failure: InjectedFault: boom",
        "  restored from checkpoint 3 (/sp/savepoint-wc-3-abcdef)",
        "checkpoints: 1 completed, 0 failed",
        "  4   completed  0.012s    310 B  savepoint /sp/savepoint-wc-4-012345",
        "  count[0]  25%   50%   25%            2025-11-21 04:40:00.500 (idle)  -",
        "  count[0]  3",
        "  lines[0] -> count[0]  50%   1.50s",
    ]:
        assert line in text.splitlines(), (line, text)
    assert "lines[0]  0" not in text  # only operators that dropped late records are listed


def test_an_entry_carries_the_jobs_dashboard_and_metrics_addresses(tmp_path: Path) -> None:
    registry = JobRegistry(tmp_path)
    new = registry.new_entry("served")
    served = JobEntry(job_id=new.job_id, name="served", pid=new.pid, socket=new.socket, started_at=1.0,
                      web_url="http://127.0.0.1:8081/", metrics_url="http://127.0.0.1:9249/metrics")
    registry.register(served)
    assert registry.resolve("served") == served
    written = json.loads((registry.directory / f"{served.job_id}.json").read_text())
    assert written["web_url"] == "http://127.0.0.1:8081/"
    del written["web_url"], written["metrics_url"]  # an entry written before they existed
    assert JobEntry.from_dict(written).web_url is None
    with pytest.raises(ValueError, match="bad web_url"):
        JobEntry.from_dict({**written, "web_url": 8081})


def test_status_shows_the_calls_of_async_operators() -> None:
    calls = {
        "capacity": 100, "in_flight": 37, "held": 40, "calls": 5000, "calls_per_second": 4812.4, "timeouts": 3,
        "retries": 12, "failures": 1, "restored_inputs": 0, "capacity_wait_seconds": 0.25,
        "latency_p50": 0.0211, "latency_p99": 0.0487,
    }
    status = {
        "job_id": "e-1", "name": "e", "pid": 1,
        "metrics": {
            "status": "running", "attempt": 1,
            "checkpoints": {"completed": 0, "failed": 0},
            "operators": {"enrich[0]": {"records_in": 5000, "async": calls}, "src[0]": {"records_in": 0}},
        },
    }
    lines = format_status(status, now=0.0).splitlines()
    assert "async operator  IN FLIGHT  CALLS/S  TIMEOUTS  RETRIES  FAILED  P50     P99     WAITED" in lines, lines
    assert "  enrich[0]     37/100     4812     3         12       1       21.1ms  48.7ms  0.25s" in lines, lines
