"""The state backends every keyed-state test runs against: the one place a backend
joins, and with it every test parametrized over ``STATE_BACKENDS`` (the contract suite
here, the keyed-state unit tests through the ``backend_factory`` fixture of
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from streamflow.state import HashMapStateBackend, KeyedStateBackend, StateBackend
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend


def rocksdb() -> EmbeddedRocksDBStateBackend:
    """RocksDB with a small memory budget; working directories in the system's temp
    directory (removed when the keyed backends close)."""
    return EmbeddedRocksDBStateBackend(memory_budget=16 << 20)


STATE_BACKENDS: list[object] = [
    pytest.param(HashMapStateBackend, id="heap"),
    pytest.param(rocksdb, id="rocksdb"),
]
"""Factories of a fresh :class:`~streamflow.state.StateBackend`, as pytest params."""

BackendFactory = Callable[[], StateBackend]


class ClosingBackends:
    """Makes :class:`StateBackend` objects with ``factory`` that remember every keyed
    backend they create, so a test's fixture can close them (a RocksDB backend then
    closes its database and removes its working directory)."""

    def __init__(self, factory: BackendFactory) -> None:
        self._factory = factory
        self.created: list[KeyedStateBackend] = []

    def __call__(self) -> StateBackend:
        return _Remembering(self._factory(), self.created)

    def close_all(self) -> None:
        for backend in self.created:
            backend.close()
        self.created.clear()


class _Remembering:
    def __init__(self, backend: StateBackend, created: list[KeyedStateBackend]) -> None:
        self._backend = backend
        self._created = created

    def create_keyed_backend(self, **kwargs: Any) -> KeyedStateBackend:
        backend = self._backend.create_keyed_backend(**kwargs)
        self._created.append(backend)
        return backend

    def __repr__(self) -> str:
        return repr(self._backend)
