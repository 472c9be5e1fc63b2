"""``streamflow dev ...``: start the real servers the examples and tests use, in the
foreground, until Ctrl-C.

    streamflow dev kafka [--port 9092] [--data-dir DIR]
    streamflow dev mariadb [--port 3306] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from streamflow.devtools.kafka_broker import KAFKA_VERSION, KafkaBroker
from streamflow.devtools.mariadb_server import MariaDbServer


def add_dev_commands(commands: Any) -> None:
    """Register ``dev`` and its sub-commands on the root parser's sub-parsers."""
    dev = commands.add_parser("dev", help="run a development server (a real Kafka broker or MariaDB)")
    servers = dev.add_subparsers(dest="server", required=True)
    kafka = servers.add_parser(
        "kafka", help=f"run a single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) on 127.0.0.1"
    )
    kafka.add_argument("--port", type=int, default=9092, help="client port (0: a free one)")
    kafka.add_argument(
        "--data-dir", type=Path, default=None,
        help="keep topics and offsets here across restarts (default: a temporary directory)",
    )
    mariadb = servers.add_parser("mariadb", help="run Debian's MariaDB server on 127.0.0.1 (user root, no password)")
    mariadb.add_argument("--port", type=int, default=3306, help="client port (0: a free one)")
    mariadb.add_argument("--data-dir", type=Path, default=None,
                         help="keep databases here across restarts (default: a temporary directory)")


def run_dev(args: argparse.Namespace) -> int:
    """Start the server, print how to reach it, and wait for Ctrl-C or SIGTERM."""
    server: KafkaBroker | MariaDbServer
    if args.server == "mariadb":
        server = MariaDbServer(args.data_dir, port=args.port or None)
        url = server.start()
        print(f"MariaDB at {url} (log: {server.log_file}); Ctrl-C stops it", flush=True)
        print(f"  export MYSQL_URL={url}", flush=True)
    else:
        server = KafkaBroker(args.data_dir, port=args.port or None)
        bootstrap = server.start()
        print(f"Kafka {KAFKA_VERSION} broker at {bootstrap} (log: {server.log_file}); Ctrl-C stops it",
              flush=True)
        print(f"  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the server
        server.stop()
    return 0
