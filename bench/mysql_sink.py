"""MySqlSink throughput: the exactly-once (XA) sink next to a hand-written aiomysql loop.

What it measures: rows/s written into one InnoDB table

    events(id BIGINT PRIMARY KEY, user_id VARCHAR(32), amount BIGINT, ts BIGINT)

of a real MariaDB (its own, started here, or $MYSQL_URL), by three contenders, on the same
``--rows`` precomputed row tuples (``row_at(i)``, a pure function of ``i``):

  baseline  a hand-written aiomysql loop, the way a careful user writes it: one
            connection, autocommit off, ``executemany`` of the plain INSERT in batches of
            1000 rows (aiomysql turns each into multi-row INSERTs), COMMIT as soon as 1 s
            has passed since the last one (the sink's checkpoint interval), and at the end
  sf-eo     streamflow: CollectionSource(rows, batch_size=1000) -> MySqlSink(EXACTLY_ONCE,
            the same INSERT, batch_size=1000), checkpoint every 1 s into a fresh temp dir,
            parallelism 1: one XA transaction per checkpoint (XA START, executemany
            batches, marker row, XA END / PREPARE at the barrier, XA COMMIT on completion)
  sf-alo    the same job with MySqlSink(AT_LEAST_ONCE) and an upsert statement
            (INSERT ... ON DUPLICATE KEY UPDATE): autocommit batches, flushed at barriers

Each run writes into a freshly created table and is timed from its start (connecting,
building and starting the job included) to its end (the final COMMIT; for streamflow,
``env.execute`` returning, i.e. the final checkpoint's XA COMMIT done). After each run the
table must hold exactly the ``--rows`` rows (count and sum of amount), else the bench
stops. The client's CPU time per run is printed too: MariaDB shares the 2 cores with the
client, and a client near 100 % CPU is the bottleneck.

Server: $MYSQL_URL if set (its settings untouched), else a MariaDB of its own
(streamflow.devtools.mariadb_server) whose redo log is resized to 1 GiB: 1 M rows write
~75 MB of redo, and with the default 96 MB log a run stalls on a full log depending on
what the runs before it left unflushed. Each run's progress line shows that backlog.

Why ratios: absolute rows/s depend on the machine and what else runs on it. Contenders
run alternated (baseline, sf-eo, sf-alo, baseline, ...) for ``--rounds`` rounds after a
small warm-up round, so drift hits all alike. The figure the issue asks for is sf-eo /
baseline (goal: >= 0.6); it is given as the median of the per-round ratios (each round's
runs are neighbours in time) and as the ratio of the median rates.

Usage: python3 bench/mysql_sink.py [--rows N] [--rounds R] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import aiomysql

import streamflow
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.mysql import DeliveryGuarantee, MySqlAddress, MySqlSink, parse_mysql_url
from streamflow.devtools.mariadb_server import MariaDbServer
from streamflow.testing.mysql import create_database, drop_database, execute, prepared_xids, query

Row = tuple[int, str, int, int]
Job = Callable[[], Coroutine[Any, Any, int]]  # one run; returns its commits or checkpoints
MakeJob = Callable[[str, list[Row]], Job]  # (database url, rows) -> the run

TABLE = "events"
DDL = (f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, user_id VARCHAR(32) NOT NULL, "
       "amount BIGINT NOT NULL, ts BIGINT NOT NULL) ENGINE=InnoDB")
INSERT = f"INSERT INTO {TABLE} (id, user_id, amount, ts) VALUES (%s, %s, %s, %s)"
UPSERT = (f"{INSERT} ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), "
          "amount = VALUES(amount), ts = VALUES(ts)")
BATCH = 1000  # rows per executemany, everywhere
INTERVAL = 1.0  # seconds: the sink's checkpoint interval and the hand loop's commit interval
USERS = 10_000
GOAL = 0.6
WARMUP_ROWS = 20_000
REDO_LOG_BYTES = 1 << 30  # for the server the bench starts (MariaDB >= 10.9 resizes it online)


# -- the data ----------------------------------------------------------------------------


def row_at(i: int) -> Row:
    """Row ``i``: (id, user_id, amount, ts), a pure function of ``i``."""
    return (i, f"u{(i * 7919) % USERS:05d}", (i * 31337) % 100_000, 1_700_000_000_000 + i)


def make_rows(n: int) -> list[Row]:
    return [row_at(i) for i in range(n)]


def as_row(record: Row) -> Row:
    """The sink's row_fn: the records already are the rows."""
    return record


# -- the contenders ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One timed run: wall seconds, client CPU seconds, and commits (hand loop) or
    completed checkpoints (streamflow)."""

    seconds: float
    cpu: float
    commits: int
    redo_before: int = 0  # the server's unflushed redo (bytes) when the run started


async def hand_loop(address: MySqlAddress, rows: list[Row]) -> int:
    """The baseline; returns the number of COMMITs."""
    conn = await aiomysql.connect(host=address.host, port=address.port, user=address.user,
                                  password=address.password, db=address.database,
                                  autocommit=False, charset="utf8mb4")
    commits = 0
    try:
        async with conn.cursor() as cur:
            last_commit = time.perf_counter()
            for start in range(0, len(rows), BATCH):
                await cur.executemany(INSERT, rows[start:start + BATCH])
                if time.perf_counter() - last_commit >= INTERVAL:
                    await conn.commit()
                    commits += 1
                    last_commit = time.perf_counter()
        await conn.commit()
        commits += 1
    finally:
        conn.close()
    return commits


async def streamflow_job(url: str, rows: list[Row], guarantee: DeliveryGuarantee, directory: str) -> int:
    """CollectionSource -> MySqlSink at parallelism 1; returns the completed checkpoints."""
    env = streamflow.StreamEnvironment(parallelism=1)
    env.enable_checkpointing(INTERVAL, directory=directory)
    exactly_once = guarantee is DeliveryGuarantee.EXACTLY_ONCE
    sink = MySqlSink(url, table=TABLE, statement=INSERT if exactly_once else UPSERT, row_fn=as_row,
                     delivery_guarantee=guarantee, batch_size=BATCH)
    (env.from_source(CollectionSource(rows, batch_size=BATCH), name="events").uid("events")
        .sink_to(sink).uid("mysql"))
    result = await env.execute("bench-mysql-eo" if exactly_once else "bench-mysql-alo")
    return result.checkpoints_completed


def timed(work: Job, profile: cProfile.Profile | None = None) -> Sample:
    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        commits = asyncio.run(work())
    finally:
        if profile is not None:
            profile.disable()
    return Sample(seconds=time.perf_counter() - started, cpu=time.process_time() - cpu, commits=commits)


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    label: str
    run: MakeJob  # (db url, rows) -> job


def fresh_checkpoints(guarantee: DeliveryGuarantee) -> MakeJob:
    def make(url: str, rows: list[Row]) -> Job:
        async def job() -> int:
            with tempfile.TemporaryDirectory(prefix="sf-bench-mysql-") as directory:  # nothing to restore
                return await streamflow_job(url, rows, guarantee, directory)
        return job
    return make


CONTENDERS = [
    Contender("baseline", f"hand loop (aiomysql, commit every {INTERVAL:g} s)",
              lambda url, rows: lambda: hand_loop(parse_mysql_url(url), rows)),
    Contender("sf-eo", f"streamflow EXACTLY_ONCE (XA), checkpoint {INTERVAL:g} s",
              fresh_checkpoints(DeliveryGuarantee.EXACTLY_ONCE)),
    Contender("sf-alo", f"streamflow AT_LEAST_ONCE (upsert), checkpoint {INTERVAL:g} s",
              fresh_checkpoints(DeliveryGuarantee.AT_LEAST_ONCE)),
]


# -- one run: a fresh table, the timed job, the check ----------------------------------------


def redo_age(url: str) -> int:
    """Bytes of redo log not yet checkpointed: work the server still owes from earlier runs."""
    found = query(url, "SHOW GLOBAL STATUS LIKE 'Innodb_checkpoint_age'")
    return int(found[0][1]) if found else 0


def run_once(contender: Contender, url: str, rows: list[Row], expected_sum: int,
             profile: cProfile.Profile | None = None) -> Sample:
    execute(url, f"DROP TABLE IF EXISTS {TABLE}", DDL)
    redo = redo_age(url)
    sample = timed(contender.run(url, rows), profile)
    [(count, total)] = query(url, f"SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM {TABLE}")
    if int(count) != len(rows) or int(total) != expected_sum:
        raise SystemExit(f"FAILED: {contender.name} left {count} rows (sum of amount {total}) in "
                         f"{TABLE}; expected {len(rows)} rows (sum {expected_sum})")
    left = prepared_xids(url)
    if left:
        raise SystemExit(f"FAILED: {contender.name} left {len(left)} prepared XA transactions: {left[:3]}")
    return replace(sample, redo_before=redo)


# -- report ----------------------------------------------------------------------------------


def rate(n: int, sample: Sample) -> float:
    return n / sample.seconds


def report(n: int, runs: dict[str, list[Sample]]) -> bool:
    """Print the table and the ratios; True when the goal is met."""
    base = statistics.median(rate(n, s) for s in runs["baseline"])
    print(f"\n| contender                                         |   rows/s |          min..max "
          f"| / baseline | client CPU | commits or checkpoints/s")
    print(f"|{'-' * 51}|{'-' * 10}|{'-' * 19}|{'-' * 12}|{'-' * 12}|{'-' * 25}")
    for c in CONTENDERS:
        samples = runs[c.name]
        rates = [rate(n, s) for s in samples]
        med = statistics.median(rates)
        cpu = statistics.median(s.cpu / s.seconds for s in samples)
        per_s = statistics.median(s.commits / s.seconds for s in samples)
        span = f"{min(rates):,.0f}..{max(rates):,.0f}"
        print(f"| {c.label:<49} | {med:>8,.0f} | {span:>17} | {med / base:>10.2f} | {cpu:>9.0%}  "
              f"| {per_s:.2f}")

    met = True
    print(f"\n| ratio                          | median of per-round ratios | ratio of medians | per round")
    print(f"|{'-' * 32}|{'-' * 28}|{'-' * 18}|{'-' * 24}")
    for name in ("sf-eo", "sf-alo"):
        per_round = [rate(n, s) / rate(n, b) for s, b in zip(runs[name], runs["baseline"])]
        of_medians = statistics.median(rate(n, s) for s in runs[name]) / base
        median = statistics.median(per_round)
        rounds = ", ".join(f"{r:.2f}" for r in per_round)
        print(f"| {name + ' / baseline':<30} | {median:>26.2f} | {of_medians:>16.2f} | {rounds}")
        if name == "sf-eo":
            met = median >= GOAL
    verdict = "MET" if met else "NOT MET"
    print(f"\ngoal: streamflow EXACTLY_ONCE >= {GOAL} of the hand loop (median of per-round ratios): {verdict}")
    return met


def print_profile(profile: cProfile.Profile, title: str, limit: int) -> None:
    print(f"\n== cProfile: {title} ==")
    stats = pstats.Stats(profile, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per run (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of measuring, run baseline and sf-eo once each under cProfile")
    args = parser.parse_args()
    if args.rows < 1 or args.rounds < 1:
        parser.error("--rows and --rounds must be >= 1")

    server: MariaDbServer | None = None
    server_url = os.environ.get("MYSQL_URL")
    if server_url:
        parts = urlsplit(server_url)
        print(f"using the server of MYSQL_URL ({parts.hostname}:{parts.port or 3306})", flush=True)
    else:
        print("starting a MariaDB server of our own ...", flush=True)
        server = MariaDbServer()
        server_url = server.start()
        execute(server_url.rstrip("/") + "/mysql", f"SET GLOBAL innodb_log_file_size = {REDO_LOG_BYTES}")
    url = create_database(server_url, prefix="streamflow_bench")
    try:
        [(version,)] = query(url, "SELECT VERSION()")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPUs ({platform.machine()}), load average {load}, "
              f"Python {platform.python_version()}, aiomysql {aiomysql.__version__}, server {version}")
        print(f"rows: {args.rows:,} per run, executemany batches of {BATCH}, parallelism 1; hand loop "
              f"commits when {INTERVAL:g} s have passed since its last commit, streamflow checkpoints "
              f"every {INTERVAL:g} s", flush=True)
        print("generating rows ...", flush=True)
        rows = make_rows(args.rows)
        expected_sum = sum(r[2] for r in rows)
        warmup = rows[:WARMUP_ROWS]
        warmup_sum = sum(r[2] for r in warmup)

        if args.profile:
            for c in CONTENDERS[:2]:
                profile = cProfile.Profile()
                sample = run_once(c, url, rows, expected_sum, profile)
                print(f"{c.name}: {rate(args.rows, sample):,.0f} rows/s under the profiler "
                      f"({sample.seconds:.1f} s, client CPU {sample.cpu:.1f} s)")
                print_profile(profile, c.label, 30)
            return

        print(f"warm-up: each contender once on {len(warmup):,} rows", flush=True)
        for c in CONTENDERS:
            run_once(c, url, warmup, warmup_sum)
        runs: dict[str, list[Sample]] = {c.name: [] for c in CONTENDERS}
        for round_no in range(1, args.rounds + 1):
            for c in CONTENDERS:
                sample = run_once(c, url, rows, expected_sum)
                runs[c.name].append(sample)
                what = "commits" if c.name == "baseline" else "checkpoints"
                print(f"round {round_no}/{args.rounds} {c.name:<8}: {rate(args.rows, sample):>8,.0f} rows/s "
                      f"({sample.seconds:.2f} s, client CPU {sample.cpu:.2f} s, {sample.commits} {what}, "
                      f"server redo backlog at start {sample.redo_before / 2**20:.0f} MB), count checked",
                      flush=True)
        report(args.rows, runs)
    finally:
        drop_database(url)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
