"""Rules broadcast to a keyed stream: report users whose path in a channel reaches its rule.

The broadcast state pattern on bundled data. ``data/channel_rules.jsonl`` holds one rule
per channel (``{"channel": "web", "threshold": 40, "name": "web regular"}``), a
low-volume stream that every subtask must see in full; ``data/user_actions.jsonl``
holds 2,400 user actions (``{"user": "u07", "channel": "web", ...}``), keyed by user.
A user whose path length in a channel (the number of their actions there) reaches the
channel's threshold is reported once.

- The rules are broadcast (``.broadcast(RULES)``): every subtask of the keyed operator
  gets every rule and keeps it in broadcast state, read-write in
  ``process_broadcast_element``, read-only in ``process_element``.
- Path lengths live in keyed MapState per user.
- Nothing orders a rule against the actions: whichever comes last triggers the report.
  An action checks the rule of its channel; a rule visits every user's path lengths
  with ``ctx.apply_to_keyed_state``.
- The run stops the job with a savepoint midway at parallelism 1 and resumes it from the
  savepoint at parallelism 3: keyed state moves by key group, the broadcast state is
  copied to the new subtasks (the rules are not read again). The reports go to an
  exactly-once file sink, and the script checks them against a plain count of the input.

Run it: ``python examples/user_path_rules.py [--out DIR]`` (prints ``CHECK OK`` at the
end). The pipeline alone: ``streamflow run examples.user_path_rules:build -p 2
--checkpoint-dir /tmp/rules-chk --checkpoint-interval 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streamflow import KeyedBroadcastProcessFunction, StreamEnvironment
from streamflow.connectors import ExactlyOnceFileSink, FileSource, read_committed_lines
from streamflow.state import MapStateDescriptor

DATA = Path(__file__).parent / "data"
ACTIONS = DATA / "user_actions.jsonl"
CHANNEL_RULES = DATA / "channel_rules.jsonl"

RULES = MapStateDescriptor[str, dict[str, Any]]("rules")  # broadcast: channel -> rule
PATH = MapStateDescriptor[str, int]("path")  # keyed by user: channel -> actions so far
REPORTED = MapStateDescriptor[str, int]("reported")  # keyed by user: channel -> threshold reported


class PathLengthAlert(KeyedBroadcastProcessFunction):
    """Reports ``{"user", "channel", "threshold", "rule"}`` once per user and channel."""

    def open(self, ctx: Any) -> None:
        self.path = ctx.get_state(PATH)
        self.reported = ctx.get_state(REPORTED)

    def process_element(self, action: dict[str, Any], ctx: Any, out: Any) -> None:
        channel = action["channel"]
        self.path.put(channel, (self.path.get(channel) or 0) + 1)
        rule = ctx.get_broadcast_state(RULES).get(channel)  # read-only on this side
        if rule is not None:
            self._check(action["user"], rule, out)

    def process_broadcast_element(self, rule: dict[str, Any], ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(RULES).put(rule["channel"], rule)
        # users who passed the threshold before the rule arrived are reported now
        ctx.apply_to_keyed_state(PATH, lambda user, _path: self._check(user, rule, out))

    def _check(self, user: str, rule: dict[str, Any], out: Any) -> None:
        channel = rule["channel"]
        if (self.path.get(channel) or 0) >= rule["threshold"] and not self.reported.contains(channel):
            self.reported.put(channel, rule["threshold"])
            out.collect({"user": user, "channel": channel, "threshold": rule["threshold"], "rule": rule["name"]})


class Pace:
    """Waits ``seconds`` every ``every`` actions, so the demo can stop the job midway."""

    def __init__(self, every: int, seconds: float) -> None:
        self.every = every
        self.seconds = seconds
        self.count = 0

    async def __call__(self, action: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        if self.count % self.every == 0:
            await asyncio.sleep(self.seconds)
        return action


def build(
    env: StreamEnvironment,
    *,
    out: str | Path = "path-alerts",
    actions: Path = ACTIONS,
    rules: Path = CHANNEL_RULES,
    paced: bool = False,
) -> None:
    """Declare the pipeline on ``env`` (also the ``streamflow run`` entry point). Every
    stateful operator has a uid: that is what its state is matched by on restore."""
    rule_stream = (
        env.from_source(FileSource(rules), name="rules").uid("rules").set_parallelism(1)
        .map(orjson.loads).name("parse-rules").uid("parse-rules").set_parallelism(1)
        .broadcast(RULES)
    )
    action_stream = env.from_source(FileSource(actions), name="actions").uid("actions").map(orjson.loads)
    action_stream = action_stream.name("parse-actions").uid("parse-actions")
    if paced:
        action_stream = action_stream.map(Pace(every=40, seconds=0.01)).name("pace").uid("pace")
    (
        action_stream.key_by(lambda action: action["user"])
        .connect(rule_stream)
        .process(PathLengthAlert()).name("path-length").uid("path-length")
        .sink_to(ExactlyOnceFileSink(out), name="alerts").uid("alerts")
    )


def expected_alerts(actions: Path = ACTIONS, rules: Path = CHANNEL_RULES) -> Counter[tuple[str, str, int, str]]:
    """The alerts by a plain count of the input, no streaming involved."""
    by_channel = {r["channel"]: r for r in map(orjson.loads, rules.read_text().splitlines())}
    paths = Counter((a["user"], a["channel"]) for a in map(orjson.loads, actions.read_text().splitlines()))
    return Counter(
        (user, channel, by_channel[channel]["threshold"], by_channel[channel]["name"])
        for (user, channel), length in paths.items()
        if channel in by_channel and length >= by_channel[channel]["threshold"]
    )


def read_alerts(directory: Path) -> Counter[tuple[str, str, int, str]]:
    return Counter(
        (a["user"], a["channel"], a["threshold"], a["rule"]) for a in map(orjson.loads, read_committed_lines(directory))
    )


async def run(out: Path) -> bool:
    alerts_dir, savepoints = out / "alerts", out / "savepoints"
    total = len(ACTIONS.read_text().splitlines())

    print("1/3 running the job at parallelism 1 (checkpoints every 0.2 s); stopping it with a savepoint midway")
    env = StreamEnvironment(parallelism=1)
    env.enable_checkpointing(0.2, directory=out / "checkpoints")
    env.set_savepoint_dir(savepoints)
    build(env, out=alerts_dir, paced=True)
    client = env.execute_async("user-path-rules")
    while client.metrics()["operators"].get("path-length[0]", {}).get("records_in", 0) < total // 3:
        if client.done:
            raise RuntimeError("the job ended before the demo could stop it; nothing to resume")
        await asyncio.sleep(0.02)
    savepoint = await client.stop_with_savepoint()
    await client.wait()
    so_far = sum(read_alerts(alerts_dir).values())
    print(f"    stopped with savepoint {savepoint}; {so_far} alerts committed so far")

    print("2/3 resuming from the savepoint at parallelism 3 (rules come from the restored broadcast state)")
    env = StreamEnvironment(parallelism=3)
    env.enable_checkpointing(0.2, directory=out / "checkpoints")
    build(env, out=alerts_dir)
    result = await env.execute("user-path-rules", from_savepoint=savepoint)
    rules_read = result.metrics["operators"].get("parse-rules[0]", {}).get("records_in", 0)
    print(f"    finished; restored from {result.restored_from}, rules read again: {rules_read}")

    print("3/3 checking the alerts against a plain count of the input")
    got, want = read_alerts(alerts_dir), expected_alerts()
    for user, channel, threshold, rule in sorted(got)[:5]:
        print(f"    {user} reached {threshold} actions in {channel} ({rule})")
    if got == want:
        users = len({user for user, *_ in got})
        print(f"CHECK OK: {sum(got.values())} alerts for {users} users, each exactly once, across a stop with "
              "savepoint and a rescale from 1 to 3")
        return True
    print(f"CHECK FAILED: missing {sorted(want - got)[:5]}, unexpected {sorted(got - want)[:5]}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for alerts, checkpoints and savepoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-rules-"))
    out.mkdir(parents=True, exist_ok=True)
    return 0 if asyncio.run(run(out)) else 1


if __name__ == "__main__":
    sys.exit(main())
