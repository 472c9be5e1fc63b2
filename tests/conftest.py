"""Fixtures for the whole suite: the servers shared by the test session, and a private
registry of running jobs.

``kafka_bootstrap`` is a real Apache Kafka broker (``streamflow.devtools.kafka_broker``),
started on a free 127.0.0.1 port the first time a test asks for it and stopped at the end
of the session. ``KAFKA_BOOTSTRAP_SERVERS`` points the tests at an external broker instead
(it must allow transactions on one node and have automatic topic creation off).

``backend_factory`` runs a test once per state backend of ``STATE_BACKENDS``
(tests/contract/state_backends.py): it makes fresh ``StateBackend`` objects of that
kind, and the keyed backends they create are closed after the test.

``mysql_url`` is a fresh database of its own for the session, on a real MariaDB server
(``streamflow.devtools.mariadb_server``, Debian's ``mariadb-server``) started on a free
127.0.0.1 port on first use and stopped at the end. ``MYSQL_URL``
(``mysql://user:password@host:port/``) points the tests at an external MySQL 8 or
MariaDB server instead; its user must be allowed to create databases and, on MySQL 8,
to run XA RECOVER (XA_RECOVER_ADMIN).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from contract.state_backends import STATE_BACKENDS, BackendFactory, ClosingBackends

from streamflow.control import HOME_ENV
from streamflow.devtools.kafka_broker import KafkaBroker, KafkaBrokerError
from streamflow.devtools.mariadb_server import MariaDbServer
from streamflow.testing.mysql import create_database, drop_database


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = KafkaBroker()
    try:
        try:
            bootstrap = broker.start()
        except KafkaBrokerError:  # e.g. another process took a free port before the JVM bound it
            broker = KafkaBroker()
            bootstrap = broker.start()
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """The server (no database): MYSQL_URL, or a MariaDB started for the session."""
    external = os.environ.get("MYSQL_URL")
    if external:
        yield external
        return
    server = MariaDbServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """A database of this session's own on the server (dropped at the end)."""
    url = create_database(mysql_server_url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session", autouse=True)
def _private_streamflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Job processes the tests start (``streamflow run``) register in a temporary
    registry, inherited through the environment, never in the user's ~/.streamflow."""
    previous = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(tmp_path_factory.mktemp("streamflow-home"))
    yield
    if previous is None:
        os.environ.pop(HOME_ENV, None)
    else:
        os.environ[HOME_ENV] = previous


@pytest.fixture(params=STATE_BACKENDS)
def backend_factory(request: pytest.FixtureRequest) -> Iterator[BackendFactory]:
    backends = ClosingBackends(request.param)
    yield backends
    backends.close_all()
