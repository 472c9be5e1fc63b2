"""The workers tests start real job processes; none outlives its test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from worker_processes import kill_leftovers


@pytest.fixture(autouse=True)
async def _no_job_process_left_behind() -> AsyncIterator[None]:
    """On the test's own loop: the processes are killed and reaped before it closes."""
    yield
    await kill_leftovers()
