"""``streamflow inspect``'s description of a snapshot: every kind of state it knows, in
data and in text, from real checksummed files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamflow.checkpoint import serde
from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta, StateHandle
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.core.ids import CheckpointId
from streamflow.savepoint import describe_snapshot, format_description

KEYED_0 = {
    "keyed": {
        "format": 2,
        "states": {
            "count": {"kind": "value", "ttl": False, "serializer": "pickle",
                      "key_groups": {3: {"a": 1, ("b", 2): 2}, 40: {"c": 1}}},
            "seen": {"kind": "map", "ttl": True, "serializer": "json", "key_groups": {3: {"a": {"x": (b"1", 0.5)}}}},
        },
    },
    "timers": {"processing": [(10.0, 3, "a")], "event": []},
    "operator": {"format": 2, "states": {"buffer": {"mode": "split", "serializer": "pickle", "items": [1, 2, 3]}}},
}  # fmt: skip
LEGACY_KEYED = {  # written before exact state types and serializers (format 1)
    "keyed": {"format": 1, "states": {"n": {"kind": "value", "ttl": False, "key_groups": {"5": [["a", 1]]}}}},
    "operator": {"format": 1, "states": {"old": {"mode": "union", "items": [[1, 2]]}}},
}
SOURCE_0 = {"source": [{"split": "collection[0:9]", "next": 4, "end": 9}]}
SINK_0 = {"sink": [{"checkpoint_id": 5, "subtask": 0, "parallelism": 1, "handle": {"final": "part-0-5.txt"}}]}


async def write(tmp_path: Path, states: dict[str, dict[int, Any]], parallelism: dict[str, int]) -> Path:
    storage = CheckpointStorage(tmp_path / "job")
    operators = {}
    for uid, subtasks in states.items():
        handles: dict[int, StateHandle] = {}
        for subtask, state in subtasks.items():
            handles[subtask] = await storage.write_state(5, f"{uid}-{subtask}", serde.encode(state))
        operators[uid] = OperatorStateMeta(parallelism=parallelism[uid], max_parallelism=128, subtasks=handles)
    metadata = CheckpointMetadata(job_name="demo", checkpoint_id=CheckpointId(5), timestamp=0.0, operators=operators)
    await storage.write_metadata(5, metadata)
    return storage.checkpoint_path(5)


async def test_every_kind_of_state_is_described(tmp_path: Path) -> None:
    path = await write(
        tmp_path,
        {"count": {0: KEYED_0}, "src": {0: SOURCE_0}, "out": {0: SINK_0}, "map#2": {0: {"future": 1}},
         "old": {0: LEGACY_KEYED}},
        {"count": 2, "src": 1, "out": 1, "map#2": 1, "old": 1},
    )
    d = await describe_snapshot(path)
    assert (d["kind"], d["job_name"], d["checkpoint_id"], d["format_version"]) == ("checkpoint", "demo", 5, 1)
    ops = {op["uid"]: op for op in d["operators"]}
    assert list(ops) == ["count", "map#2", "old", "out", "src"] and ops["map#2"]["auto_uid"] and not ops["count"]["auto_uid"]
    first, second = ops["count"]["subtasks"]
    assert first["key_groups"] == [0, 63] and second == {"subtask": 1, "key_groups": [64, 127], "file": None, "size": 0}
    assert first["keyed_states"] == [
        {"name": "count", "kind": "value", "ttl": False, "serializer": "pickle", "keys": 3, "key_groups_with_state": 2,
         "key_group_span": [3, 40]},
        {"name": "seen", "kind": "map", "ttl": True, "serializer": "json", "keys": 1, "key_groups_with_state": 1,
         "key_group_span": [3, 3]},
    ]  # fmt: skip
    assert first["timers"] == {"processing": 1, "event": 0}
    assert first["operator_states"] == [{"name": "buffer", "mode": "split", "serializer": "pickle", "items": 3}]
    legacy = ops["old"]["subtasks"][0]
    assert legacy["keyed_states"] == [
        {"name": "n", "kind": "value", "ttl": False, "serializer": None, "keys": 1, "key_groups_with_state": 1,
         "key_group_span": [5, 5]},
    ]  # fmt: skip
    assert legacy["operator_states"] == [{"name": "old", "mode": "union", "serializer": None, "items": 1}]
    assert ops["src"]["subtasks"][0]["source_splits"] == SOURCE_0["source"]
    assert ops["out"]["subtasks"][0]["sink_transactions"] == [
        {"checkpoint_id": 5, "subtask": 0, "handle": {"final": "part-0-5.txt"}}
    ]
    assert ops["map#2"]["subtasks"][0]["other"] == ["future"]
    assert d["size"] == sum(op["size"] for op in d["operators"]) > 0

    text = format_description(d)
    for line in [
        f"checkpoint {path}",
        "  operator 'count'  parallelism 2, max parallelism 128",
        "key groups 0-63",
        "      keyed state 'count' (value): 3 key(s) in 2 key group(s) (key groups 3-40)",
        "      keyed state 'seen' (map, ttl, serializer json): 1 key(s) in 1 key group(s) (key groups 3-3)",
        "      timers: 1 processing-time, 0 event-time",
        "      operator state 'buffer' (split): 3 item(s)",
        "      keyed state 'n' (value): 1 key(s) in 1 key group(s) (key groups 5-5)",
        "      operator state 'old' (union): 1 item(s)",
        "    subtask 1  no state",
        "      source splits: 1",
        "        {'split': 'collection[0:9]', 'next': 4, 'end': 9}",
        "      sink pending transactions: 1",
        "        checkpoint 5: {'final': 'part-0-5.txt'}",
        "  (auto-generated uid: the operator had no .uid())",
        "      other state: future",
    ]:
        assert line in text, line
