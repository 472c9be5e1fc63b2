"""Jobs for the rescaling tests, one per kind of state, and a job process for all of them.

Every job reads ``ACTIONS`` (600 user actions) from a replayable collection source,
paced so that checkpoints complete while the input flows, and writes strings to an
exactly-once file sink. The stateful operator under test:

- ``keyed``: a running count per user in keyed ValueState (``"<user> <n>"``);
- ``list``: each subtask keeps the ids it processed in operator ListState (split mode);
  the ids pass through;
- ``union``: the same with union ListState; after a restore every subtask receives all
  ids and subtask 0 alone keeps them, so each id stays in exactly one subtask's state;
- ``broadcast``: rules (a threshold per channel) are broadcast from a parallelism-1 source
  to a keyed stream; a user whose number of actions in a channel reaches the channel's
  threshold is reported once (``"<user> <channel> <threshold>"``);
- ``all`` (the job process): list -> union -> broadcast in one pipeline.

The functions record what each subtask restored in class-level dicts, for in-process
tests to check the redistribution.

Run as a process: ``python rescale_jobs.py KIND PARALLELISM CHECKPOINT_DIR OUT_DIR``; a
crash is armed with ``STREAMFLOW_CRASH=after_completion:<n>`` (``os._exit(137)`` there).
The last stdout line is a JSON summary.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streamflow import (
    KeyedBroadcastProcessFunction,
    KeyedProcessFunction,
    ProcessFunction,
    RestartStrategy,
    StreamEnvironment,
)
from streamflow.checkpoint.serde import decode
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.connectors import CollectionSource, ExactlyOnceFileSink
from streamflow.state import (
    HashMapStateBackend,
    ListStateDescriptor,
    MapStateDescriptor,
    StateBackend,
    ValueStateDescriptor,
)

USERS = [f"u{i}" for i in range(11)]
CHANNELS = ["web", "app", "mail", "sms"]
ACTIONS = [(i, USERS[i % 11], CHANNELS[(i * i + i // 7) % 4]) for i in range(600)]
THRESHOLDS = {"web": 12, "app": 14, "mail": 16}  # no rule for sms
RULES = MapStateDescriptor[str, int]("rules")
SEEN = ListStateDescriptor[int]("seen")
KINDS = ("keyed", "list", "union", "broadcast")


# -- what a correct run produces ----------------------------------------------------------


def expected_counts() -> Counter[str]:
    per_user = Counter(user for _, user, _ in ACTIONS)
    return Counter(f"{user} {n}" for user, total in per_user.items() for n in range(1, total + 1))


def expected_reports() -> Counter[str]:
    per_pair = Counter((user, channel) for _, user, channel in ACTIONS)
    return Counter(
        f"{user} {channel} {THRESHOLDS[channel]}"
        for (user, channel), n in per_pair.items()
        if channel in THRESHOLDS and n >= THRESHOLDS[channel]
    )


def expected_output(kind: str) -> Counter[str]:
    if kind == "keyed":
        return expected_counts()
    if kind in ("list", "union"):
        return Counter(str(i) for i, _, _ in ACTIONS)
    return expected_reports()


# -- the functions --------------------------------------------------------------------------


async def paced(action: Any) -> Any:
    """About 1 ms per 4 actions: a run takes some 20 checkpoints, a stop comes after 2."""
    if action[0] % 4 == 0:
        await asyncio.sleep(0.001)
    return action


class RunningCount(KeyedProcessFunction):
    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, action: Any, ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        out.collect(f"{ctx.get_current_key()} {n}")


class SeenList(ProcessFunction):
    """Keeps the ids it processed in split ListState; passes the actions on."""

    restored: dict[int, list[int]] = {}  # subtask -> the ids it restored

    def open(self, ctx: Any) -> None:
        self.subtask = ctx.subtask_index

    def initialize_state(self, ctx: Any) -> None:
        self.state = ctx.operator_state_store.get_list_state(SEEN)
        self.seen = self.state.get()
        if ctx.is_restored:
            type(self).restored[self.subtask] = list(self.seen)

    def snapshot_state(self, ctx: Any) -> None:
        self.state.update(self.seen)

    def process_element(self, action: Any, ctx: Any, out: Any) -> None:
        self.seen.append(action[0])
        out.collect(action)


class SeenUnion(SeenList):
    """The same with union ListState: every subtask restores every id; subtask 0 keeps
    them, the others start empty (so each id stays in exactly one subtask's state)."""

    restored: dict[int, list[int]] = {}

    def initialize_state(self, ctx: Any) -> None:
        self.state = ctx.operator_state_store.get_union_list_state(SEEN)
        everything = self.state.get()
        if ctx.is_restored:
            type(self).restored[self.subtask] = list(everything)
        self.seen = everything if self.subtask == 0 else []


class PathLength(KeyedBroadcastProcessFunction):
    """Reports a user once per channel when their actions there reach the channel's rule;
    whichever comes last (the action or the rule) triggers the report."""

    restored: dict[int, list[tuple[str, int]]] = {}  # subtask -> the rules it restored

    def open(self, ctx: Any) -> None:
        self.subtask = ctx.subtask_index
        self.path = ctx.get_state(MapStateDescriptor[str, int]("path"))
        self.reported = ctx.get_state(MapStateDescriptor[str, bool]("reported"))

    def initialize_state(self, ctx: Any) -> None:
        if ctx.is_restored:
            PathLength.restored[self.subtask] = sorted(ctx.operator_state_store.get_broadcast_state(RULES).items())

    def snapshot_state(self, ctx: Any) -> None:
        return None

    def _report(self, user: str, channel: str, threshold: int, out: Any) -> None:
        if (self.path.get(channel) or 0) >= threshold and not self.reported.contains(channel):
            self.reported.put(channel, True)
            out.collect(f"{user} {channel} {threshold}")

    def process_element(self, action: Any, ctx: Any, out: Any) -> None:
        _, user, channel = action
        self.path.put(channel, (self.path.get(channel) or 0) + 1)
        threshold = ctx.get_broadcast_state(RULES).get(channel)
        if threshold is not None:
            self._report(user, channel, threshold, out)

    def process_broadcast_element(self, rule: Any, ctx: Any, out: Any) -> None:
        channel, threshold = rule
        ctx.get_broadcast_state(RULES).put(channel, threshold)
        ctx.apply_to_keyed_state(
            MapStateDescriptor[str, int]("path"), lambda user, _: self._report(user, channel, threshold, out)
        )


def reset_records() -> None:
    SeenList.restored = {}
    SeenUnion.restored = {}
    PathLength.restored = {}


# -- the jobs -------------------------------------------------------------------------------


def job(
    kind: str, checkpoints: Path, out: Path, parallelism: int, max_parallelism: int = 64,
    state_backend: StateBackend | None = None,
) -> StreamEnvironment:
    """The job of ``kind`` at ``parallelism`` (on the heap unless ``state_backend``
    says otherwise); no restarts (a failure ends the job)."""
    env = StreamEnvironment(parallelism=parallelism, max_parallelism=max_parallelism)
    env.set_state_backend(state_backend or HashMapStateBackend())
    env.enable_checkpointing(0.01, directory=checkpoints)
    env.set_restart_strategy(RestartStrategy.none())
    env.set_source_batch_size(4)
    env.set_channel_capacity(2)
    actions = env.from_source(CollectionSource(ACTIONS, batch_size=4), name="actions").uid("actions")
    if kind == "union":
        # a source of another parallelism than the operator: rebalanced in between
        actions = actions.set_parallelism(1).map(paced).uid("paced").set_parallelism(1).rebalance()
    else:
        actions = actions.map(paced).uid("paced")
    sink = ExactlyOnceFileSink(out)
    if kind == "keyed":
        actions.key_by(lambda a: a[1]).process(RunningCount()).uid("count").sink_to(sink).uid("out")
    elif kind == "list":
        actions.process(SeenList()).uid("list").map(lambda a: str(a[0])).sink_to(sink).uid("out")
    elif kind == "union":
        actions.process(SeenUnion()).uid("union").map(lambda a: str(a[0])).sink_to(sink).uid("out")
    elif kind in ("broadcast", "all"):
        if kind == "all":
            actions = actions.process(SeenList()).uid("list").process(SeenUnion()).uid("union")
        rules = (
            env.from_source(CollectionSource(sorted(THRESHOLDS.items()), batch_size=1), name="rules").uid("rules")
            .set_parallelism(1)
            .broadcast(RULES)
        )
        actions.key_by(lambda a: a[1]).connect(rules).process(PathLength()).uid("path").sink_to(sink).uid("out")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return env


# -- reading checkpoints back ---------------------------------------------------------------


async def latest_checkpoint(directory: Path) -> int | None:
    latest = await CheckpointStorage(directory, retained=1).latest_complete()
    return None if latest is None else latest.checkpoint_id


async def operator_state(directory: Path, uid: str) -> list[dict[str, Any]]:
    """The decoded snapshot of every subtask of ``uid`` in the latest complete checkpoint."""
    storage = CheckpointStorage(directory, retained=1)
    latest = await storage.latest_complete()
    assert latest is not None, f"no complete checkpoint in {directory}"
    meta = latest.metadata.operators[uid]
    snapshots: list[dict[str, Any]] = [{} for _ in range(meta.parallelism)]
    for subtask, handle in meta.subtasks.items():
        snapshots[subtask] = decode(await storage.read_state(latest.checkpoint_id, handle))
    return snapshots


def list_items(snapshots: list[dict[str, Any]], name: str = "seen") -> list[list[Any]]:
    """Per subtask, the items of operator list state ``name`` (``[]`` where absent)."""
    return [list(s.get("operator", {}).get("states", {}).get(name, {}).get("items", [])) for s in snapshots]


def highest_checkpoint_dir(directory: Path) -> int:
    """The highest ``chk-<n>`` on disk, complete or not: the next run's ids follow it."""
    return max((int(p.name[4:]) for p in directory.glob("chk-*")), default=0)


async def _main(kind: str, parallelism: int, checkpoints: Path, out: Path) -> None:
    result = await job(kind, checkpoints, out, parallelism).execute("rescale")
    summary = {"restored_from": result.restored_from, "attempts": result.attempts}
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])))
