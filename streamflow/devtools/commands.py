"""``streamflow dev ...``: start the real servers the examples and tests use, in the
foreground, until Ctrl-C.

    streamflow dev kafka [--port 9092] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from streamflow.devtools.kafka_broker import KAFKA_VERSION, KafkaBroker


def add_dev_commands(commands: Any) -> None:
    """Register ``dev`` and its sub-commands on the root parser's sub-parsers."""
    dev = commands.add_parser("dev", help="run a development server (a real Kafka broker)")
    servers = dev.add_subparsers(dest="server", required=True)
    kafka = servers.add_parser(
        "kafka", help=f"run a single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) on 127.0.0.1"
    )
    kafka.add_argument("--port", type=int, default=9092, help="client port (0: a free one)")
    kafka.add_argument(
        "--data-dir", type=Path, default=None,
        help="keep topics and offsets here across restarts (default: a temporary directory)",
    )


def run_dev(args: argparse.Namespace) -> int:
    """Start the server, print how to reach it, and wait for Ctrl-C or SIGTERM."""
    broker = KafkaBroker(args.data_dir, port=args.port or None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bootstrap = broker.start()
    print(f"Kafka {KAFKA_VERSION} broker at {bootstrap} (log: {broker.log_file}); Ctrl-C stops it",
          flush=True)
    print(f"  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the JVM
        broker.stop()
    return 0
