"""Kafka -> async enrichment over HTTP, 100 calls in flight -> Kafka, exactly once.

What it shows:
- ``map_async``: each event is enriched by an HTTP call to a user service, with up to
  100 calls in flight per subtask instead of one at a time (a 5-50 ms call would cap a
  subtask at ~35 events/s otherwise); ``ordered="per_key"`` after ``key_by(user)``: a
  user's calls never overlap and their results keep the user's order;
- an :class:`~streamflow.AsyncFunction` with a client session opened per subtask and
  closed at the end, a timeout per call, and retries with exponential backoff for the
  service's occasional errors (HTTP 503);
- exactly once through a crash: the inputs of the calls in flight at a checkpoint are in
  the checkpoint and are called again after the restore (the service is asked twice for
  some users, harmless for a lookup: an async function must tolerate that), and the
  exactly-once KafkaSink commits each result once;
- the check: a ``read_committed`` consumer sees what a failure-free run wrote.

The user service is a small aiohttp server the example starts on 127.0.0.1 (a free
port): it answers ``GET /users/<id>`` after a random 5-50 ms, and fails 2% of the calls.
One command, on the project's own Kafka broker (or ``KAFKA_BOOTSTRAP_SERVERS``)::

    ./dev.sh example async_enrichment
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import zlib
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from streamflow import AsyncFunction, AsyncRetry, RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.devtools.demo import kafka_for_demo
from streamflow.testing.kafka import create_topic, produce, read_committed, unique_topic

EVENTS = Path(__file__).parent / "data" / "events.jsonl"
PARTITIONS = 4
TIERS = ("free", "plus", "pro")


# -- the user service (what a real job would call over the network) -----------------------


async def start_user_service(error_rate: float = 0.02) -> tuple[web.AppRunner, str]:
    """An HTTP service on 127.0.0.1 answering ``GET /users/<id>`` after 5-50 ms, with
    HTTP 503 for ``error_rate`` of the calls. Returns its runner and base url."""
    calls = Counter[str]()

    async def user(request: web.Request) -> web.Response:
        user_id = request.match_info["user"]
        calls[user_id] += 1
        await asyncio.sleep(random.uniform(0.005, 0.050))
        if random.random() < error_rate:
            return web.Response(status=503, text="busy, try again")
        digest = zlib.crc32(user_id.encode())  # the same profile for a user, every time
        return web.json_response({"tier": TIERS[digest % 3], "country": ("DE", "FR", "US", "JP")[digest % 4]})

    app = web.Application()
    app.router.add_get("/users/{user}", user)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


# -- the pipeline ----------------------------------------------------------------------------


class ServiceError(Exception):
    """The user service answered with an error status (retried)."""


class EnrichWithUser(AsyncFunction):
    """Adds the user's tier and country from the user service to each event."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def open(self, ctx: Any) -> None:
        # One session per subtask: a pool of connections to the service.
        self.session = aiohttp.ClientSession(self.base_url, timeout=aiohttp.ClientTimeout(total=2.0))

    async def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        async with self.session.get(f"/users/{event['user']}") as response:
            if response.status != 200:
                raise ServiceError(f"user service answered {response.status} for {event['user']!r}")
            profile = await response.json()
        return {**event, **profile}

    async def close(self) -> None:
        await self.session.close()


class CrashOnce:
    """Fails the job attempt once, at the first event after a completed checkpoint (the
    demo's injected failure: a restore from a checkpoint taken with calls in flight)."""

    crashed = False

    def __init__(self) -> None:
        self.seen = 0
        self.checkpointed = False

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        self.checkpointed = True

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seen += 1
        if not CrashOnce.crashed and self.checkpointed:
            CrashOnce.crashed = True
            raise RuntimeError(f"crash on purpose after {self.seen} events (the demo's injected failure)")
        return event


def build(env: StreamEnvironment, *, bootstrap: str, input_topic: str, output_topic: str, service: str,
          crash: bool = False) -> None:
    # Small source batches: a barrier waits behind the records queued in front of a busy
    # async operator, so fewer records per batch keep checkpoints quick under backpressure.
    env.set_source_batch_size(100)
    enriched = (
        env.from_source(KafkaSource(bootstrap, topics=input_topic, bounded=True, value_deserializer="json"),
                        name="events").uid("events")
        .key_by(lambda e: e["user"])
        .map_async(
            EnrichWithUser(service),
            capacity=100,
            timeout=2.0,
            ordered="per_key",
            retry=AsyncRetry.exponential_backoff(5, initial_delay=0.01, multiplier=2.0, max_delay=0.5),
        )
        .uid("enrich-user")
    )
    if crash:
        enriched = enriched.map(CrashOnce()).uid("chaos")
    enriched.sink_to(
        KafkaSink(bootstrap, output_topic, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                  transactional_id_prefix=output_topic, key=lambda e: e["user"], key_serializer="str",
                  value_serializer="json"),
        name="enriched-events",
    ).uid("enriched-events")


# -- the demo ---------------------------------------------------------------------------------


def well_formed(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """The events with a user (the bundled file has a few malformed lines on purpose:
    kafka_to_kafka.py skips them), and their users as Kafka keys."""
    kept, users = [], []
    for line in lines:
        try:
            user = orjson.loads(line).get("user")
        except orjson.JSONDecodeError:
            continue
        if isinstance(user, str):
            kept.append(line)
            users.append(user.encode())
    return kept, users


async def committed_output(bootstrap: str, topic: str) -> Counter[bytes]:
    return Counter(
        orjson.dumps(orjson.loads(r.value), option=orjson.OPT_SORT_KEYS) for r in await read_committed(bootstrap, topic)
    )


def describe_calls(metrics: dict[str, Any]) -> str:
    calls = [m["async"] for name, m in metrics["operators"].items() if name.startswith("enrich-user[")]
    p99 = max((c["latency_p99"] or 0.0) for c in calls)
    return (f"{sum(c['calls'] for c in calls)} calls, {sum(c['retries'] for c in calls)} retries, "
            f"{sum(c['restored_inputs'] for c in calls)} inputs in flight at the checkpoint called again, "
            f"p99 {p99 * 1000:.0f} ms")


async def run(bootstrap: str, out: Path, parallelism: int, events: int) -> bool:
    runner, service = await start_user_service()
    try:
        input_topic, output_topic, reference_topic = (
            unique_topic("events"), unique_topic("enriched"), unique_topic("enriched-reference"))
        for topic in (input_topic, output_topic, reference_topic):
            await create_topic(bootstrap, topic, partitions=PARTITIONS)
        lines, users = well_formed(EVENTS.read_bytes().splitlines()[:events])
        await produce(bootstrap, input_topic, lines, keys=users)
        print(f"0/2 {len(lines)} events in {input_topic!r}; the user service listens on {service}")

        print(f"1/2 Kafka -> map_async(user service, 100 in flight) -> Kafka exactly once, a crash midway")
        env = StreamEnvironment(parallelism=parallelism)
        env.enable_checkpointing(0.3, directory=out / "checkpoints")
        env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=3, delay=0.2))
        build(env, bootstrap=bootstrap, input_topic=input_topic, output_topic=output_topic, service=service,
              crash=True)
        result = await env.execute("async-enrichment")
        print(f"    finished after {result.attempts} attempts, restored from checkpoint {result.restored_from}; "
              f"last attempt: {describe_calls(result.metrics)}")

        print(f"2/2 the same pipeline without failures -> {reference_topic!r}")
        reference = StreamEnvironment(parallelism=parallelism)
        reference.enable_checkpointing(0.5, directory=out / "reference-checkpoints")
        build(reference, bootstrap=bootstrap, input_topic=input_topic, output_topic=reference_topic, service=service)
        result = await reference.execute("async-enrichment-reference")
        print(f"    {describe_calls(result.metrics)}")
    finally:
        await runner.cleanup()
    got, want = await committed_output(bootstrap, output_topic), await committed_output(bootstrap, reference_topic)
    if got == want and sum(got.values()) == len(lines):
        print(f"CHECK OK: read_committed sees the failure-free run's {sum(got.values())} enriched events, "
              "each exactly once")
        return True
    missing, extra = want - got, got - want
    print(f"CHECK FAILED: {sum(got.values())} records, the reference {sum(want.values())}, input {len(lines)}: "
          f"{sum(missing.values())} missing, {sum(extra.values())} extra or duplicated")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the checkpoints")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--events", type=int, default=10_000, help="how many of the bundled events to enrich")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("streamflow.job").setLevel(logging.INFO)
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-async-"))
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        bootstrap = kafka_for_demo(stack)
        return 0 if asyncio.run(run(bootstrap, out, args.parallelism, args.events)) else 1


if __name__ == "__main__":
    sys.exit(main())
