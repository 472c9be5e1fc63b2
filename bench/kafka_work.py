"""The data and the work of the Kafka benchmark, shared by every contender.

This module imports neither streamflow nor any peer framework, so the harness
(``kafka_pipeline.py``, project environment) and the peer children (``kafka_peers.py``,
which may run in ``bench/.venv-peers``) run exactly the same map on exactly the same bytes.

A child tells the harness what happened with one JSON object a line (:func:`report`) on a
pipe of its own (file descriptor ``$KAFKA_BENCH_REPORT_FD``), not on stdout: Faust's worker
takes stdout over for its logging.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import orjson

USERS = 10_000
EVENTS = ("click", "view", "purchase", "refund", "signup")
RECORD_BYTES = 100


def key_at(i: int) -> bytes:
    """The key of record ``i``: its user id, so that every producer (aiokafka, librdkafka)
    puts it in the same partition by the same murmur2 hash."""
    return b"u%05d" % ((i * 7919) % USERS)


def value_at(i: int, ts: int | None = None) -> bytes:
    """The ~100-byte JSON value of record ``i``. ``ts`` defaults to a fixed, ``i``-derived
    timestamp; the latency run passes the send time in microseconds since the epoch.

    Copied out of orjson's result: orjson >= 3.12 over-allocates the bytes it returns
    (see bench/RESULTS.md), and the producer may hold many of them at once.
    """
    body = {
        "user": key_at(i).decode(),
        "event": EVENTS[i % len(EVENTS)],
        "amount": ((i * 31337) % 100_000) / 100,
        "ts": 1_700_000_000_000_000 + i if ts is None else ts,
        "pad": "",
    }
    body["pad"] = "x" * max(0, RECORD_BYTES - len(orjson.dumps(body)))
    return bytes(memoryview(orjson.dumps(body)))


def transform(raw: bytes) -> bytes:
    """The map every contender runs: parse, change two fields, serialise."""
    record = orjson.loads(raw)
    record["amount"] = record["amount"] * 1.1
    record["event"] = record["event"].upper()
    return orjson.dumps(record)


def sent_at(raw: bytes) -> float:
    """The send time (epoch seconds) a latency-run record carries, from an output value."""
    return int(orjson.loads(raw)["ts"]) / 1e6


REPORT_FD_VARIABLE = "KAFKA_BENCH_REPORT_FD"


def report(event: str, **fields: object) -> None:
    """One line to the harness: ``{"event": ..., "t": <epoch seconds>, ...}``. Epoch time,
    because the harness compares it with its own clock from another process. Without a
    report pipe (a child run by hand) the line goes to file descriptor 1, whatever
    ``sys.stdout`` has become."""
    line = (json.dumps({"event": event, "t": time.time(), **fields}) + "\n").encode()
    os.write(int(os.environ.get(REPORT_FD_VARIABLE, "1")), line)


def stamped(fn: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``fn`` that reports ``first`` on its first call: the moment a contender, past its
    start-up, group join and partition assignment, starts doing the work. Every contender
    runs its map through this wrapper, so each pays the same per-record check."""
    fired = False

    def mapped(raw: bytes) -> bytes:
        nonlocal fired
        if not fired:
            fired = True
            report("first")
        return fn(raw)

    return mapped
