"""The state backends every keyed-state contract test runs against: the one place a new
backend (RocksDB) joins, and with it every test parametrized over ``STATE_BACKENDS``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streamflow.state import HashMapStateBackend, StateBackend

STATE_BACKENDS: list[object] = [
    pytest.param(HashMapStateBackend, id="heap"),
]
"""Factories of a fresh :class:`~streamflow.state.StateBackend`, as pytest params."""

BackendFactory = Callable[[], StateBackend]
