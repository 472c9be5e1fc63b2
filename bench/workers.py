"""Scale-out: a keyed count on 1 and 2 streamflow workers and on 1 and 2 Quix Streams
processes, exactly once, on one real broker, in one run; and the latency of one exchange
hop.

The job: read an 8-partition input topic of ~100-byte JSON records (keyed by user, 10,000
users; kafka_work.value_at) from the earliest offset, parse each, partition by user,
count per user in state, and write ``{"user", "count", "ts"}`` to a fresh output topic,
exactly once. Contenders (each process a child of this harness):

  sf-1      streamflow, one worker (``--workers 1``: the graph is not cut, the key_by
            stays in memory), parallelism 1, checkpoint every ``--interval`` s
  sf-2      streamflow, two workers (``--workers 2 --worker-index 0|1``): the key_by goes
            through an exchange topic of 8 partitions, committed with each worker's
            checkpoints
  quix-1    Quix Streams, one process: ``group_by`` (a repartition topic), a stateful
            count (RocksDB), exactly-once, commit every ``--interval`` s
  quix-2    the same, two processes in one consumer group

Time runs from the first call of the parse map in any process of the contender (past
start-up, group join, assignment) to the moment the output is complete: the output
topic's last stable offsets (read_committed) add up to the input count (polled every
10 ms; the transaction markers count too, a few hundred offsets in a million, so it
ends a hair early for every contender alike). Then the output is read back
read_committed and must hold every input record's result exactly once (distinct
``(user, count)`` values = input count).

Why ratios: the machine has 2 cores shared with the broker (and, on the project's
machines, with other work), so absolute records/s move between runs. Contenders run in
the same run, in rotating order, ``--rounds`` times; the medians are compared: sf-2 / sf-1
(the goal: >= 1.5) and streamflow / Quix at the same process count (the goal: >= 2).

Latency (``--latency``): records carrying their send time are produced at a steady rate
into sf-1 and sf-2 at each checkpoint interval of ``--latency-intervals``; a
read_committed consumer of the output takes latency = time seen - send time. The
difference between sf-2 and sf-1 at an interval is what the exchange hop costs.

Broker: $KAFKA_BOOTSTRAP_SERVERS (or --bootstrap) if set, else a broker of its own.

Usage: python3 bench/workers.py [--records 1000000] [--rounds 3] [--only sf-1,sf-2,quix-1,quix-2]
                                [--latency] [--no-throughput]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from kafka_child import Child, ChildFailed  # noqa: E402
from kafka_pipeline import broker, delete_topics, fill_topic, find_peer_python, read_back, sample_latencies  # noqa: E402
from streamflow.testing.kafka import create_topic, unique_topic  # noqa: E402

BENCH = Path(__file__).resolve().parent
PARTITIONS = 8
EXCHANGE_PARTITIONS = 8

Argv = Callable[[str, str, str, int], list[str]]  # (input, output, group, process index) -> command


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    label: str
    processes: int
    argv: Argv
    environment: Callable[[str, str], dict[str, str]] = lambda source, output: {}


def streamflow_contender(bootstrap: str, workers: int, interval: float, root: Path, bounded: bool = True) -> Contender:
    def argv(source: str, output: str, group: str, index: int) -> list[str]:
        return [
            sys.executable, "-m", "streamflow", "run", "scaleout_job:build", "--job-name", group,
            "--parallelism", "1", "--checkpoint-interval", str(interval), "--checkpoint-dir", str(root / group),
            "--metrics-interval", "0", "--no-control", "--log-level", "WARNING",
            "--workers", str(workers), "--worker-index", str(index),
            "--exchange-bootstrap", bootstrap, "--exchange-partitions", str(EXCHANGE_PARTITIONS),
        ]

    def environment(source: str, output: str) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))  # scaleout_job
        return {"SCALEOUT_BOOTSTRAP": bootstrap, "SCALEOUT_INPUT": source, "SCALEOUT_OUTPUT": output,
                "SCALEOUT_BOUNDED": "1" if bounded else "0", "PYTHONPATH": path}

    label = f"streamflow, {workers} worker{'s' if workers > 1 else ''}, checkpoint {interval:g} s"
    return Contender(f"sf-{workers}", label, workers, argv, environment)


def quix_contender(bootstrap: str, peer_python: str, processes: int, interval: float) -> Contender:
    def argv(source: str, output: str, group: str, index: int) -> list[str]:
        return [peer_python, str(BENCH / "kafka_peers.py"), "quix-count", "--bootstrap", bootstrap,
                "--input", source, "--output", output, "--group", group, "--guarantee", "exactly-once",
                "--commit-interval", str(interval)]

    label = f"Quix Streams, {processes} process{'es' if processes > 1 else ''}, commit {interval:g} s"
    return Contender(f"quix-{processes}", label, processes, argv)


@contextlib.asynccontextmanager
async def started(contender: Contender, source: str, output: str, group: str, logs: Path,
                  tag: str) -> AsyncIterator[list[Child]]:
    """Every process of ``contender``, started together; all stopped when the block ends."""
    saved = dict(os.environ)
    os.environ.update(contender.environment(source, output))  # Child.run passes os.environ on
    try:
        async with contextlib.AsyncExitStack() as stack:
            children = []
            for index in range(contender.processes):
                argv = contender.argv(source, output, group, index)
                children.append(await stack.enter_async_context(Child.run(argv, logs / f"{tag}-{index}.log")))
            os.environ.clear()
            os.environ.update(saved)
            yield children
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def first_call(children: list[Child], timeout: float) -> float:
    """The earliest ``first`` report of any process (each reports its own)."""
    waits = [asyncio.create_task(child.event("first", timeout=timeout)) for child in children]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return min(task.result()["t"] for task in done)


async def committed_end(bootstrap: str, topic: str, count: int, children: list[Child], timeout: float) -> float:
    """The time the output's last stable offsets first add up to ``count``."""
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    deadline = time.monotonic() + timeout
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        while True:
            ends = await consumer.end_offsets(parts)
            now = time.time()
            if sum(ends.values()) >= count:
                return now
            failed = [c for c in children if c.exited() and c.process.returncode != 0]
            if failed:
                raise ChildFailed(f"{topic}: a process ended with {failed[0].process.returncode}; {failed[0].tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {sum(ends.values())} of {count} records after {timeout:.0f} s")
            await asyncio.sleep(0.01)
    finally:
        await consumer.stop()


async def run_checked(bootstrap: str, contender: Contender, source: str, expected: int, logs: Path, tag: str,
                      read: Callable[[str], Awaitable[list[Any]]], check: Callable[[list[Any]], None]) -> float:
    """Run ``contender`` on ``source`` into a fresh output topic until it holds
    ``expected`` results, ``read`` them back and ``check`` them; seconds from the first
    parse to the complete output (the window and keyed-count Kafka benchmarks)."""
    output, group = unique_topic(f"out-{contender.name}"), unique_topic(f"group-{contender.name}")
    await create_topic(bootstrap, output, PARTITIONS)
    try:
        async with started(contender, source, output, group, logs, tag) as children:
            first = await first_call(children, timeout=180)
            end = await committed_end(bootstrap, output, expected, children, timeout=max(300.0, expected / 200))
            found = await read(output)
            waited = time.monotonic()
            while len(found) < expected and time.monotonic() - waited < 30:  # (markers counted: a last commit)
                await asyncio.sleep(0.5)
                found = await read(output)
        check(found)
        return end - first
    finally:
        await delete_topics(bootstrap, [output], prefixes=(group,))


async def alternate(chosen: list[Contender], rounds: int, records: int,
                    run: Callable[[Contender, str], Awaitable[float]]) -> dict[str, float]:
    """Run the contenders ``rounds`` times in rotating order (``run(contender, tag)``:
    seconds for ``records``), print each round and a table of medians; the median
    records/s per contender name."""
    seconds: dict[str, list[float]] = {c.name: [] for c in chosen}
    for r in range(rounds):
        for contender in chosen[r % len(chosen):] + chosen[: r % len(chosen)]:
            took = await run(contender, f"{contender.name}-r{r}")
            seconds[contender.name].append(took)
            print(f"round {r + 1}: {contender.name}: {records / took:,.0f} records/s ({took:.1f} s)", flush=True)
    rates = {name: statistics.median(records / s for s in runs) for name, runs in seconds.items() if runs}
    print(f"\n{records:,} records, {rounds} rounds, median records/s (each round's in brackets):\n")
    for contender in chosen:
        each = ", ".join(f"{records / s:,.0f}" for s in seconds[contender.name])
        print(f"| {contender.label:<36} | {rates[contender.name]:>9,.0f} | [{each}]")
    return rates


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    startup: float


async def run_once(bootstrap: str, contender: Contender, source: str, count: int, logs: Path, tag: str) -> Sample:
    output, group = unique_topic(f"scale-out-{contender.name}"), unique_topic(f"scale-{contender.name}")
    await create_topic(bootstrap, output, PARTITIONS)
    try:
        began = time.time()
        async with started(contender, source, output, group, logs, tag) as children:
            first = await first_call(children, timeout=180)
            end = await committed_end(bootstrap, output, count, children, timeout=max(300.0, count / 1_000))
        seen, distinct = await read_back(bootstrap, output, "read_committed", PARTITIONS)
        if seen != count or distinct != count:
            raise ChildFailed(f"{contender.name}: output holds {seen} records, {distinct} distinct, of {count}")
        return Sample(seconds=end - first, startup=first - began)
    finally:
        await delete_topics(bootstrap, [output], prefixes=(f"{group}",))


async def throughput(bootstrap: str, chosen: list[Contender], args: argparse.Namespace, logs: Path) -> None:
    source = unique_topic("scale-in")
    started_at = time.monotonic()
    await fill_topic(bootstrap, source, args.records, PARTITIONS)
    print(f"input: {args.records:,} records x ~100 B in {source} ({PARTITIONS} partitions, "
          f"{time.monotonic() - started_at:.0f} s to write)", flush=True)
    samples: dict[str, list[Sample]] = {c.name: [] for c in chosen}
    for r in range(args.rounds):
        for contender in chosen[r % len(chosen):] + chosen[: r % len(chosen)]:
            sample = await run_once(bootstrap, contender, source, args.records, logs, f"{contender.name}-r{r}")
            samples[contender.name].append(sample)
            print(f"round {r + 1}: {contender.name}: {args.records / sample.seconds:,.0f} records/s "
                  f"({sample.seconds:.1f} s; start-up {sample.startup:.1f} s)", flush=True)
    rates = {name: statistics.median(args.records / s.seconds for s in runs) for name, runs in samples.items() if runs}
    print(f"\n{args.records:,} records, {args.rounds} rounds, median records/s (each round's rates in brackets):\n")
    for contender in chosen:
        each = ", ".join(f"{args.records / s.seconds:,.0f}" for s in samples[contender.name])
        print(f"| {contender.label:<44} | {rates[contender.name]:>9,.0f} | [{each}]")
    print()
    for top, bottom, goal in (("sf-2", "sf-1", 1.5), ("sf-1", "quix-1", 2.0), ("sf-2", "quix-2", 2.0),
                              ("quix-2", "quix-1", None)):
        if top in rates and bottom in rates:
            verdict = "" if goal is None else f" (goal >= {goal:g}: {'met' if rates[top] / rates[bottom] >= goal else 'NOT met'})"
            print(f"{top} / {bottom} = {rates[top] / rates[bottom]:.2f}{verdict}")


async def latency(bootstrap: str, args: argparse.Namespace, logs: Path, root: Path) -> None:
    print(f"\nend-to-end latency, {args.latency_rate:,} records/s for {args.latency_seconds:g} s, "
          "read_committed consumer downstream:\n")
    print(f"| {'job':<44} | {'records':>8} | {'p50':>8} | {'p99':>8} | {'max':>8} |")
    for interval in args.latency_intervals:
        for workers in (1, 2):
            contender = streamflow_contender(bootstrap, workers, interval, root, bounded=False)
            try:
                found = await latency_once(bootstrap, contender, args, logs, f"latency-{workers}-{interval}")
            except (ChildFailed, TimeoutError) as exc:
                print(f"| {contender.label:<44} | FAILED: {exc}", flush=True)
                continue
            found.sort()
            p99 = found[min(len(found) - 1, int(len(found) * 0.99))]
            print(f"| {contender.label:<44} | {len(found):>8,} | {statistics.median(found) * 1000:>5.0f} ms | "
                  f"{p99 * 1000:>5.0f} ms | {found[-1] * 1000:>5.0f} ms |", flush=True)


async def latency_once(bootstrap: str, contender: Contender, args: argparse.Namespace, logs: Path,
                       tag: str) -> list[float]:
    source, output, group = unique_topic("scale-lat-in"), unique_topic("scale-lat-out"), unique_topic("scale-lat")
    await create_topic(bootstrap, source, PARTITIONS)
    await create_topic(bootstrap, output, PARTITIONS)
    parts = [TopicPartition(output, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        async with started(contender, source, output, group, logs, tag) as children:
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)

            def check() -> None:
                for child in children:
                    child.raise_if_exited()

            return await sample_latencies(consumer, bootstrap, source, args, check, contender.label)
    finally:
        await consumer.stop()
        await delete_topics(bootstrap, [source, output], prefixes=(group,))


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    logs, root = run_directories("scale-out", bootstrap)
    peer_python, problem = find_peer_python(args.peer_python)
    every = [streamflow_contender(bootstrap, 1, args.interval, root), streamflow_contender(bootstrap, 2, args.interval, root)]
    if peer_python is not None:
        every += [quix_contender(bootstrap, peer_python, 1, args.interval),
                  quix_contender(bootstrap, peer_python, 2, args.interval)]
    else:
        print(f"skipped Quix Streams: {problem}")
    chosen = chosen_contenders(every, args.only)
    if not args.no_throughput:
        await throughput(bootstrap, chosen, args, logs)
    if args.latency:
        await latency(bootstrap, args, logs, root)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def run_directories(name: str, bootstrap: str) -> tuple[Path, Path]:
    """Fresh folders for a run's logs and checkpoints; prints the machine line first."""
    logs = Path(tempfile.mkdtemp(prefix=f"{name}-logs-"))
    root = Path(tempfile.mkdtemp(prefix=f"{name}-checkpoints-"))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs ({platform.machine()}), load {load}, Python "
          f"{platform.python_version()}, broker {bootstrap}; logs in {logs}", flush=True)
    return logs, root


def chosen_contenders(every: list[Contender], only: str) -> list[Contender]:
    """The contenders ``--only`` names (comma-separated), all when it is empty."""
    wanted = only.split(",") if only else [c.name for c in every]
    return [c for c in every if c.name in wanted]


def peer_parser(doc: str | None, *, rounds: int, contenders: str, interval_help: str = "checkpoint / commit interval"
                ) -> argparse.ArgumentParser:
    """The options every Kafka benchmark against a peer starts with (its own follow)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--only", default="", help=f"comma-separated: {contenders}")
    parser.add_argument("--interval", type=float, default=1.0, help=interval_help)
    return parser


def run_on_broker(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace, str], Awaitable[None]]) -> None:
    """Add the broker and peer options, parse, and ``run(args, bootstrap)`` on the given
    broker, else on a broker of its own."""
    parser.add_argument("--bootstrap", default=None, help="default: $KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--peer-python", default=None, help="interpreter with quixstreams (default: bench/.venv-peers)")
    args = parser.parse_args()
    with broker(args.bootstrap) as bootstrap:
        asyncio.run(run(args, bootstrap))


def main() -> None:
    parser = peer_parser(__doc__, rounds=3, contenders="sf-1,sf-2,quix-1,quix-2",
                         interval_help="checkpoint / commit interval (throughput)")
    parser.add_argument("--latency", action="store_true", help="also measure the latency through one exchange hop")
    parser.add_argument("--latency-rate", type=int, default=2_000, help="records/s produced in the latency runs")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-intervals", default="0.2,0.5,1",
                        type=lambda text: [float(x) for x in text.split(",")])
    parser.add_argument("--no-throughput", action="store_true")
    run_on_broker(parser, run)


if __name__ == "__main__":
    main()
