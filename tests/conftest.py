"""Fixtures for the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streamflow.control import HOME_ENV


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
