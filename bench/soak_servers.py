"""The soak's servers, its input topic, and each round's output (a topic or a database).

The Kafka broker and the MariaDB come from ``KAFKA_BOOTSTRAP_SERVERS`` / ``MYSQL_URL``
when set, else the soak starts its own (streamflow.devtools, as the tests do). MariaDB is
started, killed and restarted from one thread that lives as long as the soak: the devtools
servers die with the thread that started them (PR_SET_PDEATHSIG), so a pool thread that
comes and goes must not be the one.

Setting up (topics, databases, the input) uses streamflow's test kit; reading the output
back never does (``soak_readers.py``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import pymysql
from aiokafka.errors import KafkaError

from streamflow.devtools.kafka_broker import KafkaBroker, KafkaBrokerError
from streamflow.devtools.mariadb_server import MariaDbServer
from streamflow.testing.kafka import create_topic, produce, unique_topic
from streamflow.testing.mysql import create_database, drop_database, prepared_xids_of

from soak_data import Result, SoakInput, parse_input
from soak_job import JOB_NAME, SINK_UID, TABLE
from soak_readers import CommittedKafkaOutput, mysql_count, mysql_rows

INPUT_PARTITIONS = 4
OUTPUT_PARTITIONS = 4


class SoakOutput(Protocol):
    """Where one round's job writes, and the independent view of what it committed."""

    where: str
    job_args: list[str]

    async def committed_count(self) -> int | None:
        """Committed results so far (None: the server did not answer)."""

    async def read_all(self) -> list[Result]:
        """Everything committed, once the job has finished."""

    async def leftovers(self) -> list[str]:
        """Transactions of the job still open after it finished."""

    async def close(self, keep: bool) -> None:
        """Release the readers; drop the output unless ``keep`` (a failed round's)."""


class KafkaOutput:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.where = f"topic {topic}"
        self.job_args = ["--sink", "kafka", "--output-topic", topic]
        self.reader = CommittedKafkaOutput(bootstrap, topic, OUTPUT_PARTITIONS)

    async def committed_count(self) -> int | None:
        try:
            return await self.reader.catch_up()
        except (KafkaError, TimeoutError):  # progress unknown; the final read decides
            return None

    async def read_all(self) -> list[Result]:
        return await self.reader.read_to_end()

    async def leftovers(self) -> list[str]:
        return []  # read_all proved every transaction closed

    async def close(self, keep: bool) -> None:
        await self.reader.__aexit__(None, None, None)


class MySqlOutput:
    def __init__(self, url: str) -> None:
        self.url = url
        self.where = f"database {url}"
        self.job_args = ["--sink", "mysql", "--mysql-url", url]

    async def committed_count(self) -> int | None:
        try:
            return await asyncio.to_thread(mysql_count, self.url, TABLE)
        except pymysql.MySQLError:  # the database restarting: progress unknown, not an error
            return None

    async def read_all(self) -> list[Result]:
        return await asyncio.to_thread(mysql_rows, self.url, TABLE)

    async def leftovers(self) -> list[str]:
        xids = await asyncio.to_thread(prepared_xids_of, self.url, JOB_NAME, SINK_UID)
        return [f"prepared XA transaction {xid} left on the server" for xid in xids]

    async def close(self, keep: bool) -> None:
        if not keep:
            await asyncio.to_thread(drop_database, self.url)


class Servers:
    """The broker, the MySQL server, and the restarts of the soak's own MariaDB."""

    def __init__(self, bootstrap: str, mysql_server: str | None, mariadb: MariaDbServer | None,
                 db_thread: ThreadPoolExecutor) -> None:
        self.bootstrap = bootstrap
        self.mysql_server = mysql_server
        self._mariadb = mariadb
        self._db_thread = db_thread

    async def new_output(self, target: str, name: str) -> SoakOutput:
        if target == "kafka":
            topic = unique_topic(name)
            await create_topic(self.bootstrap, topic, partitions=OUTPUT_PARTITIONS)
            output = KafkaOutput(self.bootstrap, topic)
            await output.reader.__aenter__()
            return output
        assert self.mysql_server is not None
        return MySqlOutput(await asyncio.to_thread(create_database, self.mysql_server, "soak"))

    async def restart_database(self, kind: str, outage: float) -> float:
        """Stop the soak's MariaDB (``crash``: SIGKILL; ``clean``: SIGTERM), wait
        ``outage`` seconds, start it again on the same data and port; when it answers,
        return the monotonic time."""
        server = self._mariadb
        if server is None:
            raise RuntimeError("database restarts need the soak's own MariaDB")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._db_thread, server.kill if kind == "crash" else server.stop)
        await asyncio.sleep(outage)
        await loop.run_in_executor(self._db_thread, server.start)
        return time.monotonic()


async def fill_input(bootstrap: str, soak_input: SoakInput, name: str) -> str:
    """A new topic holding the input, partition p the lines of ``soak_input.partitions[p]``."""
    topic = unique_topic(name)
    await create_topic(bootstrap, topic, partitions=len(soak_input.partitions))
    for partition, lines in enumerate(soak_input.partitions):
        await produce(bootstrap, topic, [line.encode() for line in lines],
                      keys=[parse_input(line)[0].encode() for line in lines], partition=partition)
    return topic


def _start_broker() -> KafkaBroker:
    print("soak: starting a Kafka broker (set KAFKA_BOOTSTRAP_SERVERS to use your own)", flush=True)
    broker = KafkaBroker()
    try:
        broker.start()
    except KafkaBrokerError:  # another process took a free port before the JVM bound it
        broker = KafkaBroker()
        broker.start()
    return broker


@asynccontextmanager
async def open_servers(*, need_mysql: bool, db_restarts: bool, workdir: Path) -> AsyncIterator[Servers]:
    """The servers for the soak, stopped at the end if the soak started them."""
    loop = asyncio.get_running_loop()
    server_thread = ThreadPoolExecutor(1, thread_name_prefix="soak-servers")  # see the module docstring
    broker: KafkaBroker | None = None
    mariadb: MariaDbServer | None = None
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = await loop.run_in_executor(server_thread, _start_broker)
            bootstrap = broker.bootstrap_servers
        mysql_server = os.environ.get("MYSQL_URL") if need_mysql else None
        if need_mysql and not mysql_server:
            print("soak: starting MariaDB (set MYSQL_URL=mysql://user:password@host:port/ to use your own)",
                  flush=True)
            # A data directory of the soak's: a restart keeps the databases and XA state.
            mariadb = MariaDbServer(workdir / "mariadb" if db_restarts else None)
            mysql_server = await loop.run_in_executor(server_thread, mariadb.start)
        yield Servers(bootstrap, mysql_server, mariadb, server_thread)
    finally:
        for server in (mariadb, broker):
            if server is not None:
                await loop.run_in_executor(server_thread, server.stop)
        server_thread.shutdown()
