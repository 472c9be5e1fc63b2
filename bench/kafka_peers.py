"""The peer contenders of the Kafka benchmarks, each run as a child process of
``kafka_pipeline.py``: Quix Streams and Faust (faust-streaming) doing Kafka -> map -> Kafka;
of ``workers.py``: Quix Streams doing Kafka -> parse -> group_by -> count -> Kafka
(``quix-count``; several processes in one consumer group scale it out); and of
``windows_kafka.py``: Quix Streams' tumbling window count and sum per key (``quix-window``); of
``keyed_count_kafka.py``: the count per message key, without ``group_by`` (``quix-key-count``).

It imports no streamflow, so it runs in the peers' own environment
(``bench/setup.sh`` makes ``bench/.venv-peers``). A child runs until the harness stops it
with SIGTERM once the output topic holds every record; it reports ``first`` (see
kafka_work.stamped) on stdout.

Usage (the harness does this):
    python kafka_peers.py quix|quix-count|quix-key-count|quix-window|faust --bootstrap HOST:PORT
    --input TOPIC --output TOPIC --group GROUP [--guarantee at-least-once|exactly-once]
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson  # noqa: E402

from kafka_work import report, stamped, transform  # noqa: E402


def _scratch_dir(prefix: str) -> str:
    """A temporary directory removed when the process exits (both peers exit normally
    on SIGTERM)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


def _quix_application(args: argparse.Namespace, scratch: str, *, auto_create_topics: bool) -> Any:
    """A Quix Application with the benchmarks' settings: offsets from the earliest, the
    command's group, guarantee and commit interval, state in a scratch directory."""
    from quixstreams import Application

    return Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        processing_guarantee=args.guarantee,
        state_dir=_scratch_dir(scratch),
        loglevel="WARNING",
        auto_create_topics=auto_create_topics,
    )


def run_quix(args: argparse.Namespace) -> None:
    """Quix Streams: one Application, one StreamingDataFrame, ``apply`` then ``to_topic``.

    Quix's defaults except: offsets read from the earliest, and a commit (its checkpoint:
    flush the producer, commit the consumer's offsets) every ``--commit-interval`` seconds,
    1 s like streamflow's checkpoints, instead of Quix's 5 s default.
    """
    app = _quix_application(args, "quix-bench-", auto_create_topics=False)
    source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.output, key_serializer="bytes", value_serializer="bytes")
    frame = app.dataframe(source)
    frame = frame.apply(stamped(transform))
    frame.to_topic(sink)
    report("ready")
    app.run()


def run_quix_count(args: argparse.Namespace) -> None:
    """Quix Streams, the scale-out benchmark's job: parse (orjson), ``group_by`` the user
    (Quix writes the records to a repartition topic and reads them back, as streamflow's
    exchange does), count per user in Quix's state (RocksDB), and write
    ``{"user", "count", "ts"}`` to ``--output``. Exactly-once (Kafka transactions, commit
    every ``--commit-interval`` seconds); several processes with the same ``--group``
    share the partitions, each with a state directory of its own."""
    app = _quix_application(args, "quix-count-", auto_create_topics=True)  # the repartition topic of group_by
    source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.output, key_serializer="str", value_serializer="bytes")  # key: group_by's user
    frame = app.dataframe(source)
    frame = frame.apply(stamped(orjson.loads))
    frame = frame.group_by(lambda record: record["user"], name="user")
    frame = frame.apply(_count_in_state, stateful=True)
    frame.to_topic(sink)
    report("ready")
    app.run()


def run_quix_key_count(args: argparse.Namespace) -> None:
    """Quix Streams, the state benchmark's job (bench/keyed_count_kafka.py): parse, count per
    message key (the input is keyed by user, so no ``group_by``: Quix's state is scoped to
    the message key, as streamflow's ``key_by`` scopes it in memory) in Quix's RocksDB
    state, ``{"user", "count", "ts"}`` to ``--output``. Exactly-once, a commit every
    ``--commit-interval`` seconds."""
    app = _quix_application(args, "quix-key-count-", auto_create_topics=True)  # (the state's changelog topic)
    source = app.topic(args.input, key_deserializer="str", value_deserializer="bytes")
    sink = app.topic(args.output, key_serializer="str", value_serializer="bytes")
    frame = app.dataframe(source)
    frame = frame.apply(stamped(orjson.loads))
    frame = frame.apply(_count_in_state, stateful=True)
    frame.to_topic(sink)
    report("ready")
    app.run()


def _count_in_state(record: dict, state) -> bytes:  # type: ignore[no-untyped-def, type-arg]
    """The user's records so far, kept in Quix's state (scoped to the message key)."""
    n = state.get("count", 0) + 1
    state.set("count", n)
    return orjson.dumps({"user": record["user"], "count": n, "ts": record["ts"]})


def run_quix_window(args: argparse.Namespace) -> None:
    """Quix Streams, the Kafka window benchmark's job (bench/windows_kafka.py): JSON values,
    ``tumbling_window`` of one minute with a grace of 500 ms over the message timestamps,
    ``agg(count=Count(), total=Sum("amount"))`` per message key (the user), ``final()``
    closing windows by the partition's event time (as a watermark does), results as JSON
    to ``--output``. Exactly-once, a commit every ``--commit-interval`` seconds."""
    from quixstreams.dataframe.windows import Count, Sum

    app = _quix_application(args, "quix-window-", auto_create_topics=True)  # (the window's changelog topic)
    source = app.topic(args.input, key_deserializer="bytes", value_deserializer="json")
    sink = app.topic(args.output, key_serializer="bytes", value_serializer="json")
    frame = app.dataframe(source)
    frame = frame.apply(stamped(lambda value: value))  # type: ignore[arg-type, return-value]  # reports `first`
    frame = (
        frame.tumbling_window(duration_ms=60_000, grace_ms=500)
        .agg(count=Count(), total=Sum("amount"))
        .final(closing_strategy="partition")
    )
    frame.to_topic(sink)
    report("ready")
    app.run()


def run_faust(args: argparse.Namespace) -> None:
    """Faust: one agent over the input topic, ``await sink.send(...)`` per event, the way
    Faust's documentation writes a stream processor. At-least-once (Faust's default: an
    offset is committed once its event is acknowledged), commits every
    ``--commit-interval`` seconds (Faust's default is 2.8 s), web server off, memory store.
    """
    import faust

    if args.guarantee != "at-least-once":
        raise SystemExit("the Faust contender runs at-least-once only")
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=_scratch_dir("faust-bench-"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        broker_commit_interval=args.commit_interval,
        topic_partitions=4,
        producer_linger=args.linger_ms / 1000,
        key_serializer="raw",
        value_serializer="raw",
    )
    source = app.topic(args.input, key_type=bytes, value_type=bytes)
    sink = app.topic(args.output, key_type=bytes, value_type=bytes)
    mapped = stamped(transform)

    @app.agent(source)
    async def process(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            await sink.send(key=event.key, value=mapped(event.value))

    report("ready")
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=("quix", "quix-count", "quix-key-count", "quix-window", "faust"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--guarantee", default="at-least-once", choices=("at-least-once", "exactly-once"))
    parser.add_argument("--commit-interval", type=float, default=1.0)
    parser.add_argument("--linger-ms", type=float, default=0.0, help="Faust: producer linger")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    peers = {"quix": run_quix, "quix-count": run_quix_count, "quix-key-count": run_quix_key_count,
             "quix-window": run_quix_window, "faust": run_faust}
    peers[args.peer](args)


if __name__ == "__main__":
    main()
