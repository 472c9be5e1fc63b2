"""A savepoint written before exact state types (orjson, format 1) still restores.

``legacy_state/savepoint`` was written by the code of commit 66b5d21 running
``legacy_state/legacy_job.py`` (see ``make_savepoint.py``). Restored with today's code,
every state holds what that code would have restored (JSON had already turned tuples
inside values into lists: that information is gone), keys are exact again (tuple keys,
map keys and broadcast keys), and keys whose key group changed with key equality
(``True``, ``2.0``, ``("t", 1.0)``) are found in their new key groups, at another subtask
than the one that saved them.
"""

from __future__ import annotations

import pickle
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from streamflow import StreamEnvironment
from streamflow.checkpoint import serde
from streamflow.connectors import CollectSink
from streamflow.core.clock import ManualClock
from streamflow.partitioning.keygroups import key_group_for, key_group_range
from streamflow.state import HashMapStateBackend, ValueStateDescriptor

HERE = Path(__file__).resolve().parent / "legacy_state"
sys.path.insert(0, str(HERE))

import legacy_job  # noqa: E402


def as_json(value: Any) -> Any:
    """What a JSON round trip made of ``value`` (what the old code restored)."""
    return orjson.loads(orjson.dumps(value))


def expected_dumps() -> dict[str, str]:
    """repr(key) -> the dump ``Typed.on_timer`` emits for the key, as the old code restored it."""
    per_key: dict[Any, list[int]] = defaultdict(list)
    for key, i in legacy_job.EVENTS:
        per_key[key].append(i)
    rules = sorted((rule, as_json(value)) for rule, value in legacy_job.RULES_IN)
    dumps = {}
    for key, events in per_key.items():
        last = events[-1]
        index = sorted({(i % 2, "slot"): as_json((i, key)) for i in events}.items())
        state = (
            as_json((last, ("v", key))), [as_json((key, i)) for i in events], index, sum(events),
            as_json((sum(events), len(events))), as_json((last, "recent")), rules,
        )  # fmt: skip
        dumps[repr(key)] = repr(state)
    return dumps


async def test_a_job_resumes_from_a_savepoint_of_the_orjson_era() -> None:
    name = "legacy-restore"
    CollectSink.clear(name)
    env = StreamEnvironment(parallelism=2)
    legacy_job.build(env, CollectSink(name), endless=False)
    result = await env.execute("legacy", from_savepoint=HERE / "savepoint")
    assert result.restored_from is not None
    out = CollectSink.results(name)
    CollectSink.clear(name)
    assert [r for r in out if r[0] == "event"] == []  # every event was read before the savepoint
    dumps = {key: dump for kind, key, dump, _ in out if kind == "state"}
    assert dumps == expected_dumps()
    # split operator state keeps its old subtask: the last three events subtask 0 saw
    seen = sorted(seen for kind, _, _, seen in out if kind == "state")
    assert set(seen) == {"[]", repr([as_json((key, i)) for key, i in legacy_job.EVENTS[-3:]])}


def read_typed(subtask: int) -> dict[str, Any]:
    raw = (HERE / "savepoint" / f"typed-{subtask}").read_bytes().split(b"\n", 1)[1]
    assert raw[:1] == serde.JSON_TAG
    decoded: dict[str, Any] = serde.decode(raw)
    return decoded


def test_keys_whose_key_group_changed_move_to_the_subtask_that_owns_them_now() -> None:
    snapshots = [read_typed(0)["keyed"], read_typed(1)["keyed"]]
    moved = [key for key in legacy_job.KEYS if key_group_for(key, 128) >= 64]
    assert moved == [2.0, ("t", 1.0)]  # saved by subtask 0 (old groups 41 and 26), owned by 1 now
    owners: dict[Any, int] = {}
    for subtask in range(2):
        backend = HashMapStateBackend().create_keyed_backend(
            operator_uid="typed", subtask_index=subtask, max_parallelism=128,
            key_group_range=key_group_range(128, 2, subtask), clock=ManualClock(0.0),
        )  # fmt: skip
        backend.restore(snapshots)
        last = backend.get_state(ValueStateDescriptor[Any]("last"))
        for key, key_group in backend.keys("last"):
            assert key_group == key_group_for(key, 128)
            backend.set_current_key(key, key_group)
            assert last.value()[1][0] == "v"
            owners[key] = subtask
    assert owners == {key: int(key_group_for(key, 128) >= 64) for key in legacy_job.KEYS}
    assert {type(key) for key in owners} == {str, int, tuple, bool, float}


def test_a_legacy_pickle_blob_keeps_its_exact_types() -> None:
    """The old encoder pickled a whole snapshot when JSON could not hold a value (a set):
    format 1 inside, but every type exact. Nothing turns its tuples into anything else."""
    keyed = {"format": 1, "states": {"v": {"kind": "value", "ttl": False,
                                           "key_groups": {str(key_group_for(("k", 1), 128)): [[("k", 1), ({1}, (2,))]]}}}}  # fmt: skip
    decoded = serde.decode(serde.PICKLE_TAG + pickle.dumps({"keyed": keyed}))
    backend = HashMapStateBackend().create_keyed_backend(
        operator_uid="op", subtask_index=0, max_parallelism=128, key_group_range=range(128), clock=ManualClock(0.0)
    )
    backend.restore([decoded["keyed"]])
    state = backend.get_state(ValueStateDescriptor[Any]("v"))
    backend.set_current_key(("k", 1), key_group_for(("k", 1), 128))
    assert state.value() == ({1}, (2,)) and type(state.value()[1]) is tuple
