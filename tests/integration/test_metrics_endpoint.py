"""The Prometheus endpoint and the dashboard's JSON of a running job, scraped over real
HTTP on 127.0.0.1: values move as the job runs, a slow sink shows as backpressure
upstream, checkpoint and transaction metrics appear once checkpoints complete."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamflow import RestartStrategy, StreamEnvironment
from streamflow.api.connector import SourceBatch, SourceReaderBase
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.file_sink import ExactlyOnceFileSink
from streamflow.errors import ConfigError
from streamflow.testing.slow_sink import SlowSink

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def slow_job(tmp_path: Path) -> StreamEnvironment:
    """source(2) -> double -> total per key -> a slow sink and an exactly-once file sink,
    every operator its own task, small channels, checkpoints every 0.3 s."""
    env = StreamEnvironment(parallelism=2)
    env.set_restart_strategy(RestartStrategy.none())
    env.enable_checkpointing(0.3, directory=tmp_path / "checkpoints")
    env.disable_operator_chaining()
    env.set_channel_capacity(2).set_source_batch_size(20)
    totals = (
        env.from_source(CollectionSource(list(range(400_000)), batch_size=20), name="numbers").uid("numbers")
        .map(lambda x: x * 2).uid("double")
        .key_by(lambda x: x % 10).reduce(lambda a, b: a + b).uid("total")
    )
    totals.sink_to(SlowSink(per_batch=0.004)).uid("slow")
    totals.sink_to(ExactlyOnceFileSink(tmp_path / "out")).uid("files")
    return env


async def scrape(session: aiohttp.ClientSession, url: str) -> tuple[Samples, dict[str, str]]:
    async with session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def values(samples: Samples, name: str, **labels: str) -> list[float]:
    wanted = set(labels.items())
    return [v for (n, ls), v in samples.items() if n == name and wanted <= ls]


async def until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.1)


async def test_prometheus_scrapes_of_a_running_job_move_and_show_the_slow_sink(tmp_path: Path) -> None:
    env = slow_job(tmp_path).set_metrics_port(0)
    client = env.execute_async("scraped")
    url = client.metrics_url
    assert url is not None and url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    assert client.web_url is None
    async with aiohttp.ClientSession() as session:
        async def committed() -> bool:
            samples, _ = await scrape(session, url)
            return sum(values(samples, "streamflow_operator_numTransactionsCommitted", operator="files")) >= 1

        await until(committed)  # a checkpoint completed and the file sink committed it
        first, types = await scrape(session, url)
        await asyncio.sleep(1.0)
        second, _ = await scrape(session, url)
    await client.cancel()

    assert types["streamflow_task_busyTimeMsPerSecond"] == "gauge"
    job = {"job": "scraped"}
    read = [sum(values(s, "streamflow_operator_numRecordsOut", operator="numbers", **job)) for s in (first, second)]
    written = [sum(values(s, "streamflow_operator_numRecordsIn", operator="slow")) for s in (first, second)]
    assert read[1] > read[0] > 0 and written[1] > written[0] > 0
    assert len(values(second, "streamflow_operator_numRecordsInPerSecond")) == 10  # 5 operators x 2 subtasks
    assert sum(values(second, "streamflow_operator_numRecordsInPerSecond", operator="slow")) > 0

    # the sink is busy and never backpressured (it has no output); the stage feeding it waits
    sink_busy = values(second, "streamflow_task_busyTimeMsPerSecond", task="slow")
    assert len(sink_busy) == 2 and min(sink_busy) > 500
    assert values(second, "streamflow_task_backPressuredTimeMsPerSecond", task="slow") == [0.0, 0.0]
    assert max(values(second, "streamflow_task_backPressuredTimeMsPerSecond", task="total")) > 500
    for subtask in ("0", "1"):
        times = [values(second, f"streamflow_task_{m}TimeMsPerSecond", task="total", subtask=subtask)[0]
                 for m in ("busy", "idle", "backPressured")]
        assert sum(times) == pytest.approx(1000.0, abs=1.0)
    into_slow = [v for (n, ls), v in second.items()
                 if n == "streamflow_channel_usage" and ("downstream", "slow[0]") in ls]
    assert into_slow and max(into_slow) == 1.0  # the channel into the slow sink is full

    # checkpoint metrics, after checkpoints completed
    assert values(second, "streamflow_job_numberOfCompletedCheckpoints", **job)[0] >= 1
    assert values(second, "streamflow_job_lastCheckpointDuration")[0] > 0
    assert values(second, "streamflow_job_lastCheckpointSize")[0] > 0
    assert values(second, "streamflow_job_lastCheckpointPersistedData") == [0.0]  # aligned checkpoints
    assert len(values(second, "streamflow_task_checkpointStartDelayNanos")) == 10  # every task
    assert len(values(second, "streamflow_task_checkpointAlignmentTime", task="total")) == 2
    assert sum(values(second, "streamflow_operator_numTransactionsCommitted", operator="files")) >= 1
    assert values(second, "streamflow_operator_numTransactionsOpen", operator="files") == [1.0, 1.0]

    async with aiohttp.ClientSession() as session:  # the endpoint ends with the job
        with pytest.raises(aiohttp.ClientConnectionError):
            await scrape(session, url)


async def test_the_dashboards_json_describes_graph_checkpoints_and_history(tmp_path: Path) -> None:
    env = slow_job(tmp_path).set_web_ui(0)
    client = env.execute_async("watched")
    base = client.web_url
    assert base is not None and client.metrics_url == base + "metrics"
    async with aiohttp.ClientSession() as session:
        async def get(path: str) -> Any:
            async with session.get(base + path) as response:
                assert response.status == 200, path
                return await response.json()

        async def two_points_and_a_checkpoint() -> bool:
            history = await get("api/history?since=0")
            checkpoints = await get("api/checkpoints")
            return len(history["points"]) >= 2 and checkpoints["completed"] >= 1

        await until(two_points_and_a_checkpoint)
        graph = await get("api/graph")
        job = await get("api/job")
        metrics = await get("api/metrics")
        checkpoints = await get("api/checkpoints")
        history = await get("api/history?since=0")
        later = await get(f"api/history?since={history['points'][-1]['t']}")
        async with session.get(base) as page, session.get(base + "static/dashboard.js") as script:
            assert page.status == 200 and "Job graph" in await page.text()
            assert script.status == 200 and "sfDashboard" in await script.text()
        async with session.get(base + "static/nothing.js") as missing, session.get(base + "metrics") as prom:
            assert missing.status == 404
            assert prom.status == 200 and "streamflow_task_busyTimeMsPerSecond" in await prom.text()
    await client.cancel()

    assert graph["job"] == "watched"
    assert [v["id"] for v in graph["vertices"]] == ["numbers", "double", "total", "slow", "files"]
    assert [(e["upstream"], e["downstream"], e["partitioning"]) for e in graph["edges"]] == [
        ("numbers", "double", "forward"), ("double", "total", "hash"),
        ("total", "slow", "forward"), ("total", "files", "forward"),
    ]
    assert graph["vertices"][0]["tasks"] == ["numbers[0]", "numbers[1]"] and graph["vertices"][3]["sink"]
    assert (job["status"], job["attempt"], job["restarts"], job["failures"]) == ("running", 1, 0, [])
    assert job["checkpointing"]["interval"] == 0.3
    assert len(metrics["tasks"]) == 10 and metrics["tasks"]["slow[1]"]["busyTimeMsPerSecond"] >= 0
    assert metrics["channels"]["double[0] -> total[1]"]["upstream"] == "double[0]"
    completed = [c for c in checkpoints["history"] if c["status"] == "completed"]
    assert completed and set(completed[0]["subtasks"]) == set(metrics["tasks"])
    phases = completed[0]["subtasks"]["total[0]"]
    assert phases["sync"] > 0 and phases["async"] > 0 and phases["alignment"] >= 0 and phases["size"] > 0
    assert [p["t"] for p in history["points"]] == sorted(p["t"] for p in history["points"])
    assert set(history["points"][-1]["vertices"]) == {"numbers", "double", "total", "slow", "files"}
    assert all(p["t"] > history["points"][-1]["t"] for p in later["points"])


async def test_ports_are_checked_when_the_job_starts_and_when_configured(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = slow_job(tmp_path).set_web_ui(port)
        refused = rf"cannot serve the dashboard on 127.0.0.1:{port}: .*choose another port"
        with pytest.raises(ConfigError, match=refused):
            env.execute_async("clash")
    with pytest.raises(ConfigError, match="different ports"):
        slow_job(tmp_path).set_web_ui(9999).set_metrics_port(9999).execute_async("same")
    with pytest.raises(ConfigError, match="0 to 65535"):
        StreamEnvironment().set_metrics_port(70000)
    with pytest.raises(ConfigError, match="host"):
        StreamEnvironment().set_web_ui(0, host="")


class QuietSource:
    """Nothing to read for ``seconds`` (each poll waits its ``max_wait`` and returns an
    empty batch), then the end of input."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def create_reader(self, ctx: Any) -> Any:
        seconds = self.seconds

        class Reader(SourceReaderBase):
            async def open(self) -> None:
                self.until = time.monotonic() + seconds

            async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
                if time.monotonic() >= self.until:
                    return None
                await asyncio.sleep(max_wait)
                return SourceBatch([], [], "quiet")

            def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
                return []

        return Reader()


async def test_a_source_waiting_for_input_is_idle_not_busy() -> None:
    env = StreamEnvironment()
    env.from_source(QuietSource(0.6), name="quiet").uid("quiet").sink_to(SlowSink()).uid("out")
    result = await env.execute("quiet")
    source = result.metrics["tasks"]["quiet[0]"]
    assert source["idle_ratio"] > 0.8 and source["busy_ratio"] < 0.2, source
