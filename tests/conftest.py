"""Fixtures for the whole suite: the servers shared by the test session, and a private
registry of running jobs.

``kafka_bootstrap`` is a real Apache Kafka broker (``streamflow.devtools.kafka_broker``),
started on a free 127.0.0.1 port the first time a test asks for it and stopped at the end
of the session. ``KAFKA_BOOTSTRAP_SERVERS`` points the tests at an external broker instead
(it must allow transactions on one node and have automatic topic creation off).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streamflow.control import HOME_ENV
from streamflow.devtools.kafka_broker import KafkaBroker, KafkaBrokerError


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
