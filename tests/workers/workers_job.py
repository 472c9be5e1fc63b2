"""The job of the workers tests: a keyed count with operator state and a broadcast input.

    input (Kafka, 8 partitions)  -> parse -> enrich (waits for its code's name) -> key_by key
                                                ^ broadcast         [-> lookup -> key_by key]
    codes (Kafka, 1 partition)   -> parse ------+                                   -> count
                                                                                    -> output (Kafka, EOS)

An input record is ``{"id", "key"}``; its code is ``code_of(key)``. ``Enrich`` (a
BroadcastProcessFunction) names it from the broadcast table of codes; a record whose
code is not known yet waits in operator ListState until the code arrives (or, after a
restore, until the restored table knows it), in arrival order. ``Count`` keeps a keyed
ValueState and writes ``{"id", "key", "name", "count", "types"}``. With a lookup delay,
``lookup`` (a per-key map_async, see :class:`Lookup`) sits between them. Every key's records
come from one input partition and keep their order through every hop, so the output is
fixed by the input alone: record ``id`` of key ``k`` has count = its rank among ``k``'s
ids (:func:`expected_output`), whatever the number of workers, restarts and rescales.

``build(env)`` is the ``streamflow run workers_job:build`` entry point; it reads its
settings from the environment (``WORKERS_JOB_*``, see :class:`JobSettings`). A crash
point (``STREAMFLOW_CRASH``) is armed only in the worker ``WORKERS_JOB_CRASH_WORKER``
names, and only in its first process: a marker file in the checkpoint root says it was
armed, so the supervisor's restart of the crashed worker runs unarmed. With
``stall_lookup``, that process's lookup service stops answering instead and arms the
crash itself (see :class:`StalledService`), so the checkpoint it restores surely holds
calls in flight, however fast or loaded the machine.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import os
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamflow import BroadcastProcessFunction, KeyedProcessFunction, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.core.faults import FaultInjector
from streamflow.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from streamflow.workers.manifest import worker_directory

PARTITIONS = 8
CODES = 6
NAMES = MapStateDescriptor[str, str]("names")
WAITING = ListStateDescriptor[Any]("waiting")
COUNT = ValueStateDescriptor[int]("count", default=0)


def code_of(key: str) -> str:
    return f"c{int(key[1:]) % CODES}"


def name_of(code: str) -> str:
    return f"name-{code}"


def partition_of(key: str) -> int:
    """The input partition of ``key``: one per key, so its records keep their order."""
    return zlib.crc32(key.encode()) % PARTITIONS


def record(i: int, keys: int) -> dict[str, Any]:
    return {"id": i, "key": f"k{(i * 7) % keys}"}


def expected_output(records: list[dict[str, Any]]) -> dict[int, tuple[str, str, int]]:
    """id -> (key, name, count): the failure-free result of the job over ``records``
    (in their order per key)."""
    seen: dict[str, int] = defaultdict(int)
    out: dict[int, tuple[str, str, int]] = {}
    for r in records:
        seen[r["key"]] += 1
        out[r["id"]] = (r["key"], name_of(code_of(r["key"])), seen[r["key"]])
    return out


@dataclass(frozen=True, slots=True)
class JobSettings:
    bootstrap: str
    input: str
    codes: str
    output: str
    bounded: bool = False
    pace: float = 0.0  # seconds per record in ``parse``: spreads a run over many checkpoints
    crash_worker: int | None = None
    checkpoint_root: Path | None = None
    lookup_delay: float = 0.0  # > 0: a per-key map_async of that many seconds per call before ``count``
    stall_lookup: bool = False  # the crash worker's first process: lookup calls never answer

    @classmethod
    def from_environment(cls) -> JobSettings:
        env = os.environ
        crash = env.get("WORKERS_JOB_CRASH_WORKER")
        root = env.get("WORKERS_JOB_CHECKPOINT_ROOT")
        return cls(
            bootstrap=env["WORKERS_JOB_BOOTSTRAP"], input=env["WORKERS_JOB_INPUT"], codes=env["WORKERS_JOB_CODES"],
            output=env["WORKERS_JOB_OUTPUT"], bounded=env.get("WORKERS_JOB_BOUNDED") == "1",
            pace=float(env.get("WORKERS_JOB_PACE", "0")), crash_worker=None if crash is None else int(crash),
            checkpoint_root=None if root is None else Path(root),
            lookup_delay=float(env.get("WORKERS_JOB_LOOKUP_DELAY", "0")),
            stall_lookup=env.get("WORKERS_JOB_STALL_LOOKUP") == "1",
        )

    def environment(self) -> dict[str, str]:
        """The variables that make :meth:`from_environment` give these settings."""
        env = {
            "WORKERS_JOB_BOOTSTRAP": self.bootstrap, "WORKERS_JOB_INPUT": self.input,
            "WORKERS_JOB_CODES": self.codes, "WORKERS_JOB_OUTPUT": self.output,
            "WORKERS_JOB_BOUNDED": "1" if self.bounded else "0", "WORKERS_JOB_PACE": str(self.pace),
            "WORKERS_JOB_LOOKUP_DELAY": str(self.lookup_delay),
            "WORKERS_JOB_STALL_LOOKUP": "1" if self.stall_lookup else "0",
        }
        if self.crash_worker is not None:
            env["WORKERS_JOB_CRASH_WORKER"] = str(self.crash_worker)
        if self.checkpoint_root is not None:
            env["WORKERS_JOB_CHECKPOINT_ROOT"] = str(self.checkpoint_root)
        return env


class Parse:
    """JSON bytes -> ``(id, key, Decimal, (id, key))``: exact types must survive every hop."""

    def __init__(self, pace: float) -> None:
        self.pace = pace

    async def __call__(self, raw: bytes) -> tuple[int, str, decimal.Decimal, tuple[int, str]]:
        if self.pace:
            await asyncio.sleep(self.pace)
        data = json.loads(raw)
        return data["id"], data["key"], decimal.Decimal(data["id"]) / 8, (data["id"], data["key"])


def parse_code(raw: bytes) -> tuple[str, str]:
    data = json.loads(raw)
    return data["code"], data["name"]


class Enrich(BroadcastProcessFunction):
    """Names each record by its key's code; see the module docstring."""

    def initialize_state(self, ctx: Any) -> None:
        self.buffer = ctx.operator_state_store.get_list_state(WAITING)
        self.waiting: list[Any] = [tuple(r) for r in self.buffer.get()]

    def snapshot_state(self, ctx: Any) -> None:
        self.buffer.update(self.waiting)

    def process_element(self, record: Any, ctx: Any, out: Any) -> None:
        names = ctx.get_broadcast_state(NAMES)
        if self.waiting:
            self._release(names.get, out)  # a restored table may know their codes by now
        name = names.get(code_of(record[1]))
        if name is None:  # then any waiting record of its key waits for the same code
            self.waiting.append(record)
        else:
            out.collect((*record, name))

    def process_broadcast_element(self, entry: Any, ctx: Any, out: Any) -> None:
        code, name = entry
        ctx.get_broadcast_state(NAMES).put(code, name)
        self._release(lambda c: name if c == code else ctx.get_broadcast_state(NAMES).get(c), out)

    def _release(self, lookup: Any, out: Any) -> None:
        """Emit, in order, the waiting records whose code is known; a record stays behind
        an earlier waiting record of its key."""
        still: list[Any] = []
        blocked: set[str] = set()
        for waiting in self.waiting:
            name = None if waiting[1] in blocked else lookup(code_of(waiting[1]))
            if name is None:
                blocked.add(waiting[1])
                still.append(waiting)
            else:
                out.collect((*waiting, name))
        self.waiting = still


class StalledService:
    """A lookup service that stopped answering, in the crash worker's first process.

    Its first call arms the crash at the completion of the second checkpoint after the
    newest one complete in the worker's directory: one checkpoint runs at a time, so that
    checkpoint's barrier reached the lookup after the call started, and as no call ever
    answers, the checkpoint holds every input the lookup had by then. A crash point
    counted in records written would land before or after such a checkpoint depending
    on the machine's speed.
    """

    def __init__(self, faults: FaultInjector, directory: Path) -> None:
        self.faults = faults
        self.directory = directory
        self.armed = False

    def __deepcopy__(self, memo: dict[int, Any]) -> StalledService:
        return self  # one service, which every subtask's copy of the lookup calls

    async def never_answer(self) -> None:
        if not self.armed:
            self.armed = True
            self.faults.arm("after_completion", newest_complete_checkpoint(self.directory) + 2)
        await asyncio.Event().wait()


def newest_complete_checkpoint(directory: Path) -> int:
    """The highest ``n`` with a ``chk-<n>/_metadata`` in ``directory`` (0: none yet)."""
    complete = [
        int(chk.name.removeprefix("chk-")) for chk in directory.glob("chk-*")
        if chk.name.removeprefix("chk-").isdigit() and (chk / "_metadata").exists()
    ]
    return max(complete, default=0)


class Lookup:
    """An async call per record (a service that answers after ``delay`` seconds), which
    returns the record unchanged: its calls in flight at a barrier are operator state."""

    def __init__(self, delay: float, stalled: StalledService | None = None) -> None:
        self.delay = delay
        self.stalled = stalled

    async def __call__(self, record: Any) -> Any:
        if self.stalled is not None:
            await self.stalled.never_answer()
        await asyncio.sleep(self.delay)
        return record


class Count(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(COUNT)

    def process_element(self, record: Any, ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect({
            "id": record[0], "key": record[1], "name": record[4], "count": n,
            "types": [type(record[2]).__name__, type(record[3]).__name__],
        })


def encode(row: Any) -> bytes:
    return json.dumps(row).encode()


def key_of(record: Any) -> str:
    return str(record[1])


def declare(env: StreamEnvironment, settings: JobSettings, stalled: StalledService | None = None) -> None:
    """The pipeline of the module docstring, on ``env``; ``stalled``: the lookup's service
    does not answer."""
    codes = (
        env.from_source(
            KafkaSource(settings.bootstrap, topics=[settings.codes], bounded=settings.bounded), name="codes"
        ).uid("codes")
        .map(parse_code).uid("parse-codes")
        .broadcast(NAMES)
    )
    named = (
        env.from_source(
            KafkaSource(settings.bootstrap, topics=[settings.input], bounded=settings.bounded), name="input"
        ).uid("input")
        .map(Parse(settings.pace)).uid("parse")
        .connect(codes)
        .process(Enrich()).uid("enrich")
        .key_by(key_of)
    )
    if settings.lookup_delay > 0:
        # room and time for every input a worker of the tests gets: a stalled service holds
        # them all (a barrier behind inputs with no room would never pass) until the crash
        named = (
            named.map_async(Lookup(settings.lookup_delay, stalled), ordered="per_key", capacity=512, timeout=120.0)
            .uid("lookup").key_by(key_of)
        )
    (
        named.process(Count()).uid("count")
        .sink_to(KafkaSink(
            settings.bootstrap, settings.output, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
            transactional_id_prefix=settings.output, value_serializer=encode,
        )).uid("out")
    )


def build(env: StreamEnvironment) -> None:
    """``streamflow run workers_job:build``: settings from the environment."""
    settings = JobSettings.from_environment()
    faults = arm_crash(env, settings)
    stalled = None
    if faults is not None and settings.stall_lookup and env.workers is not None and settings.checkpoint_root is not None:
        stalled = StalledService(faults, worker_directory(settings.checkpoint_root, env.workers.index))
    declare(env, settings, stalled)


def arm_crash(env: StreamEnvironment, settings: JobSettings) -> FaultInjector | None:
    """Arm ``STREAMFLOW_CRASH`` in the chosen worker's first process only (see the module
    docstring); every other process runs unarmed. Returns that process's injector (None
    in every other process)."""
    faults = FaultInjector()
    workers = env.workers
    if (
        settings.crash_worker is not None and settings.checkpoint_root is not None
        and workers is not None and workers.index == settings.crash_worker
    ):
        marker = settings.checkpoint_root / f"crash-armed-{workers.index}"
        if not marker.exists():
            settings.checkpoint_root.mkdir(parents=True, exist_ok=True)
            marker.touch()
            faults = FaultInjector.from_environment()
            env.set_fault_injector(faults)
            return faults
    env.set_fault_injector(faults)
    return None
