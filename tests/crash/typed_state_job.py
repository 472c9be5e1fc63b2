"""A job with tuples (and more) in every kind of state, run as a process the test kills.

    python tests/crash/typed_state_job.py --out DIR --checkpoints DIR

Events ``(key, i)`` with tuple, int and str keys flow from a paced source, whose split
state is a tuple, into a KeyedBroadcastProcessFunction that keeps them in value, list,
map, reducing, aggregating (a NamedTuple accumulator), TTL and JSON-serialized keyed
state, in split operator list state, with broadcast rules (tuple keys and values) and
one event-time timer per key. Per event it emits the repr of what the state held before
(a tuple prints as ``(..)``, a list as ``[..]``); at the end each key's timer emits all
of its state. The output goes to an exactly-once file sink, so a run killed and resumed
must commit exactly the lines of a run never killed. Checkpoints every 0.1 s; a process
started on the same directories resumes from the latest complete checkpoint. Prints one
JSON line at the end: restored_from, checkpoints_completed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import decimal
import json
import operator
import sys
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from streamflow import KeyedBroadcastProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.connectors import CollectionSource, ExactlyOnceFileSink
from streamflow.state import (
    AggregatingStateDescriptor,
    JsonSerializer,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)

KEYS: list[Any] = [("user", 1), ("user", 2), 7, "alice", (3, ("nested", "t"))]
EVENTS = 400
PACE = 0.006  # seconds per batch of 2 events: a run lasts ~1.2 s plus start-up
TIMER_AT = 1e12  # fired by the final watermark


class Acc(NamedTuple):
    total: int
    count: int


@dataclasses.dataclass(frozen=True)
class Seen:
    index: int
    when: datetime.date


LAST = ValueStateDescriptor[Any]("last")
ITEMS = ListStateDescriptor[Any]("items")
INDEX = MapStateDescriptor[Any, Any]("index")
PAIR_SUM = ReducingStateDescriptor[Any]("pair_sum", lambda a, b: (a[0] + b[0], max(a[1], b[1])))
RECENT = ValueStateDescriptor[Any]("recent", ttl=StateTtlConfig(ttl=86400.0))
DOC = ValueStateDescriptor[Any]("doc", serializer=JsonSerializer())
RULES = MapStateDescriptor[Any, Any]("rules")
BUFFER = ListStateDescriptor[Any]("buffer")
RULES_IN = [(("rule", k), (k * 10, frozenset({k}))) for k in range(3)]


class Mean:
    def create_accumulator(self) -> Acc:
        return Acc(0, 0)

    def add(self, value: int, acc: Acc) -> Acc:
        return Acc(acc.total + value, acc.count + 1)

    def get_result(self, acc: Acc) -> Acc:
        return acc


MEAN = AggregatingStateDescriptor[int, Acc, Acc]("mean", aggregate_fn=Mean())


class Typed(KeyedBroadcastProcessFunction):
    def open(self, ctx: Any) -> None:
        self.states = [ctx.get_state(d) for d in (LAST, ITEMS, INDEX, PAIR_SUM, MEAN, RECENT, DOC)]

    def initialize_state(self, ctx: Any) -> None:
        self.buffer_state = ctx.operator_state_store.get_list_state(BUFFER)
        self.buffer = list(self.buffer_state.get())

    def snapshot_state(self, ctx: Any) -> None:
        self.buffer_state.update(self.buffer)

    def dump(self) -> str:
        last, items, index, pair_sum, mean, recent, doc = self.states
        return repr((last.value(), items.get()[-2:], sorted(index.items()), pair_sum.get(), mean.get(),
                     recent.value(), doc.value()))  # fmt: skip

    def process_element(self, event: Any, ctx: Any, out: Any) -> None:
        key, i = event
        out.collect(f"{i} {key!r} before={self.dump()} buffer={self.buffer[-1:]!r}")
        last, items, index, pair_sum, mean, recent, doc = self.states
        last.update((i, ("v", key), decimal.Decimal(i) / 8, uuid.UUID(int=i)))
        items.add((key, i))
        index.put((i % 3, "slot"), (Seen(i, datetime.date(2024, 1, 1 + i % 28)), frozenset({i % 5})))
        pair_sum.add((i, i % 7))
        mean.add(i)
        recent.update({"tuple": (i, key)})
        doc.update({"i": i, "parts": [i, "x", None]})
        self.buffer = (self.buffer + [(key, i)])[-3:]
        ctx.timer_service.register_event_time_timer(TIMER_AT)

    def process_broadcast_element(self, rule: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(RULES).put(rule[0], rule[1])

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        rules = sorted(ctx.get_broadcast_state(RULES).items(), key=repr)
        out.collect(f"final {ctx.get_current_key()!r} {self.dump()} rules={rules!r}")


class Paced:
    """``(KEYS[i % 5], i)`` for i < EVENTS, two per poll, slowly. Split: ``("events", next)``."""

    def create_reader(self, ctx: SourceContext) -> PacedReader:
        start = 0
        if ctx.restored_splits:
            (split,) = ctx.restored_splits
            if type(split) is not tuple:
                raise TypeError(f"the source split came back as {type(split).__name__}: {split!r}")
            start = split[1]
        return PacedReader(start)


class PacedReader:
    def __init__(self, start: int) -> None:
        self.next = start

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        if self.next >= EVENTS:
            return None
        await asyncio.sleep(PACE)
        first = self.next
        self.next = min(first + 2, EVENTS)
        return SourceBatch([(KEYS[i % len(KEYS)], i) for i in range(first, self.next)],
                           list(range(first, self.next)), "events")  # fmt: skip

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [("events", self.next)]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


async def run(out: Path, checkpoints: Path) -> dict[str, Any]:
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.1, directory=checkpoints)
    env.set_restart_strategy(RestartStrategy.none())
    rules = (
        env.from_source(CollectionSource(RULES_IN, batch_size=1), name="rules").uid("rules").set_parallelism(1)
        .broadcast(RULES)
    )  # fmt: skip
    (
        env.from_source(Paced(), name="events").uid("events").set_parallelism(1)
        .key_by(lambda event: event[0])
        .connect(rules)
        .process(Typed()).uid("typed")
        .sink_to(ExactlyOnceFileSink(out)).uid("out")
    )  # fmt: skip
    result = await env.execute("typed-state")
    return {"restored_from": result.restored_from, "checkpoints_completed": result.checkpoints_completed}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True)
    arguments = parser.parse_args()
    print(json.dumps(asyncio.run(run(arguments.out, arguments.checkpoints))))
    sys.stdout.flush()
