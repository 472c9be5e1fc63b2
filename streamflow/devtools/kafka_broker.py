"""A real single-node Apache Kafka broker for development, tests and benchmarks.

The broker is the genuine JVM one: its jars come from Maven Central
(``org.apache.kafka:kafka_2.13`` and its dependencies) through Maven, once, into a cache
directory. :class:`KafkaBroker` formats KRaft storage, starts one combined
broker/controller on free 127.0.0.1 ports with transactions usable on one node, waits
until it answers a transactional producer, and stops it again.

Kafka-API look-alike brokers are not a substitute: some deliver aborted records to
``read_committed`` consumers, which would make every exactly-once test meaningless.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import fcntl
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from streamflow.devtools.processes import ServerProcess, die_with_parent, free_port, port_open

__all__ = ["KAFKA_VERSION", "KafkaBroker", "KafkaBrokerError", "cache_dir", "ensure_kafka"]

KAFKA_VERSION = "3.9.1"
"""Pinned on purpose. Kafka 4.x removes the protocol versions older than 2.1 (KIP-896)
and turns on transactions version 2 (KIP-890), which bumps the producer epoch on every
transaction. aiokafka speaks only v0 of InitProducerId and EndTxn, and our exactly-once
sink resumes a prepared transaction after a crash by its producer id and epoch, so the
epoch must stay fixed for the life of a transaction. 3.9 is the last line with KRaft
production-ready and the old transaction protocol."""

_SLF4J_BINDING = ("org.slf4j", "slf4j-reload4j", "1.7.36")  # the log4j 1 API 3.9 logs through

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.streamflow</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>{slf4j[0]}</groupId><artifactId>{slf4j[1]}</artifactId>
      <version>{slf4j[2]}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


class KafkaBrokerError(RuntimeError):
    """The broker could not be fetched or started; the message says what to do."""


def cache_dir() -> Path:
    """Where the broker's jars are kept between runs (``$STREAMFLOW_CACHE`` or
    ``~/.cache/streamflow``)."""
    root = os.environ.get("STREAMFLOW_CACHE") or Path.home() / ".cache" / "streamflow"
    return Path(root) / f"kafka-{KAFKA_VERSION}"


def ensure_kafka(progress: Callable[[str], None] | None = None) -> Path:
    """Return the directory holding the broker's jars, fetching them with Maven first if
    they are not cached. Safe to call from several processes at once (a file lock)."""
    say = progress or _stderr
    home = cache_dir()
    libs = home / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():  # another process fetched it while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaBrokerError(
                "Maven (mvn) is needed to fetch the Kafka broker from Maven Central: install "
                "it (apt-get install maven), or point KAFKA_BOOTSTRAP_SERVERS at a running broker"
            )
        (home / "pom.xml").write_text(_POM.format(version=KAFKA_VERSION, slf4j=_SLF4J_BINDING))
        shutil.rmtree(libs, ignore_errors=True)
        say(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} (about 50 MB, once)")
        started = time.monotonic()
        result = subprocess.run(
            [mvn, "-B", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise KafkaBrokerError(
                f"Maven could not fetch org.apache.kafka:kafka_2.13:{KAFKA_VERSION} "
                f"(exit {result.returncode}); is Maven Central reachable?\n{result.stdout[-3000:]}"
                f"{result.stderr[-3000:]}"
            )
        done.write_text(KAFKA_VERSION)
        say(f"fetched Kafka {KAFKA_VERSION} ({len(list(libs.glob('*.jar')))} jars) in "
            f"{time.monotonic() - started:.0f} s")
        return libs


class KafkaBroker(ServerProcess):
    """One KRaft broker+controller process on 127.0.0.1.

    ``data_dir`` keeps the log between :meth:`stop` and :meth:`start` (a restart keeps
    topics, offsets and transactions, and the same ports); without it a temporary
    directory is used and removed on :meth:`stop`. ``config`` overrides broker settings.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        config: Mapping[str, str] | None = None,
        heap: str = "1g",
    ) -> None:
        super().__init__(data_dir, "streamflow-kafka-")
        self.port = port or free_port()
        self.controller_port = free_port(avoid=self.port)
        self._config = dict(config or {})
        self._heap = heap

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def properties(self) -> dict[str, str]:
        """The broker settings: one node, transactions and group offsets usable with
        replication factor 1, quick to start, no topic created by accident."""
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            "num.partitions": "4",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A topic must be created on purpose: a typo should be an error, not a new topic.
            "auto.create.topics.enable": "false",
            # Abort transactions past their timeout within a second (default 10 s), so
            # tests of an expired transaction are quick.
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        }
        settings.update(self._config)
        return settings

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker and return its bootstrap servers once a transactional
        producer can initialise against it."""
        if self._process is not None:
            raise KafkaBrokerError("the broker is already running")
        libs = ensure_kafka()
        java = shutil.which("java")
        if java is None:
            raise KafkaBrokerError("Java 17 or newer is needed to run the Kafka broker")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        log4j = self.data_dir / "log4j.properties"
        log4j.write_text(_LOG4J.format(log_file=self.log_file))
        classpath = f"{libs}/*"
        jvm = [java, f"-Xmx{self._heap}", "-Xms256m", "-Djava.awt.headless=true",
               f"-Dlog4j.configuration=file:{log4j}", "-cp", classpath]
        if not (self.data_dir / "log" / "meta.properties").exists():
            cluster_id = _cluster_id()
            subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
                check=True, capture_output=True,
            )
        console = open(self.data_dir / "console.log", "ab")
        with console:
            self._process = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(config)],
                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self._process is None or self._process.poll() is not None:
                raise KafkaBrokerError(f"the Kafka broker exited at start-up; see {self.log_file}"
                                       f" and {self.data_dir / 'console.log'}")
            if time.monotonic() > deadline:
                raise KafkaBrokerError(f"the Kafka broker did not listen within {timeout:.0f} s; "
                                       f"see {self.log_file}")
            time.sleep(0.1)
        # A thread of its own: start() is synchronous but may be called under a running loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _warm_up(self.bootstrap_servers, deadline)).result()


async def _warm_up(bootstrap: str, deadline: float) -> None:
    """Initialise and commit one transaction, so the transaction-state and offsets topics
    exist before the first test: their creation otherwise lands inside a timed test."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    while True:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id="streamflow-warm-up",
            request_timeout_ms=10_000,
        )
        try:
            await producer.start()
            await producer.begin_transaction()
            await producer.commit_transaction()
            return
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise KafkaBrokerError(f"the Kafka broker at {bootstrap} did not accept a "
                                       f"transaction in time: {exc!r}") from exc
            await asyncio.sleep(0.5)
        finally:
            await producer.stop()


def _cluster_id() -> str:
    """A random KRaft cluster id (URL-safe base64 of 16 bytes) that does not start with
    '-': StorageTool would read ``-t -abc...`` as an unknown option and fail the format
    (one id in 64), which is why Kafka's own Uuid.randomUuid skips such ids too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _stderr(message: str) -> None:
    print(f"streamflow: {message}", file=sys.stderr, flush=True)
