"""Servers shared by the whole test session.

``kafka_bootstrap`` is a real Apache Kafka broker (``streamflow.devtools.kafka_broker``),
started on a free 127.0.0.1 port the first time a test asks for it and stopped at the end
of the session. ``KAFKA_BOOTSTRAP_SERVERS`` points the tests at an external broker instead
(it must allow transactions on one node and have automatic topic creation off).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streamflow.devtools.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = KafkaBroker()
    try:
        yield broker.start()
    finally:
        broker.stop()
