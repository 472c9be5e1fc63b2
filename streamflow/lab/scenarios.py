"""The lab's named experiments: each builds one backpressured pipeline on an environment.

Every scenario reads from the same paced source (:class:`PacedSource`: ``rate`` records
per second over all subtasks, each record ``(sequence, key, wall-clock stamp)``) and ends in the same probe
sink, which measures end-to-end latency (now minus the stamp) and counts records; what
differs is where the pipeline is slow:

- ``slow-sink``: the sink writes slower than the source offers (``sink_cost`` per record);
- ``slow-keyed-stage``: a keyed counting stage costs ``record_cost`` per record;
- ``skewed-keys``: the same keyed stage, keys drawn from a Zipf law, so one subtask is hot;
- ``bursty-source``: bursts of three times ``rate`` for 2 s, then a quarter of it for 3 s,
  into a sink that keeps up only on average;
- ``async-capacity``: an async call of ``call_latency`` s with ``async_capacity`` calls in
  flight per subtask bounds throughput (Flink's Async I/O capacity).

Slowness is an awaited sleep (the time of a remote call or a busy database), not a spin:
the machine stays free for the rest of the job, as with real I/O.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from streamflow.api.connector import SinkContext, SinkWriterBase, SourceBatch, SourceContext
from streamflow.api.functions import KeyedProcessFunction
from streamflow.datastream.environment import StreamEnvironment
from streamflow.errors import ConfigError
from streamflow.state.descriptors import ValueStateDescriptor

__all__ = ["SCENARIOS", "LabOptions", "LatencyProbe", "Scenario"]

Record = tuple[int, int, float]  # (sequence, key, wall-clock seconds when the source made it)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabOptions:
    """The parameters of one experiment; a scenario starts from its own defaults."""

    duration: float = 30.0  # seconds each checkpointing mode runs
    rate: float = 2000.0  # records per second the source offers (all subtasks)
    parallelism: int = 2
    interval: float = 1.0  # checkpoint interval, seconds
    aligned_timeout: float | None = None  # unaligned runs: start aligned, switch after this
    keys: int = 100
    record_cost: float = 0.004  # seconds per record at the keyed stage
    sink_cost: float = 0.0  # seconds per record at the sink
    call_latency: float = 0.02  # seconds per async call
    async_capacity: int = 4
    channel_capacity: int = 8  # batches per channel
    source_batch: int = 100  # records per source batch
    sample_interval: float = 1.0  # seconds between metric samples

    def __post_init__(self) -> None:
        for name in ("duration", "rate", "interval", "sample_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"lab option {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("parallelism", "keys", "async_capacity", "channel_capacity", "source_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"lab option {name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("record_cost", "sink_cost", "call_latency"):
            if getattr(self, name) < 0:
                raise ConfigError(f"lab option {name} must be >= 0 seconds, got {getattr(self, name)!r}")


class LatencyProbe:
    """What the probe sink saw since the last :meth:`drain`: records and their latencies.

    One probe per run, shared by the sink's writers in this process (the lab runs its
    job in process)."""

    __slots__ = ("_latencies", "_count")

    def __init__(self) -> None:
        self._latencies: list[float] = []
        self._count = 0

    def seen(self, records: list[Record]) -> None:
        now = time.time()
        self._latencies.extend(now - r[2] for r in records)
        self._count += len(records)

    def drain(self) -> tuple[int, list[float]]:
        """(records, their latencies in seconds) since the previous drain."""
        count, latencies = self._count, self._latencies
        self._count, self._latencies = 0, []
        return count, latencies


class ProbeSink:
    """The scenarios' sink: waits ``cost`` seconds per record (a slow database when > 0),
    then reports the records to the probe."""

    def __init__(self, probe: LatencyProbe, cost: float) -> None:
        self.probe = probe
        self.cost = cost

    def create_writer(self, ctx: SinkContext) -> ProbeWriter:
        return ProbeWriter(self)


class ProbeWriter(SinkWriterBase):
    def __init__(self, sink: ProbeSink) -> None:
        self._sink = sink

    async def write(self, records: list[Any]) -> None:
        if self._sink.cost:
            await asyncio.sleep(self._sink.cost * len(records))
        self._sink.probe.seen(records)


class SlowCount(KeyedProcessFunction):
    """Counts records per key in keyed state; each record costs ``cost`` seconds (slept
    once per ``_PER_SLEEP`` records, so the loop is not woken per record)."""

    _PER_SLEEP = 10

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.pending = 0

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    async def process_element(self, value: Record, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)
        self.pending += 1
        if self.pending >= self._PER_SLEEP:
            self.pending = 0
            await asyncio.sleep(self.cost * self._PER_SLEEP)
        out.collect(value)


# -- the source ----------------------------------------------------------------------------


KeyDraw = Callable[[random.Random], int]


def uniform_keys(keys: int) -> KeyDraw:
    return lambda rng: rng.randrange(keys)


def zipf_keys(keys: int, exponent: float = 1.2) -> KeyDraw:
    """Key k drawn with weight 1 / (k + 1) ** exponent: key 0 is by far the hottest."""
    cumulative: list[float] = []
    total = 0.0
    for k in range(keys):
        total += 1.0 / (k + 1) ** exponent
        cumulative.append(total)
    return lambda rng: min(keys - 1, bisect.bisect_left(cumulative, rng.random() * total))


RateAt = Callable[[float], float]  # seconds since start -> records per second


@dataclass(frozen=True, slots=True)
class PacedSource:
    """Offers ``rate_at(t) / parallelism`` records per second per subtask, unbounded.

    Each record is stamped with the wall clock when the reader hands it to the job.
    Under backpressure the reader is polled less often; what it owes then is capped at
    one batch, as a producer that waits rather than piles up (the offered load is
    throttled, the latency counts from the moment a record enters the job)."""

    rate_at: RateAt
    draw: KeyDraw

    def create_reader(self, ctx: SourceContext) -> PacedReader:
        restored = ctx.restored_splits or []
        seq = int(restored[0]["next"]) if restored else 0
        return PacedReader(self, ctx.subtask_index, ctx.parallelism, seq)


class PacedReader:
    def __init__(self, source: PacedSource, subtask: int, parallelism: int, seq: int) -> None:
        self._source = source
        self._parallelism = parallelism
        self._split = f"paced[{subtask}]"
        self._rng = random.Random(subtask)
        self._seq = seq
        self._started = self._last = time.monotonic()
        self._due = 0.0

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        now = time.monotonic()
        rate = self._source.rate_at(now - self._started) / self._parallelism
        self._due = min(float(max_records), self._due + rate * (now - self._last))
        self._last = now
        if self._due < 1.0:
            await asyncio.sleep(min(max_wait, (1.0 - self._due) / rate if rate > 0 else max_wait))
            return SourceBatch([], [], self._split)
        count = int(self._due)
        self._due -= count
        stamp, draw, rng, first = time.time(), self._source.draw, self._rng, self._seq
        records = [(first + i, draw(rng), stamp) for i in range(count)]
        self._seq += count
        return SourceBatch(records, list(range(first, first + count)), self._split)

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [{"split": self._split, "next": self._seq}]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


def bursts(rate: float) -> RateAt:
    """Three times ``rate`` for 2 s, then a quarter of it for 3 s, again and again."""
    return lambda t: rate * 3.0 if t % 5.0 < 2.0 else rate / 4.0


# -- the scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named pipeline and the options it starts from."""

    name: str
    summary: str
    build: Callable[[StreamEnvironment, LabOptions, LatencyProbe], None]
    defaults: dict[str, Any] = field(default_factory=dict)

    def options(self, **overrides: Any) -> LabOptions:
        """The scenario's defaults, then ``overrides`` (None values are left out)."""
        chosen = {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}
        return replace(LabOptions(), **chosen)


def _source(env: StreamEnvironment, options: LabOptions, rate_at: RateAt | None = None, draw: KeyDraw | None = None) -> Any:
    rate = options.rate
    source = PacedSource(rate_at or (lambda t: rate), draw or uniform_keys(options.keys))
    return env.from_source(source, name="source").uid("source")


def _slow_sink(env: StreamEnvironment, options: LabOptions, probe: LatencyProbe) -> None:
    (_source(env, options).key_by(lambda r: r[1]).map(lambda r: r).uid("route")
        .sink_to(ProbeSink(probe, options.sink_cost), name="sink").uid("sink"))  # fmt: skip


def _keyed_stage(draw: Callable[[LabOptions], KeyDraw]) -> Callable[[StreamEnvironment, LabOptions, LatencyProbe], None]:
    def build(env: StreamEnvironment, options: LabOptions, probe: LatencyProbe) -> None:
        (_source(env, options, draw=draw(options)).key_by(lambda r: r[1])
            .process(SlowCount(options.record_cost)).uid("keyed-stage")
            .sink_to(ProbeSink(probe, options.sink_cost), name="sink").uid("sink"))  # fmt: skip

    return build


def _bursty(env: StreamEnvironment, options: LabOptions, probe: LatencyProbe) -> None:
    (_source(env, options, rate_at=bursts(options.rate)).rebalance()
        .sink_to(ProbeSink(probe, options.sink_cost), name="sink").uid("sink"))  # fmt: skip


def _async_capacity(env: StreamEnvironment, options: LabOptions, probe: LatencyProbe) -> None:
    latency = options.call_latency

    async def call(record: Record) -> Record:
        await asyncio.sleep(latency)
        return record

    (_source(env, options).rebalance().map_async(call, capacity=options.async_capacity, ordered=True).uid("call")
        .sink_to(ProbeSink(probe, options.sink_cost), name="sink").uid("sink"))  # fmt: skip


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("slow-sink", "the sink writes 1.5 ms per record: 1333 records/s over 2 subtasks, the source offers "
                 "2000", _slow_sink, {"sink_cost": 0.0015}),
        Scenario("slow-keyed-stage", "a keyed stage costs 4 ms per record: 500 records/s over 2 subtasks, the source "
                 "offers 2000", _keyed_stage(lambda o: uniform_keys(o.keys)), {"record_cost": 0.004}),
        Scenario("skewed-keys", "the keyed stage of slow-keyed-stage at 1 ms per record, keys from a Zipf law "
                 "(exponent 1.2): one subtask gets most records", _keyed_stage(lambda o: zipf_keys(o.keys)),
                 {"record_cost": 0.001, "rate": 1200.0}),
        Scenario("bursty-source", "bursts of 3x the rate for 2 s, a quarter of it for 3 s; the sink keeps up on "
                 "average only", _bursty, {"sink_cost": 0.0009, "rate": 1000.0}),
        Scenario("async-capacity", "an async call of 20 ms with 4 calls in flight per subtask: at most 400 "
                 "records/s over 2 subtasks", _async_capacity, {"rate": 1000.0}),
    )
}
