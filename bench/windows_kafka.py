"""Window benchmark, Kafka variant: a tumbling one-minute count and sum per user from a
Kafka topic to a Kafka topic, streamflow against Quix Streams' tumbling window, exactly
once, on one real broker, in one run.

Input, written once per run: ``--records`` JSON records ``{"user", "amount", "ts"}`` over
10,000 users (kafka_work.key_at, the Kafka key), 1,000 per second of event time from a
minute boundary two hours before the run (so 1 M records span ~17 minutes), the Kafka
record timestamp equal to ``ts`` (ms), in order within each of 8 partitions. Contenders (each a child process):

  streamflow  bench/windows_kafka_job.py: Kafka source with per-partition watermarks
              (record timestamps, 0.5 s of allowed disorder) -> parse -> key_by(user) ->
              TumblingEventTimeWindows.of(60) -> aggregate (count, sum) -> Kafka sink,
              exactly once, parallelism 1, checkpoint every ``--interval`` s
  quix        bench/kafka_peers.py quix-window: ``tumbling_window(60 s, grace 500 ms)
              .agg(count=Count(), total=Sum("amount")).final(closing_strategy="partition")``
              over the message timestamps, exactly once, commit every ``--interval`` s

Both read unbounded and emit a window once event time passes its end plus 0.5 s, so both
emit the same windows: every (user, minute) but those of the last, still open minute.
Time runs from the first call of the parse step (past start-up, group join, assignment;
kafka_work.stamped) to the moment the output topic's last stable offsets reach the number
of windows (the transaction markers count too, a few in ~170 k, for both alike). Then the
output is read back read_committed and must hold every window exactly once with the
count and sum computed here from the input. Contenders alternate over ``--rounds``;
medians are compared: streamflow / Quix (the goal of issue 13: >= 2).

Broker: $KAFKA_BOOTSTRAP_SERVERS (or --bootstrap) if set, else a broker of its own.
Quix Streams comes from bench/.venv-peers (bench/setup.sh).

Usage: python3 bench/windows_kafka.py [--records 1000000] [--rounds 3] [--only streamflow,quix]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson  # noqa: E402
from aiokafka.partitioner import murmur2  # noqa: E402

from kafka_child import ChildFailed  # noqa: E402
from kafka_pipeline import delete_topics, fill_topic, find_peer_python, read_committed_values  # noqa: E402
from kafka_work import key_at  # noqa: E402
from streamflow.testing.kafka import unique_topic  # noqa: E402
from workers import (  # noqa: E402
    PARTITIONS, Contender, alternate, chosen_contenders, peer_parser, run_checked, run_directories, run_on_broker,
)

BENCH = Path(__file__).resolve().parent
MINUTE_MS = 60_000
GRACE_MS = 500

Totals = dict[tuple[str, int], tuple[int, float]]  # (user, window start ms) -> (count, sum)


def first_event_ms() -> int:
    """The event time of record 0: a minute boundary two hours ago. Not a fixed date: the
    broker deletes a segment whose newest timestamp is older than its retention (7 days
    by default) while the contenders read it."""
    now_ms = time.time_ns() // 1_000_000
    return now_ms - now_ms % MINUTE_MS - 120 * MINUTE_MS


def event_at(i: int, first_ms: int) -> tuple[bytes, int, float]:
    """Record ``i``: its key (the user), event time (ms) and amount."""
    return key_at(i), first_ms + i, ((i * 31337) % 10_000) / 100


def record_at(i: int, first_ms: int) -> tuple[bytes, bytes, int]:
    """Record ``i`` as written: key, JSON value, timestamp (ms)."""
    key, ts, amount = event_at(i, first_ms)
    return key, orjson.dumps({"user": key.decode(), "amount": amount, "ts": ts}), ts


def closed_windows(count: int, first_ms: int) -> Totals:
    """The windows of the first ``count`` records both contenders must emit, with their
    count and sum: those ending at least the grace before the newest event time of every
    partition."""
    windows: dict[tuple[str, int], list[Any]] = defaultdict(lambda: [0, 0.0])
    newest = [0] * PARTITIONS
    for i in range(count):
        key, ts, amount = event_at(i, first_ms)
        window = windows[(key.decode(), ts - ts % MINUTE_MS)]
        window[0] += 1
        window[1] += amount
        newest[(murmur2(key) & 0x7FFFFFFF) % PARTITIONS] = ts
    closed_before = min(newest) - GRACE_MS
    return {w: (c, s) for w, (c, s) in windows.items() if w[1] + MINUTE_MS <= closed_before}


async def read_windows(bootstrap: str, topic: str) -> list[tuple[str, int, int, float]]:
    """Every window result in ``topic`` (read_committed): (user, start ms, count, sum)."""
    found = []
    for raw in await read_committed_values(bootstrap, topic, PARTITIONS):
        value = orjson.loads(raw)
        found.append((value["user"], value["start"], value["count"], value["total"]))
    return found


def check(name: str, found: list[tuple[str, int, int, float]], want: Totals) -> None:
    """Every window once, with the input's count and sum."""
    seen = {(user, start): (count, total) for user, start, count, total in found}
    if len(seen) != len(found):
        raise ChildFailed(f"{name}: {len(found) - len(seen)} windows emitted more than once")
    if seen.keys() != want.keys():
        raise ChildFailed(f"{name}: {len(seen.keys() - want.keys())} windows too many, "
                          f"{len(want.keys() - seen.keys())} missing of {len(want)}")
    wrong = [w for w, (count, total) in seen.items()
             if count != want[w][0] or not math.isclose(total, want[w][1], rel_tol=1e-9, abs_tol=1e-9)]
    if wrong:
        raise ChildFailed(f"{name}: {len(wrong)} windows with a wrong count or sum, e.g. {wrong[0]}: "
                          f"{seen[wrong[0]]} instead of {want[wrong[0]]}")


def streamflow_contender(bootstrap: str, interval: float, root: Path) -> Contender:
    def argv(source: str, output: str, group: str, index: int) -> list[str]:
        return [
            sys.executable, "-m", "streamflow", "run", "windows_kafka_job:build", "--job-name", group,
            "--parallelism", "1", "--checkpoint-interval", str(interval), "--checkpoint-dir", str(root / group),
            "--metrics-interval", "0", "--no-control", "--log-level", "WARNING",
        ]

    def environment(source: str, output: str) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))  # windows_kafka_job
        return {"WINDOWS_BOOTSTRAP": bootstrap, "WINDOWS_INPUT": source, "WINDOWS_OUTPUT": output, "PYTHONPATH": path}

    return Contender("streamflow", f"streamflow, checkpoint {interval:g} s", 1, argv, environment)


def quix_contender(bootstrap: str, peer_python: str, interval: float) -> Contender:
    def argv(source: str, output: str, group: str, index: int) -> list[str]:
        return [peer_python, str(BENCH / "kafka_peers.py"), "quix-window", "--bootstrap", bootstrap,
                "--input", source, "--output", output, "--group", group, "--guarantee", "exactly-once",
                "--commit-interval", str(interval)]

    return Contender("quix", f"Quix Streams, commit {interval:g} s", 1, argv)


async def run_once(bootstrap: str, contender: Contender, source: str, want: Totals, logs: Path, tag: str) -> float:
    """Seconds from the first parse to the complete output, checked record by record."""
    return await run_checked(bootstrap, contender, source, len(want), logs, tag,
                             lambda output: read_windows(bootstrap, output),
                             lambda found: check(contender.name, found, want))


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    logs, root = run_directories("windows-kafka", bootstrap)
    peer_python, problem = find_peer_python(args.peer_python)
    every = [streamflow_contender(bootstrap, args.interval, root)]
    if peer_python is not None:
        every.append(quix_contender(bootstrap, peer_python, args.interval))
    else:
        print(f"skipped Quix Streams: {problem}")
    chosen = chosen_contenders(every, args.only)
    source = unique_topic("windows-in")
    began = time.monotonic()
    first_ms = first_event_ms()
    await fill_topic(bootstrap, source, args.records, PARTITIONS, lambda i: record_at(i, first_ms))
    want = closed_windows(args.records, first_ms)
    print(f"input: {args.records:,} records in {source} ({PARTITIONS} partitions, {time.monotonic() - began:.0f} s "
          f"to write); {len(want):,} windows to emit", flush=True)
    try:
        rates = await alternate(chosen, args.rounds, args.records,
                                lambda contender, tag: run_once(bootstrap, contender, source, want, logs, tag))
    finally:
        await delete_topics(bootstrap, [source])
    if "streamflow" in rates and "quix" in rates:
        ratio = rates["streamflow"] / rates["quix"]
        print(f"\nstreamflow / quix = {ratio:.2f} (goal >= 2: {'met' if ratio >= 2 else 'NOT met'})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    run_on_broker(peer_parser(__doc__, rounds=3, contenders="streamflow,quix"), run)


if __name__ == "__main__":
    main()
