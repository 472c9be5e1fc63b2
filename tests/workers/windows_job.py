"""The event-time job of the workers tests: a tumbling window count after a key_by.

    input (Kafka, 8 partitions, JSON {"id", "key", "ts"}; event time from "ts", bounded
    out of orderness, optionally idleness)  -> pace -> key_by key -> tumbling event-time window
    (count and ids)  -> stamp (adds the result's own timestamp)  -> output (Kafka, EOS)

On N > 1 workers the key_by is an exchange topic: the records' timestamps, the
watermarks and the idleness of the writing subtasks cross it. Every key's records come
from one input partition in timestamp order, so no record is late and the output is
fixed by the input alone (:func:`expected_windows`), whatever the number of workers and
restarts. An unbounded run fires a window once the event time of every non-idle input
passed it (:func:`fired_windows`).

``build(env)`` is the ``streamflow run windows_job:build`` entry point; its settings
come from the environment (``WINDOWS_JOB_*``); a crash point is armed as in
:mod:`workers_job`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import workers_job
from streamflow import ProcessFunction, StreamEnvironment, WatermarkStrategy
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.windowing import TumblingEventTimeWindows
from streamflow.windowing.functions import ProcessWindowFunction
from streamflow.eventtime.windows import TimeWindow

WINDOW = 10.0
BOUND = 1.0  # seconds of out of orderness the watermarks allow
START = 1_000_000.0


def record(i: int, keys: int, step: float = 0.25) -> dict[str, Any]:
    return {"id": i, "key": f"k{(i * 7) % keys}", "ts": START + i * step}


def window_of(ts: float) -> tuple[float, float]:
    start = ts - ts % WINDOW
    return start, start + WINDOW


def expected_windows(records: Iterable[dict[str, Any]], watermark: float = float("inf")) -> list[dict[str, Any]]:
    """The output rows of the windows that fire once event time reaches ``watermark``
    (every window at the end of bounded input), sorted as :func:`rows_in_order` sorts."""
    ids: dict[tuple[str, float, float], list[int]] = defaultdict(list)
    for r in records:
        ids[(r["key"], *window_of(r["ts"]))].append(r["id"])
    rows = [
        {"key": key, "start": start, "end": end, "count": len(members), "ids": sorted(members), "ts": last}
        for (key, start, end), members in ids.items()
        if (last := TimeWindow(start, end).max_timestamp) <= watermark
    ]
    return rows_in_order(rows)


def fired_windows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What an unbounded run fires over ``records``: the watermark is the newest
    timestamp less the bound (the tests keep it inside a window, off any edge)."""
    return expected_windows(records, max(r["ts"] for r in records) - BOUND)


def rows_in_order(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (row["key"], row["start"], row["ids"]))


@dataclass(frozen=True, slots=True)
class WindowSettings:
    bootstrap: str
    input: str
    output: str
    bounded: bool = True
    pace: float = 0.0  # seconds per record before the key_by: spreads a run over many checkpoints
    idleness: float = 0.0  # > 0: seconds without records before an input split turns idle
    crash_worker: int | None = None
    checkpoint_root: Path | None = None

    @classmethod
    def from_environment(cls) -> WindowSettings:
        env = os.environ
        crash = env.get("WINDOWS_JOB_CRASH_WORKER")
        root = env.get("WINDOWS_JOB_CHECKPOINT_ROOT")
        return cls(
            bootstrap=env["WINDOWS_JOB_BOOTSTRAP"], input=env["WINDOWS_JOB_INPUT"], output=env["WINDOWS_JOB_OUTPUT"],
            bounded=env.get("WINDOWS_JOB_BOUNDED") == "1", pace=float(env.get("WINDOWS_JOB_PACE", "0")),
            idleness=float(env.get("WINDOWS_JOB_IDLENESS", "0")),
            crash_worker=None if crash is None else int(crash), checkpoint_root=None if root is None else Path(root),
        )

    def environment(self) -> dict[str, str]:
        """The variables that make :meth:`from_environment` give these settings."""
        env = {
            "WINDOWS_JOB_BOOTSTRAP": self.bootstrap, "WINDOWS_JOB_INPUT": self.input,
            "WINDOWS_JOB_OUTPUT": self.output, "WINDOWS_JOB_BOUNDED": "1" if self.bounded else "0",
            "WINDOWS_JOB_PACE": str(self.pace), "WINDOWS_JOB_IDLENESS": str(self.idleness),
        }
        if self.crash_worker is not None:
            env["WINDOWS_JOB_CRASH_WORKER"] = str(self.crash_worker)
        if self.checkpoint_root is not None:
            env["WINDOWS_JOB_CHECKPOINT_ROOT"] = str(self.checkpoint_root)
        return env


class Pace:
    def __init__(self, pace: float) -> None:
        self.pace = pace

    async def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.pace:
            await asyncio.sleep(self.pace)
        return row


class CountIds(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        ids = sorted(row["id"] for row in elements)
        window = context.window
        out.collect({"key": key, "start": window.start, "end": window.end, "count": len(ids), "ids": ids})


class Stamp(ProcessFunction):
    """The window result with its own event timestamp (the window's max timestamp)."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect({**value, "ts": ctx.timestamp()})


def timestamp_of(row: dict[str, Any]) -> float:
    return float(row["ts"])


def key_of(row: dict[str, Any]) -> str:
    return str(row["key"])


def encode(row: Any) -> bytes:
    return json.dumps(row).encode()


def declare(env: StreamEnvironment, settings: WindowSettings) -> None:
    event_time = WatermarkStrategy.for_bounded_out_of_orderness(BOUND).with_timestamp_assigner(timestamp_of)
    if settings.idleness > 0:
        # Not with a pace: a split waiting behind a paced batch of another would turn idle
        # (idleness is measured in wall-clock time) and its records would come late.
        event_time = event_time.with_idleness(settings.idleness)
    (
        env.from_source(
            KafkaSource(settings.bootstrap, topics=[settings.input], bounded=settings.bounded, value_deserializer="json"),
            name="input", watermark_strategy=event_time,
        ).uid("input")
        .map(Pace(settings.pace)).uid("pace")
        .key_by(key_of)
        .window(TumblingEventTimeWindows.of(WINDOW))
        .process(CountIds()).uid("window")
        .process(Stamp()).uid("stamp")
        .sink_to(KafkaSink(
            settings.bootstrap, settings.output, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
            transactional_id_prefix=settings.output, value_serializer=encode,
        )).uid("out")
    )


def build(env: StreamEnvironment) -> None:
    """``streamflow run windows_job:build``: settings from the environment."""
    settings = WindowSettings.from_environment()
    workers_job.arm_crash(env, settings)  # type: ignore[arg-type]  # the same two fields
    declare(env, settings)
