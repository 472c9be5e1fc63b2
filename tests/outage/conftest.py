"""The outage lab: each selected scenario starts as a process of its own as soon as the
session has collected the tests, and runs (mostly waiting) while the rest of the suite
does; each test waits for its own. A scenario runs only if its test was selected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outage_harness import OutageLab

_LAB: pytest.StashKey[OutageLab] = pytest.StashKey()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the scenarios of the selected outage tests now, before any test runs."""
    markers = (item.get_closest_marker("outage") for item in session.items)
    kinds = sorted({marker.args[0] for marker in markers if marker is not None})
    if kinds and not session.config.option.collectonly:
        session.config.stash[_LAB] = OutageLab(kinds)


def pytest_sessionfinish(session: pytest.Session) -> None:
    lab = session.config.stash.get(_LAB, None)
    if lab is not None:
        lab.close()


@pytest.fixture(scope="session")
def outage_lab(request: pytest.FixtureRequest) -> Iterator[OutageLab]:
    lab = request.config.stash.get(_LAB, None)
    assert lab is not None, "the outage lab starts at collection; select the outage tests to run them"
    yield lab
