"""A job with every kind of state, written so that the code before exact state types runs it.

``make_savepoint.py`` ran it with that code (commit 66b5d21, orjson snapshots, format 1)
and stopped it with the savepoint in ``savepoint/``; ``test_legacy_state_restore.py``
resumes it with today's code. Keep this module to the API both versions share.

Keys include ``True``, ``2.0`` and ``("t", 1.0)``: their key groups changed when key
groups came to agree with key equality, so the restore must recompute them.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Any

from streamflow import KeyedBroadcastProcessFunction, StreamEnvironment
from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.connectors import CollectionSource
from streamflow.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)

KEYS: list[Any] = ["alice", 7, ("user", 1), True, 2.0, ("t", 1.0)]
EVENTS = [(KEYS[i % len(KEYS)], i) for i in range(24)]
RULES_IN = [(("rule", k), (k * 10, f"r{k}")) for k in range(3)]

LAST = ValueStateDescriptor[Any]("last")
ITEMS = ListStateDescriptor[Any]("items")
INDEX = MapStateDescriptor[Any, Any]("index")
TOTAL = ReducingStateDescriptor[Any]("total", operator.add)
RECENT = ValueStateDescriptor[Any]("recent", ttl=StateTtlConfig(ttl=10 * 365 * 86400.0))
RULES = MapStateDescriptor[Any, Any]("rules")
SEEN = ListStateDescriptor[Any]("seen")
TIMER_AT = 1e12  # fired by the final watermark of a bounded run


class Mean:
    def create_accumulator(self) -> Any:
        return (0, 0)

    def add(self, value: int, accumulator: Any) -> Any:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: Any) -> Any:
        return accumulator


MEAN = AggregatingStateDescriptor[int, Any, Any]("mean", aggregate_fn=Mean())


class Typed(KeyedBroadcastProcessFunction):
    """Puts each event into every kind of state; a timer per key dumps it all."""

    def open(self, ctx: Any) -> None:
        self.last = ctx.get_state(LAST)
        self.items = ctx.get_state(ITEMS)
        self.index = ctx.get_state(INDEX)
        self.total = ctx.get_state(TOTAL)
        self.mean = ctx.get_state(MEAN)
        self.recent = ctx.get_state(RECENT)

    def initialize_state(self, ctx: Any) -> None:
        self.seen_state = ctx.operator_state_store.get_list_state(SEEN)
        self.seen = list(self.seen_state.get())

    def snapshot_state(self, ctx: Any) -> None:
        self.seen_state.update(self.seen)

    def process_element(self, event: Any, ctx: Any, out: Any) -> None:
        key, i = event
        self.last.update((i, ("v", key)))
        self.items.add((key, i))
        self.index.put((i % 2, "slot"), (i, key))
        self.total.add(i)
        self.mean.add(i)
        self.recent.update((i, "recent"))
        self.seen = (self.seen + [(key, i)])[-3:]
        ctx.timer_service.register_event_time_timer(TIMER_AT)
        out.collect(("event", i))

    def process_broadcast_element(self, rule: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(RULES).put(rule[0], rule[1])

    def on_timer(self, timestamp: float, ctx: Any, out: Any) -> None:
        out.collect(("state", repr(ctx.get_current_key()), dump(self, ctx), repr(self.seen)))


def dump(fn: Typed, ctx: Any) -> str:
    """repr of everything the current key's state holds: types show (a tuple is (..))."""
    rules = sorted(ctx.get_broadcast_state(RULES).items())
    return repr(
        (fn.last.value(), fn.items.get(), sorted(fn.index.items()), fn.total.get(), fn.mean.get(), fn.recent.value(),
         rules)
    )  # fmt: skip


class Items:
    """``items`` in order, a few per poll; with ``endless`` then empty polls forever. Split
    state: ``{"next": index}``."""

    def __init__(self, items: list[Any], endless: bool) -> None:
        self.items = items
        self.endless = endless

    def create_reader(self, ctx: SourceContext) -> ItemsReader:
        start = ctx.restored_splits[0]["next"] if ctx.restored_splits else 0
        return ItemsReader(self, start)


class ItemsReader:
    def __init__(self, source: Items, start: int) -> None:
        self.source = source
        self.next = start

    async def open(self) -> None:
        return None

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        items = self.source.items
        if self.next >= len(items):
            if not self.source.endless:
                return None
            await asyncio.sleep(min(max_wait, 0.01))
            return SourceBatch([], [], "items")
        first = self.next
        records = items[first : first + 4]
        self.next += len(records)
        return SourceBatch(records, list(range(first, self.next)), "items")

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return [{"next": self.next}]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


def build(env: StreamEnvironment, sink: Any, *, endless: bool) -> None:
    rules = (
        env.from_source(CollectionSource(RULES_IN, batch_size=1), name="rules").uid("rules").set_parallelism(1)
        .broadcast(RULES)
    )  # fmt: skip
    (
        env.from_source(Items(EVENTS, endless), name="events").uid("events").set_parallelism(1)
        .key_by(lambda event: event[0])
        .connect(rules)
        .process(Typed()).uid("typed")
        .sink_to(sink).uid("out")
    )  # fmt: skip
