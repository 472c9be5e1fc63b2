"""User sessions from the bundled events: event-time session windows, late events to a side output.

What it shows:
- event time from the events themselves: a ``WatermarkStrategy`` on the source with a
  timestamp assigner that reads each event's ``ts``. A line whose timestamp cannot be
  read (the file has a broken JSON line) goes to the source's error policy: skipped and
  counted, not a crash;
- a watermark generator of your own (:class:`EveryEvent`): a watermark after every
  event, the newest time less 5 s of allowed disorder. The usual choice, periodic
  watermarks (``WatermarkStrategy.for_bounded_out_of_orderness(5)``), follows processing
  time; this one makes the demo give the same answer on every run, however fast it reads;
- session windows per user (``EventTimeSessionWindows.with_gap(60)``): a session ends
  after a minute without an event of its user. An AggregateFunction counts the events
  and sums the purchases as they come; when two sessions grow into one, their
  accumulators merge (``merge``). A ProcessWindowFunction labels each session with its
  user, start and end;
- late events: 4 users' phones were offline for their first minutes, so those events
  (``DELAYED``) reach the job after everything else, half an hour late. Their sessions
  are long over: ``side_output_late_data`` sends them to a side output, read with
  ``get_side_output``, instead of dropping them;
- exactly-once files: sessions and late events go to two ``ExactlyOnceFileSink``
  directories, published at each checkpoint;
- the check: the sessions equal the ones computed by hand from the on-time events (per
  user, events at most 60 s apart are one session), and the late events are exactly the
  delayed ones.

Run it with ``./dev.sh example user_sessions`` (no servers needed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from streamflow import ErrorPolicy, RestartStrategy, StreamEnvironment
from streamflow.api.side_outputs import OutputTag
from streamflow.connectors import CollectionSource, ExactlyOnceFileSink, read_committed_lines
from streamflow.eventtime import WatermarkGenerator, WatermarkOutput, WatermarkStrategy
from streamflow.windowing import AggregateFunction, EventTimeSessionWindows, ProcessWindowFunction

EVENTS = Path(__file__).parent / "data" / "events.jsonl"
GAP = 60.0  # seconds without an event that end a user's session
DISORDER = 5.0  # seconds an event may arrive behind the newest one
OFFLINE_USERS = ("u011", "u042", "u123", "u170")
OFFLINE_FOR = 180.0  # their events of the first 3 minutes arrive last
LATE = OutputTag("late-events")


def event_time(line: str) -> float:
    """The event's own time, from the raw line (the source assigns it before parsing)."""
    ts = orjson.loads(line)["ts"]
    return float(ts) if isinstance(ts, int) else ts


def parse(line: str) -> dict[str, Any]:
    """A JSON event with a str ``user`` and a numeric ``amount``; anything else is malformed."""
    event = orjson.loads(line)
    if not isinstance(event.get("user"), str):
        raise ValueError(f"event has no 'user' string: {line!r}")
    amount = event.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"event 'amount' is not a number: {amount!r}")
    return {"user": event["user"], "ts": event["ts"], "type": event.get("type"), "cents": round(amount * 100)}


class EveryEvent(WatermarkGenerator):
    """A punctuated generator: after each event, the newest time seen less ``DISORDER``."""

    def __init__(self) -> None:
        self.newest = float("-inf")

    def on_event(self, event: Any, timestamp: float, output: WatermarkOutput) -> None:
        if timestamp > self.newest:
            self.newest = timestamp
            output.emit_watermark(timestamp - DISORDER)


class EventsAndCents(AggregateFunction[dict[str, Any], tuple[int, int], tuple[int, int]]):
    """(events, purchase cents) of a session; sessions that grow into one merge theirs."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, event: dict[str, Any], totals: tuple[int, int]) -> tuple[int, int]:
        return (totals[0] + 1, totals[1] + (event["cents"] if event["type"] == "purchase" else 0))

    def get_result(self, totals: tuple[int, int]) -> tuple[int, int]:
        return totals

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class Session(ProcessWindowFunction):
    """A session as a JSON line: user, start, end (the last event plus the gap), totals."""

    def process(self, user: str, context: Any, totals: Any, out: Any) -> None:
        for events, cents in totals:
            out.collect(orjson.dumps({"user": user, "start": context.window.start, "end": context.window.end,
                                      "events": events, "purchase_cents": cents}).decode())


def arrival_order() -> tuple[list[str], list[str]]:
    """The lines in the order the job reads them (the offline users' first minutes last),
    and those delayed lines."""
    lines = EVENTS.read_text(encoding="utf-8").splitlines()
    start = event_time(lines[0])
    delayed = []
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event.get("user") in OFFLINE_USERS and event["ts"] < start + OFFLINE_FOR:
            delayed.append(line)
    chosen = set(delayed)
    return [line for line in lines if line not in chosen] + delayed, delayed


def build(env: StreamEnvironment, lines: list[str], out: Path) -> None:
    strategy = WatermarkStrategy.for_generator(EveryEvent).with_timestamp_assigner(event_time)
    sessions = (
        env.from_source(CollectionSource(lines), name="events", watermark_strategy=strategy).uid("events")
        .set_parallelism(1)  # one reader in arrival order: each session subtask sees one ordered input
        .with_error_policy(ErrorPolicy.skip())  # a line without a readable timestamp
        .map(parse).name("parse").uid("parse")
        .with_error_policy(ErrorPolicy.skip(on=(ValueError,)))  # an event without a user or amount
        .key_by(lambda event: event["user"])
        .window(EventTimeSessionWindows.with_gap(GAP))
        .side_output_late_data(LATE)
        .aggregate(EventsAndCents(), window_function=Session()).name("sessions").uid("sessions")
    )
    sessions.sink_to(ExactlyOnceFileSink(out / "sessions"), name="session-files").uid("session-files")
    sessions.get_side_output(LATE).map(lambda event: orjson.dumps(event).decode()).name("late-json").uid(
        "late-json"
    ).sink_to(ExactlyOnceFileSink(out / "late"), name="late-files").uid("late-files")


def expected_sessions(on_time: list[str]) -> list[dict[str, Any]]:
    """Sessions by hand: per user, events at most GAP apart belong to one session."""
    per_user: dict[str, list[dict[str, Any]]] = {}
    for line in on_time:
        try:
            event = parse(line)
        except ValueError:
            continue
        per_user.setdefault(event["user"], []).append(event)
    sessions = []
    for user, events in per_user.items():
        group: list[dict[str, Any]] = []
        for event in sorted(events, key=lambda e: e["ts"]):
            if group and event["ts"] - group[-1]["ts"] > GAP:
                sessions.append(_session(user, group))
                group = []
            group.append(event)
        sessions.append(_session(user, group))
    return sessions


def _session(user: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    cents = sum(e["cents"] for e in events if e["type"] == "purchase")
    return {"user": user, "start": float(events[0]["ts"]), "end": float(events[-1]["ts"] + GAP),
            "events": len(events), "purchase_cents": cents}


def _key(session: dict[str, Any]) -> tuple[str, float]:
    return session["user"], session["start"]


async def run(out: Path) -> bool:
    lines, delayed = arrival_order()
    print(f"1/2 {len(lines)} lines of events, sessions per user (gap {GAP:g} s); the first {OFFLINE_FOR:g} s of "
          f"{len(OFFLINE_USERS)} users' events ({len(delayed)} events) arrive last, from phones that were offline")
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(1.0, directory=out / "checkpoints")
    env.set_restart_strategy(RestartStrategy.none())
    env.set_source_batch_size(1)  # one event per batch: a watermark after every event (see EveryEvent)
    build(env, lines, out)
    result = await env.execute("user-sessions")
    skipped = sum(o["records_skipped"] for o in result.metrics["operators"].values())
    print(f"    finished: {skipped} malformed lines skipped, {result.checkpoints_completed} checkpoints")

    print("2/2 check the sessions against a hand computation from the on-time events")
    got = sorted((orjson.loads(line) for line in read_committed_lines(out / "sessions")), key=_key)
    on_time = lines[: len(lines) - len(delayed)]
    want = sorted(expected_sessions(on_time), key=_key)
    late = sorted(read_committed_lines(out / "late"))
    want_late = sorted(orjson.dumps(parse(line)).decode() for line in delayed)
    for session in got[:3]:
        print(f"    {session}")
    if got == want and late == want_late:
        users = len({s["user"] for s in got})
        print(f"CHECK OK: {len(got)} sessions of {users} users, {sum(s['events'] for s in got)} events, each "
              f"session once and equal to the hand computation; {len(late)} late events in the side output")
        return True
    print(f"CHECK FAILED: {len(got)} sessions, {len(want)} expected "
          f"({len([s for s in got if s not in want])} unexpected); {len(late)} late events, {len(want_late)} expected")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the output and checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-user-sessions-"))
    out.mkdir(parents=True, exist_ok=True)
    return 0 if asyncio.run(run(out)) else 1


if __name__ == "__main__":
    sys.exit(main())
