"""The dashboard's chart points per vertex, and restarts noted as events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streamflow.metrics.history import ChartHistory
from streamflow.metrics.layout import Edge, JobLayout, OperatorInfo, Vertex
from streamflow.metrics.registry import MetricsRegistry

from metrics_kit import raw_read

LAYOUT = JobLayout(
    vertices=(Vertex("src", "numbers -> double", 1, (OperatorInfo("src", "numbers", "source"),
                                                     OperatorInfo("double", "map", "map"))),),
    edges=(Edge("src", "sink", "hash", False),),
)


def add_double(raw: dict[str, Any], records_out: int) -> dict[str, Any]:
    raw["operators"]["double[0]"] = {**raw["operators"]["src[0]"], "uid": "double", "kind": "map",
                                     "records_out": records_out}
    return raw


def test_points_hold_rates_worst_subtask_times_and_watermark_lag_per_vertex() -> None:
    state = {"raw": add_double(raw_read(busy=1.0, blocked=3.0, records=400, watermark=990.0), 200), "now": 5.0}
    execution: Any = SimpleNamespace(settings=SimpleNamespace(job_name="unit"))
    registry = MetricsRegistry(execution, read=lambda _: state["raw"], monotonic=lambda: state["now"])
    history = ChartHistory(LAYOUT, points=2)
    registry.add_listener(history.add)
    reading = registry.sample()
    point = history.since(0)[0]
    vertex = point["vertices"]["src"]
    assert (vertex["in"], vertex["out"]) == (100.0, 50.0)  # 400 read and 200 out of the chain in 4 s
    assert (vertex["busy"], vertex["backpressured"]) == (250.0, 750.0)
    assert vertex["watermark_lag"] == round(reading.time - 990.0, 3)
    assert history.since(point["t"]) == []

    state["raw"], state["now"] = add_double(raw_read(attempt=2, records=5), 1), 6.0
    state["raw"]["failures"] = ["ValueError: boom"]
    registry.sample()
    registry.sample()
    assert len(history.since(0)) == 2  # the ring buffer keeps the newest
    assert [(e["attempt"], e["failure"]) for e in history.events] == [(2, "ValueError: boom")]
    assert history.since(0)[-1]["vertices"]["src"]["watermark_lag"] is None  # no watermark in attempt 2 yet
