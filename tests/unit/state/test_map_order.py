"""The iteration order of MapState, which the backends define differently.

The heap backend keeps a Python dict per key: insertion order. The RocksDB backend
stores one entry per map key and scans them: the order of the canonical map-key bytes,
the same in every run and after every restore, but not insertion order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamflow.core.clock import ManualClock
from streamflow.state import HashMapStateBackend, MapStateDescriptor
from streamflow.state.rocksdb import EmbeddedRocksDBStateBackend
from streamflow.state.rocksdb.keys import encode_key

PUTS: list[tuple[Any, str]] = [(3, "c"), ("b", "B"), ((2, "x"), "t"), (1, "a"), (b"z", "bytes"), (None, "none")]


def fill(backend: Any) -> Any:
    state = backend.get_state(MapStateDescriptor[Any, str]("m"))
    backend.set_current_key("k", 0)
    for map_key, value in PUTS:
        state.put(map_key, value)
    return state


def test_heap_map_state_iterates_in_insertion_order() -> None:
    backend = HashMapStateBackend().create_keyed_backend(
        operator_uid="op", subtask_index=0, max_parallelism=4, key_group_range=range(4), clock=ManualClock()
    )
    assert fill(backend).items() == PUTS


def test_rocksdb_map_state_iterates_in_canonical_key_order(tmp_path: Path) -> None:
    backend = EmbeddedRocksDBStateBackend(tmp_path).create_keyed_backend(
        operator_uid="op", subtask_index=0, max_parallelism=4, key_group_range=range(4), clock=ManualClock()
    )
    try:
        state = fill(backend)
        expected = sorted(PUTS, key=lambda pair: encode_key(pair[0])[0])
        assert state.items() == expected
        assert expected != PUTS  # the test would prove nothing if both orders agreed
        backend.restore([backend.snapshot()])  # the same entries written again: same order
        assert state.items() == expected
    finally:
        backend.close()
