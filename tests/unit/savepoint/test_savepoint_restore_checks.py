"""Checking a snapshot against a new job before anything is restored: uids, auto uids,
max parallelism, and which state is dropped. Plans are built, never run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from streamflow import KeyedProcessFunction, StateError, StreamEnvironment
from streamflow.checkpoint.metadata import CheckpointMetadata, OperatorStateMeta, StateHandle
from streamflow.checkpoint.snapshot import OperatorSnapshot
from streamflow.connectors import CollectionSource, PrintSink
from streamflow.core.ids import CheckpointId
from streamflow.errors import ConfigError
from streamflow.graph.plan import PhysicalPlan
from streamflow.savepoint import NonRestoredStateError, RestoreSettings, operators_without_uid
from streamflow.savepoint.restore import check_snapshot_against_plan, check_state_shapes, is_auto_uid

PATH = Path("/sp/savepoint-x-1-abcdef")


class Count(KeyedProcessFunction):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect(value)


def plan(*, count_uid: str | None = "count", max_parallelism: int = 128) -> PhysicalPlan:
    env = StreamEnvironment(parallelism=2, max_parallelism=max_parallelism)
    stream = env.from_source(CollectionSource(["a"]), name="words").uid("words").map(str.upper)
    counted = stream.key_by(lambda w: w).process(Count())
    if count_uid is not None:
        counted.uid(count_uid)
    counted.sink_to(PrintSink()).uid("out")
    return env.plan()


def snapshot(*uids: str, max_parallelism: int = 128) -> CheckpointMetadata:
    handle = StateHandle(file="f", size=1, sha256="0" * 64)
    return CheckpointMetadata(
        job_name="x",
        checkpoint_id=CheckpointId(1),
        timestamp=0.0,
        is_savepoint=True,
        operators={
            uid: OperatorStateMeta(parallelism=2, max_parallelism=max_parallelism, subtasks={0: handle})
            for uid in uids
        },
    )


def check(metadata: CheckpointMetadata, job: PhysicalPlan, allow: bool = False) -> list[str]:
    return check_snapshot_against_plan(metadata, job, allow_non_restored_state=allow, path=PATH)


def test_matching_uids_restore_everything() -> None:
    assert check(snapshot("words", "count", "out"), plan()) == []


def test_state_of_uids_the_job_lacks_is_refused_listing_them() -> None:
    with pytest.raises(NonRestoredStateError) as caught:
        check(snapshot("words", "count", "out", "old-filter", "enrich"), plan())
    assert caught.value.uids == ["enrich", "old-filter"]
    message = str(caught.value)
    assert "the savepoint '/sp/savepoint-x-1-abcdef' holds state for 2 operator uid(s) that this job does not " \
        "have: 'enrich', 'old-filter'." in message
    assert "--allow-non-restored-state (allow_non_restored_state=True)" in message
    assert "auto-generated" not in message


def test_allowed_non_restored_state_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamflow.savepoint"):
        assert check(snapshot("words", "count", "gone"), plan(), allow=True) == ["gone"]
    assert "holds state of operator uid 'gone', which this job does not have; that state is dropped" in caplog.text


def test_an_unmatched_auto_uid_explains_how_to_adopt_it() -> None:
    job = plan(count_uid=None)
    assert [op.effective_uid for op in operators_without_uid(job)] == ["Count#3"]
    with pytest.raises(NonRestoredStateError) as caught:
        check(snapshot("words", "Count#4", "out"), job)  # an operator was removed before it
    message = str(caught.value)
    assert "'Count#4' look auto-generated" in message
    assert 'set .uid("<that uid>") on the matching operator (operators without a uid here: \'Count#3\')' in message


def test_restoring_by_an_auto_uid_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamflow.savepoint"):
        assert check(snapshot("words", "Count#3", "out"), plan(count_uid=None)) == []
    assert "operator 'Count' has no uid of its own" in caplog.text and "set .uid('Count#3')" in caplog.text


def test_keyed_state_needs_the_same_max_parallelism() -> None:
    with pytest.raises(StateError, match=r"split into 64 key groups .* run with max_parallelism=64") as caught:
        check(snapshot("words", "count", max_parallelism=64), plan())
    assert caught.value.operator == "count"
    # a non-keyed operator does not care (its state is not split by key group)
    assert check(snapshot("words", "out", max_parallelism=64), plan()) == []


def test_source_state_cannot_go_into_a_non_source() -> None:
    job = plan()
    check_state_shapes(
        {"count": [OperatorSnapshot(keyed={}), OperatorSnapshot()], "words": [OperatorSnapshot(source=[])]},
        job,
        path=PATH,
    )
    with pytest.raises(StateError, match="'count' .* was written by a source, but 'count' is now the process operator"):
        check_state_shapes({"count": [OperatorSnapshot(source=[{"next": 1}])]}, job, path=PATH)
    with pytest.raises(StateError, match="written by an operator that is not a sink, but 'out' is now the sink"):
        check_state_shapes({"out": [OperatorSnapshot(keyed={})]}, job, path=PATH)


def test_restore_settings_validate() -> None:
    assert RestoreSettings(path="~/sp").path == Path("~/sp").expanduser()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="restore path must be"):
        RestoreSettings(path=3)  # type: ignore[arg-type]
    assert is_auto_uid("map#12") and not is_auto_uid("count") and not is_auto_uid("#1") and not is_auto_uid("a#b")
