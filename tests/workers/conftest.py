"""The workers tests start real job processes; none outlives its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker_processes import kill_leftovers


@pytest.fixture(autouse=True)
def _no_job_process_left_behind() -> Iterator[None]:
    yield
    kill_leftovers()
