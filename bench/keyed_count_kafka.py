"""Keyed state from Kafka: a count per key on streamflow's RocksDB and heap backends against
Quix Streams' RocksDB-backed state, exactly once, on one real broker, in one run.

Input, written once per run: ``--records`` ~100-byte JSON records ``{"user", "amount",
"ts", "pad"}`` over ``--keys`` users (the Kafka key; record ``i`` is user ``i * 7919 mod
keys``, so every user gets the same number of records, spread over the whole input) in 8
partitions. Every contender reads it from the earliest offset, parses each record (orjson),
counts per user in state and writes ``{"user", "count", "ts"}`` to a fresh output topic,
exactly once (Kafka transactions), one process, a checkpoint / commit every ``--interval``
s. Contenders (each a child process, alternating over ``--rounds``):

  sf-rocksdb  streamflow, bench/scaleout_job.py (``key_by(user)`` in memory ->
              KeyedProcessFunction with a ValueState[int]) on ``--state-backend rocksdb``
              (incremental checkpoints of the RocksDB files)
  sf-heap     the same job on the heap backend: the reference
  quix        bench/kafka_peers.py quix-key-count: ``apply(count, stateful=True)`` per
              message key in Quix's State (RocksDB, with its changelog topic)

Time runs from the first call of the parse step (kafka_work.stamped) to the moment the
output's last stable offsets reach the input count (workers.committed_end). The output is
then read back read_committed: the ``(user, count)`` pairs must be distinct, as many as
the input's records, and each user's highest count must equal that user's records in the
input (together: every user's counts are exactly 1..n, once each).

``--profile`` runs each contender once more under cProfile (``--profile-records``) and
prints the share of its profiled own time spent in state code: for streamflow its
``streamflow/state/`` modules and rocksdict's calls, for Quix its ``quixstreams/state/``
modules and rocksdict's calls. cProfile inflates Python calls; read the shares, not the
absolute times.

Broker: $KAFKA_BOOTSTRAP_SERVERS (or --bootstrap) if set, else a broker of its own.
Quix Streams comes from bench/.venv-peers (bench/setup.sh).

Usage: python3 bench/keyed_count_kafka.py [--records 1000000] [--keys 100000] [--rounds 2]
       [--only sf-rocksdb,sf-heap,quix] [--profile] [--profile-records 300000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson  # noqa: E402

from kafka_child import ChildFailed  # noqa: E402
from kafka_pipeline import delete_topics, fill_topic, find_peer_python, read_committed_values  # noqa: E402
from streamflow.testing.kafka import unique_topic  # noqa: E402
from workers import (  # noqa: E402
    PARTITIONS, Contender, alternate, chosen_contenders, peer_parser, run_checked, run_directories, run_on_broker,
)

BENCH = Path(__file__).resolve().parent
RECORD_BYTES = 100
STATE_CODE = {"sf-rocksdb": ("streamflow/state/",), "sf-heap": ("streamflow/state/",), "quix": ("quixstreams/state/",)}
NATIVE_STATE = ("Rdict", "rocksdict", "WriteBatch")  # rocksdict's calls, by name (builtins carry no file)


def user_at(i: int, keys: int) -> bytes:
    return b"u%06d" % ((i * 7919) % keys)


def record_at(i: int, keys: int) -> tuple[bytes, bytes, None]:
    """Record ``i``: its key (the user) and ~100-byte JSON value."""
    user = user_at(i, keys)
    body = {"user": user.decode(), "amount": ((i * 31337) % 100_000) / 100, "ts": 1_700_000_000_000 + i, "pad": ""}
    body["pad"] = "x" * max(0, RECORD_BYTES - len(orjson.dumps(body)))
    return user, bytes(memoryview(orjson.dumps(body))), None


def expected_counts(records: int, keys: int) -> Counter[str]:
    return Counter(user_at(i, keys).decode() for i in range(records))


def streamflow_contender(bootstrap: str, backend: str, interval: float, root: Path, profile: Path | None) -> Contender:
    def argv(source: str, output: str, group: str, index: int) -> list[str]:
        runner = ["-m", "cProfile", "-o", str(profile)] if profile else []
        return [
            sys.executable, *runner, "-m", "streamflow", "run", "scaleout_job:build", "--job-name", group,
            "--parallelism", "1", "--checkpoint-interval", str(interval), "--checkpoint-dir", str(root / group),
            "--state-backend", backend, "--metrics-interval", "0", "--no-control", "--log-level", "WARNING",
        ]

    def environment(source: str, output: str) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))  # scaleout_job
        return {"SCALEOUT_BOOTSTRAP": bootstrap, "SCALEOUT_INPUT": source, "SCALEOUT_OUTPUT": output,
                "SCALEOUT_BOUNDED": "1", "PYTHONPATH": path}

    return Contender(f"sf-{backend}", f"streamflow, {backend}, checkpoint {interval:g} s", 1, argv, environment)


def quix_contender(bootstrap: str, peer_python: str, interval: float, profile: Path | None) -> Contender:
    def argv(source: str, output: str, group: str, index: int) -> list[str]:
        runner = ["-m", "cProfile", "-o", str(profile)] if profile else []
        return [peer_python, *runner, str(BENCH / "kafka_peers.py"), "quix-key-count", "--bootstrap", bootstrap,
                "--input", source, "--output", output, "--group", group, "--guarantee", "exactly-once",
                "--commit-interval", str(interval)]

    return Contender("quix", f"Quix Streams, RocksDB, commit {interval:g} s", 1, argv)


async def read_counts(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    """Every ``(user, count)`` in ``topic``, read_committed."""
    found = []
    for raw in await read_committed_values(bootstrap, topic, PARTITIONS):
        value = orjson.loads(raw)
        found.append((value["user"], value["count"]))
    return found


def check(name: str, found: list[tuple[str, int]], want: Counter[str]) -> None:
    """Distinct pairs, one per input record, each user's highest count its input count."""
    total = sum(want.values())
    distinct = set(found)
    if len(distinct) != len(found):
        raise ChildFailed(f"{name}: {len(found) - len(distinct)} (user, count) results emitted more than once")
    if len(found) != total:
        raise ChildFailed(f"{name}: {len(found)} results for {total} input records")
    highest: dict[str, int] = {}
    for user, count in found:
        if count > highest.get(user, 0):
            highest[user] = count
    wrong = [user for user, n in want.items() if highest.get(user) != n]
    if wrong or highest.keys() != want.keys():
        example = wrong[0] if wrong else sorted(highest.keys() ^ want.keys())[0]
        raise ChildFailed(f"{name}: {len(wrong)} users with a wrong final count, e.g. {example}: "
                          f"{highest.get(example)} instead of {want.get(example)}")


async def run_once(bootstrap: str, contender: Contender, source: str, want: Counter[str], logs: Path,
                   tag: str) -> float:
    """Seconds from the first parse to the complete output, checked record by record."""
    return await run_checked(bootstrap, contender, source, sum(want.values()), logs, tag,
                             lambda output: read_counts(bootstrap, output),
                             lambda found: check(contender.name, found, want))


def state_share(profile: Path, modules: tuple[str, ...]) -> tuple[float, float]:
    """(own time in state code, all own time) of a cProfile output, in seconds."""
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    in_state = everything = 0.0
    for (filename, _, function), (_, _, own, _, _) in stats.items():
        everything += own
        if any(m in filename for m in modules) or any(n in function for n in NATIVE_STATE):
            in_state += own
    return in_state, everything


async def profile_each(args: argparse.Namespace, bootstrap: str, peer_python: str | None, chosen: list[str],
                       logs: Path, root: Path) -> None:
    source = unique_topic("kcount-prof-in")
    await fill_topic(bootstrap, source, args.profile_records, PARTITIONS, lambda i: record_at(i, args.keys))
    want = expected_counts(args.profile_records, args.keys)
    print(f"\ncProfile, {args.profile_records:,} records over {len(want):,} keys: own time in state code "
          "(the module's own functions and rocksdict calls)\n", flush=True)
    try:
        for name in chosen:
            out = logs / f"{name}.prof"
            if name == "quix":
                assert peer_python is not None
                contender = quix_contender(bootstrap, peer_python, args.interval, out)
            else:
                contender = streamflow_contender(bootstrap, name.removeprefix("sf-"), args.interval, root, out)
            took = await run_once(bootstrap, contender, source, want, logs, f"{name}-profile")
            await asyncio.sleep(2.0)  # the child writes its profile as it exits
            in_state, everything = state_share(out, STATE_CODE[name])
            print(f"| {contender.label:<36} | {args.profile_records / took:>8,.0f} records/s profiled | state "
                  f"{in_state / everything:5.1%} of {everything:6.1f} s own time | "
                  f"{in_state / args.profile_records * 1e6:5.1f} us/record in state |", flush=True)
    finally:
        await delete_topics(bootstrap, [source])


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    logs, root = run_directories("kcount", bootstrap)
    peer_python, problem = find_peer_python(args.peer_python)
    every = [streamflow_contender(bootstrap, "rocksdb", args.interval, root, None),
             streamflow_contender(bootstrap, "heap", args.interval, root, None)]
    if peer_python is not None:
        every.append(quix_contender(bootstrap, peer_python, args.interval, None))
    else:
        print(f"skipped Quix Streams: {problem}")
    chosen = chosen_contenders(every, args.only)
    if args.rounds:
        source = unique_topic("kcount-in")
        began = time.monotonic()
        await fill_topic(bootstrap, source, args.records, PARTITIONS, lambda i: record_at(i, args.keys))
        want = expected_counts(args.records, args.keys)
        print(f"input: {args.records:,} records over {len(want):,} keys in {source} ({PARTITIONS} partitions, "
              f"{time.monotonic() - began:.0f} s to write)", flush=True)
        try:
            rates = await alternate(chosen, args.rounds, args.records,
                                    lambda contender, tag: run_once(bootstrap, contender, source, want, logs, tag))
        finally:
            await delete_topics(bootstrap, [source])
        print()
        for top, bottom in (("sf-rocksdb", "quix"), ("sf-rocksdb", "sf-heap"), ("sf-heap", "quix")):
            if top in rates and bottom in rates:
                print(f"{top} / {bottom} = {rates[top] / rates[bottom]:.2f}")
    if args.profile:
        await profile_each(args, bootstrap, peer_python, [c.name for c in chosen], logs, root)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    parser = peer_parser(__doc__, rounds=2, contenders="sf-rocksdb,sf-heap,quix")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="also profile each contender once")
    parser.add_argument("--profile-records", type=int, default=300_000)
    run_on_broker(parser, run)


if __name__ == "__main__":
    main()
