"""The typed operator snapshot and its stored form: the same dict checkpoints always had."""

from __future__ import annotations

import pytest

from streamflow.checkpoint import serde
from streamflow.checkpoint.snapshot import STORED_PARTS, OperatorSnapshot, TimerSnapshot
from streamflow.errors import StateError

# What a keyed process function's subtask stored before the typed record (pickled dict).
OLD_STORED = {
    "keyed": {"format": 2, "states": {}},
    "timers": {"processing": [(1.5, 3, ("k", 1))], "event": []},
    "operator": {"states": {"buffer": {"mode": "split", "items": [("a", 1)]}}},
}


def test_every_part_round_trips_through_the_stored_form_and_the_checkpoint_bytes() -> None:
    snapshot = OperatorSnapshot(
        source=[{"split": "f", "next": (3, 4)}],
        sink=[{"checkpoint_id": 2, "handle": ("txn", 2)}],
        keyed={"format": 2, "states": {}},
        operator={"states": {}},
        timers=TimerSnapshot(processing=[(1.0, 0, "k")], event=[(2.0, 1, ("k",))]),
        channel_state=[("channel", 0)],
        async_inputs=[("in", 1)],
    )
    stored = snapshot.to_stored()
    assert set(stored) == STORED_PARTS  # every part has its key, and only those
    assert OperatorSnapshot.from_stored(serde.decode(serde.encode(stored))) == snapshot


def test_absent_parts_are_not_stored_and_read_back_as_none() -> None:
    assert OperatorSnapshot().to_stored() == {}
    assert OperatorSnapshot(source=[]).to_stored() == {"source": []}  # a source that owns nothing is still a source
    restored = OperatorSnapshot.from_stored({"sink": []})
    assert restored.sink == [] and restored.source is None and restored.timers is None


def test_the_dict_form_of_earlier_checkpoints_reads_back_typed() -> None:
    restored = OperatorSnapshot.from_stored(OLD_STORED)
    assert restored.keyed == OLD_STORED["keyed"] and restored.operator == OLD_STORED["operator"]
    assert restored.timers == TimerSnapshot(processing=[(1.5, 3, ("k", 1))], event=[])
    assert restored.to_stored() == OLD_STORED  # written back unchanged


def test_something_else_than_a_stored_snapshot_is_a_clear_error() -> None:
    with pytest.raises(StateError, match="state of operator 'count' is a list, not a stored operator snapshot"):
        OperatorSnapshot.from_stored([1, 2], operator="count")
