"""Kafka -> transform -> Kafka, exactly once, with a crash in the middle.

What it shows:
- KafkaSource reading a 4-partition topic with ``read_committed``; its offsets live only
  in the checkpoint (operator state), never in the consumer group;
- a transform (parse, skip malformed events with a log line and a metric, convert the
  amount to cents) and a per-user running total in keyed ValueState;
- an exactly-once KafkaSink: one Kafka transaction per subtask and checkpoint, prepared
  on the barrier and committed when the checkpoint completes;
- a crash on purpose midway: the job restores from the latest checkpoint, commits what
  that checkpoint prepared, aborts what it did not, and finishes;
- the check: a ``read_committed`` consumer of the output topic sees exactly what a
  failure-free run of the same pipeline wrote, record for record.

One command, on the project's own Kafka broker (fetched from Maven Central and started on
a free 127.0.0.1 port, stopped at the end)::

    ./dev.sh example kafka_to_kafka

With a broker of your own (transactions enabled): ``KAFKA_BOOTSTRAP_SERVERS=host:port
python examples/kafka_to_kafka.py``. The pipeline alone runs under the command line too:
``streamflow run examples.kafka_to_kafka:build --checkpoint-interval 1`` with
``KAFKA_BOOTSTRAP_SERVERS``, ``INPUT_TOPIC`` and ``OUTPUT_TOPIC`` set.

The source is bounded here (it stops at the end offsets seen at start) so that the demo
ends and can be checked; a service would leave ``bounded`` off and run until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from streamflow import ErrorPolicy, KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.devtools.demo import kafka_for_demo
from streamflow.state import ValueStateDescriptor
from streamflow.testing.kafka import create_topic, produce, read_committed, unique_topic

EVENTS = Path(__file__).parent / "data" / "events.jsonl"
PARTITIONS = 4


def parse(line: str) -> dict[str, Any]:
    """A JSON event with a str ``user`` and a numeric ``amount``; anything else is malformed."""
    event = orjson.loads(line)
    if not isinstance(event.get("user"), str):
        raise ValueError(f"event has no 'user' string: {line!r}")
    amount = event.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"event 'amount' is not a number: {amount!r}")
    return {"user": event["user"], "type": event["type"], "ts": event["ts"], "cents": round(amount * 100)}


class RunningTotal(KeyedProcessFunction):
    """Per user: the event's sequence number and the revenue so far, added to each event."""

    def open(self, ctx: Any) -> None:
        self.totals = ctx.get_state(ValueStateDescriptor("totals", default=(0, 0)))

    def process_element(self, event: dict[str, Any], ctx: Any, out: Any) -> None:
        seen, cents = self.totals.value()
        seen += 1
        if event["type"] == "purchase":
            cents += event["cents"]
        self.totals.update((seen, cents))
        out.collect({**event, "seq": seen, "revenue_cents": cents})


class CrashOnce:
    """Fails the job attempt once, when a subtask has passed ``at`` records (the "once"
    lives on the class: every subtask has its own copy of the function)."""

    crashed = False

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0

    async def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seen += 1
        if self.seen % 200 == 0:
            await asyncio.sleep(0.1)  # like an enrichment call: the run spans several checkpoints
        if not CrashOnce.crashed and self.seen >= self.at:
            CrashOnce.crashed = True
            raise RuntimeError(f"crash on purpose after {self.seen} records (the demo's injected failure)")
        return event


def build(
    env: StreamEnvironment,
    *,
    bootstrap: str | None = None,
    input_topic: str | None = None,
    output_topic: str | None = None,
    crash_at: int | None = None,
) -> None:
    """Declare the pipeline on ``env`` (also the ``streamflow run`` entry point, which
    takes the broker and topics from the environment variables)."""
    bootstrap = bootstrap or os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    input_topic = input_topic or os.environ["INPUT_TOPIC"]
    output_topic = output_topic or os.environ["OUTPUT_TOPIC"]
    stream = (
        env.from_source(
            KafkaSource(bootstrap, topics=input_topic, bounded=True, value_deserializer="str"),
            name="orders",
        )
        .uid("orders")
        .map(parse)
        .name("parse")
        .uid("parse")
        .with_error_policy(ErrorPolicy.skip(on=(ValueError,)))
    )
    if crash_at is not None:
        stream = stream.map(CrashOnce(crash_at)).name("chaos").uid("chaos")
    (
        stream.key_by(lambda e: e["user"])
        .process(RunningTotal())
        .name("running-total")
        .uid("running-total")
        .sink_to(
            KafkaSink(
                bootstrap,
                output_topic,
                delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
                transactional_id_prefix=output_topic,  # unique per job on the cluster
                key=lambda e: e["user"],
                key_serializer="str",
                value_serializer="json",
            ),
            name="enriched",
        )
        .uid("enriched")
    )


async def fill_input(bootstrap: str, topic: str) -> int:
    lines = EVENTS.read_bytes().splitlines()
    await create_topic(bootstrap, topic, partitions=PARTITIONS)
    keys = []
    for line in lines:  # keyed by user where there is one, so a user's events stay in order
        try:
            keys.append(str(orjson.loads(line).get("user", "")).encode())
        except orjson.JSONDecodeError:
            keys.append(b"")
    await produce(bootstrap, topic, lines, keys=keys)
    return len(lines)


async def committed_output(bootstrap: str, topic: str) -> Counter[bytes]:
    """What a read_committed consumer sees, as a multiset of (canonical JSON) values."""
    return Counter(
        orjson.dumps(orjson.loads(r.value), option=orjson.OPT_SORT_KEYS)
        for r in await read_committed(bootstrap, topic)
    )


async def run(bootstrap: str, out: Path, parallelism: int) -> bool:
    input_topic, output_topic, reference_topic = (
        unique_topic("orders"), unique_topic("enriched"), unique_topic("enriched-reference"))
    for topic in (output_topic, reference_topic):
        await create_topic(bootstrap, topic, partitions=PARTITIONS)
    count = await fill_input(bootstrap, input_topic)
    print(f"0/2 wrote {count} events to {input_topic!r} ({PARTITIONS} partitions) on {bootstrap}")

    print(f"1/2 Kafka -> transform -> Kafka exactly once, checkpoints every 1 s, a crash midway -> {output_topic!r}")
    env = StreamEnvironment(parallelism=parallelism)
    env.enable_checkpointing(1.0, directory=out / "checkpoints")
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=3, delay=0.5))
    env.set_metrics_interval(2.0)
    build(env, bootstrap=bootstrap, input_topic=input_topic, output_topic=output_topic,
          crash_at=count // 2 // parallelism)
    result = await env.execute("kafka-to-kafka")
    print(f"    finished after {result.attempts} attempts, restored from checkpoint {result.restored_from}, "
          f"{result.checkpoints_completed} checkpoints")

    print(f"2/2 the same pipeline without failures -> {reference_topic!r}")
    reference = StreamEnvironment(parallelism=parallelism)
    reference.enable_checkpointing(1.0, directory=out / "reference-checkpoints")
    build(reference, bootstrap=bootstrap, input_topic=input_topic, output_topic=reference_topic)
    await reference.execute("kafka-to-kafka-reference")

    got, want = await committed_output(bootstrap, output_topic), await committed_output(bootstrap, reference_topic)
    if got == want:
        print(f"CHECK OK: read_committed sees the failure-free run's {sum(got.values())} records, "
              "each exactly once")
        return True
    missing, extra = want - got, got - want
    print(f"CHECK FAILED: {sum(missing.values())} records missing, {sum(extra.values())} extra or duplicated; "
          f"e.g. {list(missing)[:2]} vs {list(extra)[:2]}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the checkpoints")
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("streamflow.job").setLevel(logging.INFO)
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-kafka-"))
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        bootstrap = kafka_for_demo(stack)
        return 0 if asyncio.run(run(bootstrap, out, args.parallelism)) else 1


if __name__ == "__main__":
    sys.exit(main())
