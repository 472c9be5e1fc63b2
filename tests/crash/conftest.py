"""Fixtures of the crash suite (the machinery is in crash_harness.py).

The scenarios of the selected tests are all submitted, references first, when the first
crash test asks for ``crash_lab``; they run concurrently and each test waits for its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import crash_job
from crash_harness import CrashLab, KafkaInput, Scenario
from streamflow.testing.kafka import unique_topic

_SELECTED: pytest.StashKey[list[Scenario]] = pytest.StashKey()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember the scenarios of the selected tests, in run order."""
    selected: list[Scenario] = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        scenario = callspec.params.get("scenario") if callspec is not None else None
        if isinstance(scenario, Scenario) and scenario not in selected:
            selected.append(scenario)
    session.config.stash[_SELECTED] = selected


@pytest.fixture(scope="session")
def crash_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("crash-inputs")
    crash_job.generate_inputs(directory)
    return directory


@pytest.fixture(scope="session")
def crash_lab(
    request: pytest.FixtureRequest, crash_inputs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrashLab]:
    selected = request.config.stash.get(_SELECTED, [])
    kafka = mysql_server = None
    if any(s.sink in crash_job.MYSQL_OUTPUT for s in selected):  # the servers start only if needed
        mysql_server = request.getfixturevalue("mysql_server_url")
    if any(s.sink in crash_job.KAFKA_INPUT for s in selected):
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        kafka = KafkaInput(bootstrap, unique_topic("crash-input"))
        asyncio.run(crash_job.fill_input_topic(crash_inputs, bootstrap, kafka.topic))
    lab = CrashLab(crash_inputs, tmp_path_factory.mktemp("crash-runs"), kafka=kafka, mysql_server=mysql_server)
    for scenario in selected:  # references first: every crash test compares with one
        lab.submit(scenario.reference)
    for scenario in selected:
        lab.submit(scenario)
    yield lab
    lab.close()
