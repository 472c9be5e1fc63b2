"""Kafka -> map -> Kafka: streamflow next to a hand-written aiokafka loop, Quix Streams and
Faust, on one real broker, in one run.

The job: read a 4-partition input topic of ~100-byte JSON records (keyed by user id) from
the earliest offset, parse each, change two fields, serialise it (kafka_work.transform),
and write it with its key to a fresh 4-partition output topic. Contenders:

  hand      the baseline: aiokafka getmany -> map -> send, await the deliveries -> commit
  hand-batch  the same loop on aiokafka's batch API (create_batch / send_batch per
            partition): a stronger reference, what a profiled hand loop becomes
  quix      Quix Streams, at-least-once, commit every 1 s
  quix-eo   Quix Streams, exactly-once (Kafka transactions), commit every 1 s
  faust     Faust (faust-streaming), at-least-once; on --faust-records (it is slow)
  sf-alo    streamflow, KafkaSource -> map -> KafkaSink(AT_LEAST_ONCE), checkpoint every 1 s
  sf-eo     streamflow, KafkaSink(EXACTLY_ONCE), checkpoint every 1 s
  hand-batch-uvloop, sf-alo-uvloop, sf-eo-uvloop
            the same on uvloop's event loop instead of asyncio's (when uvloop is installed)

Each contender runs in its own process (the peers in bench/.venv-peers when it exists; see
bench/setup.sh), on a fresh output topic and consumer group, over the same input topic.
Its time runs from the first call of its map (past start-up, group join and partition
assignment) to the moment the output is complete: for at-least-once, when the output
topic's end offsets add up to the input count (polled every 10 ms; a consumer sees the
records from then on); for Quix exactly-once, when its last stable offsets do; for
streamflow exactly-once, when the job, bounded at the input's end offsets, has returned,
i.e. its final transaction is committed. Then the output is read
back (read_committed for exactly-once) and must hold every input record exactly once.

Why ratios: the machine has 2 cores shared with the broker and with other work, so
absolute records/s move between runs. Contenders run in the same run, in rotating order,
``--rounds`` times; the median rate of each is compared with the hand loop's median.

Latency (--latency): records carrying their send time are produced at a steady rate; a
read_committed consumer downstream takes latency = time seen - send time, for streamflow
exactly-once at several checkpoint intervals, with the hand loop and streamflow
at-least-once as references.

Broker: $KAFKA_BOOTSTRAP_SERVERS (or --bootstrap) if set, else a broker of its own
(streamflow.devtools.kafka_broker), stopped at the end.

Usage: python3 bench/kafka_pipeline.py [--records N] [--rounds R] [--only hand,sf-alo,...]
                                       [--latency] [--no-throughput] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from aiokafka.partitioner import murmur2  # noqa: E402

from kafka_child import Child, ChildFailed  # noqa: E402
from kafka_work import key_at, sent_at, value_at  # noqa: E402
from streamflow.testing.kafka import create_topic, unique_topic  # noqa: E402

BENCH = Path(__file__).resolve().parent
PARTITIONS = 4
EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"


# -- contenders ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Contender:
    """One way of doing the job. ``argv(input, output, group)`` is its child's command."""

    name: str
    label: str
    guarantee: str
    argv: Callable[[str, str, str], list[str]]
    small_input: bool = False  # runs on --faust-records instead of --records
    ends_itself: bool = False  # bounded: the child reports ``done`` (with checkpoints) and exits


@dataclass(slots=True)
class Setup:
    bootstrap: str
    peer_python: str | None
    peer_problem: str
    streamflow_problem: str
    logs: Path
    uvloop: bool = False  # installed in the project's environment: the *-uvloop contenders run


def contenders(setup: Setup, interval: float) -> list[Contender]:
    """Every contender this machine can run, the baseline first."""
    project = [sys.executable, str(BENCH / "kafka_contenders.py")]
    common = ["--bootstrap", setup.bootstrap]

    def child(*head: str) -> Callable[[str, str, str], list[str]]:
        return lambda src, dst, group: [*head, *common, "--input", src, "--output", dst, "--group", group]

    found = [
        Contender(name="hand", label="hand loop (aiokafka send)", guarantee=AT_LEAST_ONCE,
                  argv=child(*project, "hand")),
        Contender(name="hand-batch", label="hand loop (aiokafka send_batch)", guarantee=AT_LEAST_ONCE,
                  argv=child(*project, "hand-batch")),
    ]
    if setup.peer_python is not None:
        peers = [setup.peer_python, str(BENCH / "kafka_peers.py")]
        found += [
            Contender(name="quix", label="Quix Streams", guarantee=AT_LEAST_ONCE, argv=child(*peers, "quix")),
            Contender(name="quix-eo", label="Quix Streams", guarantee=EXACTLY_ONCE,
                      argv=child(*peers, "quix", "--guarantee", EXACTLY_ONCE)),
            Contender(name="faust", label="Faust", guarantee=AT_LEAST_ONCE, argv=child(*peers, "faust"),
                      small_input=True),
        ]
    if not setup.streamflow_problem:
        sf = [*project, "streamflow", "--bounded", "--interval", str(interval)]
        found += [
            Contender(name="sf-alo", label=f"streamflow, checkpoint {interval:g} s", guarantee=AT_LEAST_ONCE,
                      argv=child(*sf), ends_itself=True),
            Contender(name="sf-eo", label=f"streamflow, checkpoint {interval:g} s", guarantee=EXACTLY_ONCE,
                      argv=child(*sf, "--guarantee", EXACTLY_ONCE), ends_itself=True),
        ]
    if setup.uvloop:
        on_uvloop = ("--loop", "uvloop")
        found.append(Contender(name="hand-batch-uvloop", label="hand loop (send_batch), uvloop",
                               guarantee=AT_LEAST_ONCE, argv=child(*project, "hand-batch", *on_uvloop)))
        if not setup.streamflow_problem:
            found += [
                Contender(name="sf-alo-uvloop", label=f"streamflow, checkpoint {interval:g} s, uvloop",
                          guarantee=AT_LEAST_ONCE, argv=child(*sf, *on_uvloop), ends_itself=True),
                Contender(name="sf-eo-uvloop", label=f"streamflow, checkpoint {interval:g} s, uvloop",
                          guarantee=EXACTLY_ONCE, argv=child(*sf, "--guarantee", EXACTLY_ONCE, *on_uvloop),
                          ends_itself=True),
            ]
    return found


def uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def streamflow_problem() -> str:
    """Why streamflow cannot run here ('' if it can)."""
    try:
        from streamflow.connectors.kafka import KafkaSink, KafkaSource  # noqa: F401
    except ImportError as exc:
        return f"streamflow's KafkaSource / KafkaSink are not importable ({exc})"
    return ""


def find_peer_python(chosen: str | None) -> tuple[str | None, str]:
    """The interpreter that has quixstreams and faust, and why there is none."""
    candidates = [chosen] if chosen else [str(BENCH / ".venv-peers" / "bin" / "python"), sys.executable]
    for python in candidates:
        if not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import quixstreams, faust"], capture_output=True, text=True)
        if probe.returncode == 0:
            return python, ""
    return None, "Quix Streams / Faust not installed: run bench/setup.sh (makes bench/.venv-peers)"


# -- topics -------------------------------------------------------------------------------


def record_at(i: int) -> tuple[bytes, bytes, int | None]:
    """Record ``i`` of the benchmarks' input: key, value and no timestamp of its own."""
    return key_at(i), value_at(i), None


async def fill_topic(
    bootstrap: str, topic: str, count: int, partitions: int = PARTITIONS,
    record: Callable[[int], tuple[bytes, bytes, int | None]] = record_at,
) -> None:
    """Create ``topic`` and write records 0..count-1 to it (``record(i)``: key, value,
    timestamp in ms or None), every one acknowledged."""
    await create_topic(bootstrap, topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=256 * 1024)
    await producer.start()
    try:
        # Whole batches per partition (Kafka's default partitioner: murmur2 of the key):
        # several times faster than a send per record, which matters for 1 M records.
        partition_of: dict[bytes, int] = {}
        for start in range(0, count, 20_000):
            batches: dict[int, Any] = {}
            pending = []
            for i in range(start, min(count, start + 20_000)):
                key, value, timestamp = record(i)
                partition = partition_of.get(key)
                if partition is None:
                    partition = partition_of[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=timestamp) is None:
                    batch.close()
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = batches[partition] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=timestamp)
            for partition, batch in batches.items():
                batch.close()
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def delete_topics(bootstrap: str, topics: list[str], *, prefixes: tuple[str, ...] = ()) -> None:
    """Delete ``topics`` and every topic whose name starts with one of ``prefixes`` (the
    internal topics a peer made for its consumer group, e.g. Faust's assignor topic)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if prefixes:
            topics = topics + [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if topics:
            await admin.delete_topics(topics)
    except Exception as exc:  # leftovers are harmless (unique names); say so and go on
        print(f"(could not delete topics {topics}: {exc!r})", file=sys.stderr)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def offsets_reader(bootstrap: str, isolation: str = "read_uncommitted") -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def wait_until_full(bootstrap: str, topic: str, count: int, child: Child, timeout: float,
                          isolation: str) -> float:
    """Poll the end offsets of ``topic`` every 10 ms; the time they first add up to
    ``count``. Non-transactional output: end offset = record count. Transactional output
    (Quix exactly-once) is polled read_committed, so the offsets are last stable offsets:
    committed records only, plus one marker per partition per transaction (a few hundred
    offsets in 1 M, so it ends a hair early)."""
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    deadline = time.monotonic() + timeout
    async with offsets_reader(bootstrap, isolation) as consumer:
        while True:
            exited = child.exited()  # before the look: a child that ends by itself is complete
            ends = await consumer.end_offsets(parts)
            now = time.time()
            if sum(ends.values()) >= count:
                return now
            if exited:
                raise ChildFailed(f"{topic}: the child ended at {sum(ends.values())} of {count} records; "
                                  f"{child.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {sum(ends.values())} of {count} records after {timeout:.0f} s")
            await asyncio.sleep(0.01)


async def read_back(bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS) -> tuple[int, int]:
    """(records, distinct values) in ``topic`` as an ``isolation`` consumer sees it."""
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    async with offsets_reader(bootstrap, isolation) as consumer:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        count, seen = 0, set()
        deadline = time.monotonic() + 300
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} back did not reach {ends}")
            fetched = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in fetched.items():
                for record in records:
                    if record.offset < ends[tp]:
                        count += 1
                        seen.add(hash(record.value))
        return count, len(seen)


async def read_committed_values(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every value in ``topic`` up to its end offsets at the start, read_committed (the
    harnesses that check an output record by record)."""
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    values: list[bytes] = []
    async with offsets_reader(bootstrap, "read_committed") as consumer:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + 600
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} back did not reach {ends}")
            for tp, records in (await consumer.getmany(timeout_ms=500, max_records=20_000)).items():
                values.extend(record.value for record in records if record.offset < ends[tp])
    return values


# -- one throughput run -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    records: int
    seconds: float  # first map call -> output complete
    startup: float  # process start -> first map call
    checkpoints: int | None = None


async def run_once(setup: Setup, contender: Contender, source: str, count: int, tag: str) -> Sample:
    output = unique_topic(f"kbench-out-{contender.name}")
    group = unique_topic(f"kbench-{contender.name}")
    await create_topic(setup.bootstrap, output, PARTITIONS)
    timeout = max(180.0, count / 2_000)
    checkpoints = None
    isolation = "read_committed" if contender.guarantee == EXACTLY_ONCE else "read_uncommitted"
    try:
        async with Child.run(contender.argv(source, output, group), setup.logs / f"{tag}.log") as child:
            first = (await child.event("first", timeout=180))["t"]
            if contender.guarantee == EXACTLY_ONCE and contender.ends_itself:
                done = await child.event("done", timeout=timeout)
                end = done["t"]
            else:
                end = await wait_until_full(setup.bootstrap, output, count, child, timeout, isolation)
                if contender.ends_itself:
                    done = await child.event("done", timeout=60)
            if contender.ends_itself:
                checkpoints = done.get("checkpoints")
        seen, distinct = await read_back(setup.bootstrap, output, isolation)
        if distinct != count or (contender.guarantee == EXACTLY_ONCE and seen != count):
            raise ChildFailed(f"{contender.name}: output holds {seen} records, {distinct} distinct, "
                              f"of {count} ({isolation}); log: {child.log}")
        return Sample(records=count, seconds=end - first, startup=first - child.started,
                      checkpoints=checkpoints)
    finally:
        await delete_topics(setup.bootstrap, [output], prefixes=(f"{group}-",))


# -- the throughput table -----------------------------------------------------------------


@dataclass(slots=True)
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def rate(self, name: str) -> float | None:
        runs = self.samples.get(name)
        return statistics.median(s.records / s.seconds for s in runs) if runs else None


async def measure_throughput(setup: Setup, chosen: list[Contender], args: argparse.Namespace) -> Results:
    results = Results()
    inputs: dict[bool, tuple[str, int]] = {}
    sizes = {c.small_input for c in chosen}
    try:
        for small in sorted(sizes):
            count = args.faust_records if small else args.records
            topic = unique_topic("kbench-in")
            print(f"writing {count:,} records to {topic} ...", flush=True)
            await fill_topic(setup.bootstrap, topic, count)
            inputs[small] = (topic, count)
        for r in range(args.rounds):
            order = chosen[r % len(chosen):] + chosen[: r % len(chosen)]
            for contender in order:
                if contender.name in results.failures:
                    continue
                topic, count = inputs[contender.small_input]
                try:
                    sample = await run_once(setup, contender, topic, count, f"{contender.name}-round{r + 1}")
                except (ChildFailed, TimeoutError) as exc:
                    results.failures[contender.name] = str(exc)
                    print(f"round {r + 1}: {contender.name} FAILED: {exc}", flush=True)
                    continue
                results.samples.setdefault(contender.name, []).append(sample)
                extra = "" if sample.checkpoints is None else f", {sample.checkpoints} checkpoints"
                print(f"round {r + 1}: {contender.name:<8} {count / sample.seconds:>10,.0f} records/s "
                      f"({sample.seconds:.2f} s, start-up {sample.startup:.1f} s{extra})", flush=True)
    finally:
        await delete_topics(setup.bootstrap, [topic for topic, _ in inputs.values()])
    return results


def print_throughput(results: Results, chosen: list[Contender], args: argparse.Namespace) -> None:
    base, batch = results.rate("hand"), results.rate("hand-batch")
    print(f"\n| {'contender':<38} | {'guarantee':<13} | {'records':>9} | {'records/s':>9} | "
          f"{'min..max':>17} | {'/ hand':>6} | {'/ batch':>7} | {'start-up':>8} | checkpoints/s")
    print(f"|{'-' * 40}|{'-' * 15}|{'-' * 11}|{'-' * 11}|{'-' * 19}|{'-' * 8}|{'-' * 9}|{'-' * 10}|{'-' * 14}")
    for c in chosen:
        runs = results.samples.get(c.name)
        if not runs:
            why = results.failures.get(c.name, "not run")
            print(f"| {c.label:<38} | {c.guarantee:<13} | {'':>9} | {'failed':>9} | {why[:60]}")
            continue
        rates = [s.records / s.seconds for s in runs]
        rate = statistics.median(rates)
        to_hand = f"{rate / base:.2f}" if base else "n/a"
        to_batch = f"{rate / batch:.2f}" if batch else "n/a"
        cadence = ""
        if runs[0].checkpoints is not None:
            cadence = f"{statistics.median(s.checkpoints / s.seconds for s in runs if s.checkpoints is not None):.2f}"
        print(f"| {c.label:<38} | {c.guarantee:<13} | {runs[0].records:>9,} | {rate:>9,.0f} | "
              f"{min(rates):>8,.0f}..{max(rates):<8,.0f}| {to_hand:>6} | {to_batch:>7} | "
              f"{statistics.median(s.startup for s in runs):>6.1f} s | {cadence}")

    def ratio(top: str, bottom: str) -> float | None:
        a, b = results.rate(top), results.rate(bottom)
        return None if a is None or b is None else a / b

    goals = [
        ("streamflow at-least-once / hand loop", ratio("sf-alo", "hand"), 0.7),
        ("streamflow exactly-once / hand loop", ratio("sf-eo", "hand"), 0.5),
        ("streamflow at-least-once / hand loop, send_batch", ratio("sf-alo", "hand-batch"), 0.95),
        ("streamflow exactly-once / hand loop, send_batch", ratio("sf-eo", "hand-batch"), 0.95),
        ("streamflow at-least-once / Quix Streams", ratio("sf-alo", "quix"), 3.0),
        ("streamflow exactly-once / Quix Streams", ratio("sf-eo", "quix"), 3.0),
        ("streamflow exactly-once / Quix exactly-once", ratio("sf-eo", "quix-eo"), None),
        ("streamflow at-least-once / Faust", ratio("sf-alo", "faust"), None),
        ("Quix Streams / hand loop", ratio("quix", "hand"), None),
        ("Faust / hand loop", ratio("faust", "hand"), None),
        ("uvloop / asyncio: hand loop, send_batch", ratio("hand-batch-uvloop", "hand-batch"), None),
        ("uvloop / asyncio: streamflow at-least-once", ratio("sf-alo-uvloop", "sf-alo"), None),
        ("uvloop / asyncio: streamflow exactly-once", ratio("sf-eo-uvloop", "sf-eo"), None),
        ("streamflow ALO, uvloop / hand loop, send_batch", ratio("sf-alo-uvloop", "hand-batch"), None),
        ("streamflow EO, uvloop / hand loop, send_batch", ratio("sf-eo-uvloop", "hand-batch"), None),
    ]
    print(f"\n| {'ratio (median records/s)':<48} | {'value':>6} | {'goal':>7} | result")
    print(f"|{'-' * 50}|{'-' * 8}|{'-' * 9}|{'-' * 20}")
    for label, value, goal in goals:
        shown = "n/a" if value is None else f"{value:.2f}"
        if goal is None:
            verdict = "(for information)" if value is not None else "not measured"
        else:
            verdict = "not measured" if value is None else ("met" if value >= goal else "NOT met")
        print(f"| {label:<48} | {shown:>6} | {'' if goal is None else f'>= {goal:g}':>7} | {verdict}")


# -- latency ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    label: str
    records: int
    p50: float
    p99: float
    worst: float


async def steady_producer(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    """Send ``rate`` records a second for ``seconds``, in 10 ms ticks on a fixed schedule,
    each value carrying its send time in microseconds; return how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    sent, tick = 0, 0.01
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                await producer.send(topic, value_at(sent, ts=time.time_ns() // 1000), key=key_at(sent))
                sent += 1
            await asyncio.sleep(tick - (time.monotonic() - started) % tick)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def sample_latencies(consumer: AIOKafkaConsumer, bootstrap: str, source: str, args: argparse.Namespace,
                           check: Callable[[], None], label: str) -> list[float]:
    """End-to-end latencies of ``args.latency_rate`` records/s produced into ``source`` for
    ``args.latency_seconds``, as ``consumer`` (assigned to the job's output, read_committed)
    sees them. A warm-up of a record a tick runs first, until results come out; ``check``
    raises if the job's processes ended.

    Raises:
        ChildFailed: not every record came out within 30 s after the last was sent.
    """
    warm = asyncio.create_task(steady_producer(bootstrap, source, 100, 120.0))
    try:
        while not await consumer.getmany(timeout_ms=100):
            check()
    finally:
        warm.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm
    since = time.time()
    producing = asyncio.create_task(steady_producer(bootstrap, source, args.latency_rate, args.latency_seconds))
    latencies: list[float] = []
    deadline = None
    while True:
        fetched = await consumer.getmany(timeout_ms=20)
        now = time.time()
        for records in fetched.values():
            for record in records:
                sent = sent_at(record.value)
                if sent >= since:
                    latencies.append(now - sent)
        if producing.done():
            total = producing.result()
            if len(latencies) >= total:
                return latencies
            deadline = deadline or time.monotonic() + 30
            if time.monotonic() > deadline:
                raise ChildFailed(f"{label}: {len(latencies)} of {total} records seen 30 s after the last was sent")
        check()


async def measure_latency_once(setup: Setup, label: str, argv: Callable[[str, str, str], list[str]],
                               args: argparse.Namespace, tag: str) -> Latency:
    source, output = unique_topic("kbench-lat-in"), unique_topic("kbench-lat-out")
    await create_topic(setup.bootstrap, source, PARTITIONS)
    await create_topic(setup.bootstrap, output, PARTITIONS)
    parts = [TopicPartition(output, p) for p in range(PARTITIONS)]
    group = unique_topic("kbench-lat")
    latencies: list[float] = []
    try:
        async with Child.run(argv(source, output, group), setup.logs / f"{tag}.log") as child, \
                offsets_reader(setup.bootstrap, "read_committed") as consumer:
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            latencies = await sample_latencies(consumer, setup.bootstrap, source, args, child.raise_if_exited, label)
    finally:
        await delete_topics(setup.bootstrap, [source, output], prefixes=(f"{group}-",))
    latencies.sort()
    return Latency(label=label, records=len(latencies), p50=statistics.median(latencies),
                   p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], worst=latencies[-1])


async def measure_latency(setup: Setup, args: argparse.Namespace) -> list[Latency]:
    project = [sys.executable, str(BENCH / "kafka_contenders.py")]

    def child(*head: str) -> Callable[[str, str, str], list[str]]:
        return lambda src, dst, group: [*head, "--bootstrap", setup.bootstrap, "--input", src,
                                        "--output", dst, "--group", group]

    runs: list[tuple[str, Callable[[str, str, str], list[str]]]] = [
        ("hand loop (aiokafka send), at-least-once", child(*project, "hand")),
    ]
    if setup.peer_python is not None:
        runs.append(("Quix Streams exactly-once, commit 1 s",
                     child(setup.peer_python, str(BENCH / "kafka_peers.py"), "quix", "--guarantee", EXACTLY_ONCE)))
    if not setup.streamflow_problem:
        runs.append(("streamflow at-least-once, checkpoint 1 s", child(*project, "streamflow", "--interval", "1")))
        for interval in args.latency_intervals:
            runs.append((f"streamflow exactly-once, checkpoint {interval:g} s",
                         child(*project, "streamflow", "--guarantee", EXACTLY_ONCE, "--interval", str(interval))))
    found = []
    for i, (label, argv) in enumerate(runs):
        try:
            result = await measure_latency_once(setup, label, argv, args, f"latency-{i}")
        except (ChildFailed, TimeoutError) as exc:
            print(f"latency: {label} FAILED: {exc}", flush=True)
            continue
        print(f"latency: {label}: p50 {result.p50 * 1000:.0f} ms, p99 {result.p99 * 1000:.0f} ms", flush=True)
        found.append(result)
    return found


def print_latency(found: list[Latency], args: argparse.Namespace) -> None:
    print(f"\nend-to-end latency, {args.latency_rate:,} records/s for {args.latency_seconds:g} s, "
          f"read_committed consumer downstream:\n")
    print(f"| {'contender':<44} | {'records':>8} | {'p50':>8} | {'p99':>8} | {'max':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for x in found:
        print(f"| {x.label:<44} | {x.records:>8,} | {x.p50 * 1000:>5.0f} ms | {x.p99 * 1000:>5.0f} ms | "
              f"{x.worst * 1000:>5.0f} ms |")


# -- profile ------------------------------------------------------------------------------


async def profile_streamflow(setup: Setup, args: argparse.Namespace) -> None:
    """Run sf-alo and sf-eo once more each under cProfile (the child process, bounded) and
    print where their time goes, by own time. cProfile inflates per-call costs, so
    Python-level calls look dearer than they are; read it for proportions."""
    every = {c.name: c for c in contenders(setup, args.interval)}
    wanted = [every[name] for name in ("sf-alo", "sf-eo") if name in every]
    if not wanted:
        print(f"--profile: streamflow cannot run here ({setup.streamflow_problem})")
        return
    import pstats

    topic = unique_topic("kbench-in")
    await fill_topic(setup.bootstrap, topic, args.records)
    try:
        for contender in wanted:
            out = setup.logs / f"{contender.name}.prof"

            def argv(src: str, dst: str, group: str, c: Contender = contender, out: Path = out) -> list[str]:
                command = c.argv(src, dst, group)
                return [command[0], "-m", "cProfile", "-o", str(out), *command[1:]]

            profiled = Contender(name=contender.name, label=contender.label, guarantee=contender.guarantee,
                                 argv=argv, ends_itself=True)
            sample = await run_once(setup, profiled, topic, args.records, f"{contender.name}-profile")
            await asyncio.sleep(1.0)  # the child writes its profile as it exits
            print(f"\ncProfile of {contender.name} ({contender.guarantee}), {args.records:,} records, "
                  f"{args.records / sample.seconds:,.0f} records/s under the profiler; by own time:")
            pstats.Stats(str(out)).sort_stats("tottime").print_stats(args.profile_lines)
    finally:
        await delete_topics(setup.bootstrap, [topic])


# -- main ---------------------------------------------------------------------------------


@contextlib.contextmanager
def broker(chosen: str | None) -> Any:
    """The bootstrap servers: given, from $KAFKA_BOOTSTRAP_SERVERS, or a broker of our own."""
    address = chosen or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if address:
        yield address
        return
    from streamflow.devtools.kafka_broker import KafkaBroker

    print("KAFKA_BOOTSTRAP_SERVERS is not set: starting a broker (streamflow.devtools.kafka_broker)", flush=True)
    with KafkaBroker() as own:
        yield own.bootstrap_servers


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    peer_python, peer_problem = find_peer_python(args.peer_python)
    setup = Setup(bootstrap=bootstrap, peer_python=peer_python, peer_problem=peer_problem,
                  streamflow_problem=streamflow_problem(), logs=Path(tempfile.mkdtemp(prefix="kbench-logs-")),
                  uvloop=uvloop_installed())
    print(f"machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
          f"broker {bootstrap}; child logs in {setup.logs}")
    for problem in (setup.peer_problem, setup.streamflow_problem):
        if problem:
            print(f"skipped: {problem}")
    every = contenders(setup, args.interval)
    known = {c.name for c in every}
    wanted = args.only.split(",") if args.only else [c.name for c in every]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"--only: {unknown} not runnable here; runnable: {sorted(known)}")
    chosen = [c for c in every if c.name in wanted]
    if not args.no_throughput:
        print(f"records: {args.records:,} (Faust: {args.faust_records:,}) x ~100 B, {PARTITIONS} partitions, "
              f"{args.rounds} rounds, median\n", flush=True)
        results = await measure_throughput(setup, chosen, args)
        print_throughput(results, chosen, args)
    if args.latency:
        print_latency(await measure_latency(setup, args), args)
    if args.profile:
        await profile_streamflow(setup, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--faust-records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated contenders: hand,hand-batch,quix,quix-eo,faust,"
                        "sf-alo,sf-eo,hand-batch-uvloop,sf-alo-uvloop,sf-eo-uvloop")
    parser.add_argument("--interval", type=float, default=1.0, help="streamflow checkpoint interval (throughput)")
    parser.add_argument("--latency", action="store_true", help="also measure end-to-end latency")
    parser.add_argument("--latency-rate", type=int, default=5_000, help="records/s produced in the latency runs")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-intervals", default="0.5,1,2",
                        type=lambda text: [float(x) for x in text.split(",")],
                        help="checkpoint intervals for streamflow exactly-once latency")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput table")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one bounded run of streamflow at-least-once and exactly-once")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--bootstrap", default=None, help="default: $KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--peer-python", default=None,
                        help="interpreter with quixstreams and faust (default: bench/.venv-peers)")
    args = parser.parse_args()
    with broker(args.bootstrap) as bootstrap:
        asyncio.run(run(args, bootstrap))


if __name__ == "__main__":
    main()
