"""Keyed-state tests run once per state backend.

A test module opts in with ``pytestmark = pytest.mark.usefixtures("each_state_backend")``:
the fixture then runs each of its tests once per entry of :data:`STATE_BACKENDS`, with
the name ``HashMapStateBackend`` of the module (and of ``streamflow.state``, which the
environment uses for jobs that set no backend) bound to that backend's factory. So the
tests keep building their backends as they always did, and every backend must pass
them unchanged. Backends made during a test are closed after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import streamflow.state
from streamflow.state import HashMapStateBackend
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend

STATE_BACKENDS: dict[str, Callable[[Path], Any]] = {
    "heap": lambda _directory: HashMapStateBackend(),
    "rocksdb": lambda directory: EmbeddedRocksDBStateBackend(directory, memory_budget=16 << 20),
}


class _Tracking:
    """Stands in for a StateBackend class: each instance is the chosen backend, and every
    keyed backend it creates is remembered so the fixture can close it."""

    def __init__(self, make: Callable[[Path], Any], directory: Path, created: list[Any]) -> None:
        self._backend = make(directory)
        self._created = created

    def create_keyed_backend(self, **kwargs: Any) -> Any:
        backend = self._backend.create_keyed_backend(**kwargs)
        self._created.append(backend)
        return backend


@pytest.fixture(params=sorted(STATE_BACKENDS))
def each_state_backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    make = STATE_BACKENDS[request.param]
    created: list[Any] = []

    def factory() -> _Tracking:
        return _Tracking(make, tmp_path / "state", created)

    monkeypatch.setattr(request.module, "HashMapStateBackend", factory)
    monkeypatch.setattr(streamflow.state, "HashMapStateBackend", factory)
    yield request.param
    for backend in created:
        backend.close()
