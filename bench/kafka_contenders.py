"""The contenders of the Kafka benchmark that run in the project's environment, each as a
child process of ``kafka_pipeline.py``: the hand-written aiokafka loop (the baseline), the
same loop on aiokafka's batch API (a stronger reference), and streamflow at-least-once
and exactly-once.

A child consumes ``--input`` from the earliest offset into ``--output`` and reports on its
report pipe (kafka_work.report): ``first`` when its map first runs, and ``done`` when it
ends by itself. The harness decides when the output is complete and stops the child with
SIGTERM; a child never needs to know how many records there are.

Usage (the harness does this): python kafka_contenders.py hand|hand-batch|streamflow
    --bootstrap HOST:PORT --input TOPIC --output TOPIC --group GROUP [--loop uvloop] [options]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.partitioner import murmur2  # noqa: E402

import streamflow  # noqa: E402
from kafka_work import report, stamped, transform  # noqa: E402
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaOutput, KafkaSink, KafkaSource  # noqa: E402
from streamflow.errors import JobCancelledError  # noqa: E402

HAND_BATCH = 2000
HAND_LINGER_MS = 0
"""The hand loop's settings: records per getmany, and the producer's linger. Of batches of
1000, 2000 and 5000 with linger 0 or 5 ms, 2000 / 0 ms was as fast as any on the
development machine (the spread between settings was within the run-to-run noise).
aiokafka's producer is the bottleneck: about 12 us of CPU per send (murmur2 of the key in
Python, the accumulator, a future per record), so waiting (linger) buys nothing."""


async def hand_loop(args: argparse.Namespace) -> None:
    """The baseline: what a careful engineer writes with aiokafka and nothing else.

    getmany -> map every record -> send each (collecting the delivery futures) -> await
    them all -> commit the batch's next offsets. At-least-once: an offset is committed only
    after every output of the records before it is acknowledged.
    """
    consumer = AIOKafkaConsumer(
        args.input,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=args.linger_ms)
    await consumer.start()
    await producer.start()
    mapped = stamped(transform)
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=100, max_records=args.batch)
            if not fetched:
                continue
            deliveries = []
            for records in fetched.values():
                for record in records:
                    deliveries.append(await producer.send(args.output, mapped(record.value), key=record.key))
            for delivery in deliveries:
                await delivery
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
    finally:
        await producer.stop()
        await consumer.stop()


async def hand_batch_loop(args: argparse.Namespace) -> None:
    """A stronger reference than the baseline: the same loop written against aiokafka's
    batch API, as an engineer who profiled the baseline would. Per fetched batch: map each
    record, append it to a batch per output partition (Kafka's default partitioner,
    murmur2 of the key, hashes cached per key), send each batch whole, await the batches,
    commit. This skips aiokafka's per-record send path (a future, the partitioner and the
    accumulator per record), the bulk of the baseline's CPU time."""
    consumer = AIOKafkaConsumer(
        args.input,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0,
                                max_batch_size=128 * 1024)
    await consumer.start()
    await producer.start()
    count = len(await producer.partitions_for(args.output))
    partition_of: dict[bytes, int] = {}
    mapped = stamped(transform)
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=100, max_records=args.batch)
            if not fetched:
                continue
            batches: dict[int, Any] = {}
            deliveries = []
            for records in fetched.values():
                for record in records:
                    key = record.key
                    partition = partition_of.get(key)
                    if partition is None:
                        partition = partition_of[key] = (murmur2(key) & 0x7FFFFFFF) % count
                    value = mapped(record.value)
                    batch = batches.get(partition)
                    if batch is None:
                        batch = batches[partition] = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full
                        batch.close()
                        deliveries.append(await producer.send_batch(batch, args.output, partition=partition))
                        batch = batches[partition] = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
            for partition, batch in batches.items():
                batch.close()
                deliveries.append(await producer.send_batch(batch, args.output, partition=partition))
            for delivery in deliveries:
                await delivery
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
    finally:
        await producer.stop()
        await consumer.stop()


def streamflow_pipeline(args: argparse.Namespace) -> streamflow.StreamEnvironment:
    """KafkaSource -> map -> KafkaSink at parallelism 1 (one chained task, like the hand
    loop's one consumer and one producer), checkpoints every ``--interval`` s.

    The record carries its key through, as the hand loop does: the source hands out
    KafkaRecords, the map makes ``(key, transformed value)``, the sink writes both.
    """
    exactly_once = args.guarantee == "exactly-once"
    env = streamflow.StreamEnvironment(parallelism=1)
    env.enable_checkpointing(
        args.interval,
        streamflow.CheckpointingMode.EXACTLY_ONCE if exactly_once else streamflow.CheckpointingMode.AT_LEAST_ONCE,
        directory=args.checkpoint_dir,
    )
    source = KafkaSource(args.bootstrap, topics=args.input, group_id=args.group, bounded=args.bounded,
                         output=KafkaOutput.RECORD)
    sink = KafkaSink(
        args.bootstrap, args.output,
        delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE if exactly_once else DeliveryGuarantee.AT_LEAST_ONCE,
        key=_first, value_serializer=_second,
        transactional_id_prefix=args.group if exactly_once else None,
    )
    mapped = stamped(transform)
    (env.from_source(source, name="input").uid("input")
        .map(lambda record: (record.key, mapped(record.value))).name("transform")
        .sink_to(sink).uid("output"))
    return env


def _first(pair: tuple[bytes, bytes]) -> bytes:
    return pair[0]


def _second(pair: tuple[bytes, bytes]) -> bytes:
    return pair[1]


async def streamflow_job(args: argparse.Namespace) -> None:
    """Run the pipeline; with ``--bounded`` it ends at the input's end offsets (for
    exactly-once: after its final transaction is committed) and reports ``done`` with the
    number of checkpoints completed. SIGTERM cancels the job (open transactions aborted)."""
    client = streamflow_pipeline(args).execute_async("kafka-bench")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(client.cancel()))
    try:
        result = await client.wait()
    except JobCancelledError:
        return
    report("done", checkpoints=result.checkpoints_completed, attempts=result.attempts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("contender", choices=("hand", "hand-batch", "streamflow"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--guarantee", default="at-least-once", choices=("at-least-once", "exactly-once"))
    parser.add_argument("--interval", type=float, default=1.0, help="checkpoint interval (streamflow)")
    parser.add_argument("--bounded", action="store_true",
                        help="streamflow: stop at the end offsets seen at start (then report 'done')")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--batch", type=int, default=HAND_BATCH, help="hand loop: records per getmany")
    parser.add_argument("--linger-ms", type=int, default=HAND_LINGER_MS, help="hand loop: producer linger")
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"), help="the event loop to run on")
    args = parser.parse_args()
    run = {"hand": hand_loop, "hand-batch": hand_batch_loop, "streamflow": streamflow_job}[args.contender]
    with contextlib.ExitStack() as stack:
        if args.contender == "streamflow" and args.checkpoint_dir is None:  # fresh; removed at the end
            args.checkpoint_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="sf-kafka-bench-"))
        streamflow.run(run(args), loop=args.loop)  # asyncio.run, on the loop asked for


if __name__ == "__main__":
    main()
