"""The servers an example runs against: the user's, when the environment names them, or
the project's own, started here and stopped when ``stack`` closes."""

from __future__ import annotations

import os
from contextlib import ExitStack

from streamflow.devtools.kafka_broker import KafkaBroker
from streamflow.devtools.mariadb_server import MariaDbServer

__all__ = ["kafka_for_demo", "mysql_server_for_demo"]


def kafka_for_demo(stack: ExitStack) -> str:
    """``KAFKA_BOOTSTRAP_SERVERS``, or the bootstrap servers of a broker started now."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return bootstrap
    print("starting the project's Kafka broker (set KAFKA_BOOTSTRAP_SERVERS to use your own)")
    broker = KafkaBroker()
    stack.callback(broker.stop)
    return broker.start()


def mysql_server_for_demo(stack: ExitStack) -> str:
    """``MYSQL_URL`` (a server url, no database), or the url of a MariaDB started now."""
    url = os.environ.get("MYSQL_URL")
    if url:
        return url
    print("starting a MariaDB server (set MYSQL_URL=mysql://user:password@host:port/ to use your own)")
    server = MariaDbServer()
    stack.callback(server.stop)
    return server.start()
