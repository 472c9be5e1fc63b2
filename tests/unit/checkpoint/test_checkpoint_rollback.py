"""check_fallback: which fallbacks past skipped checkpoints go ahead, how loudly, and
which are refused (pure: scans are built by hand; the job-level tests on real files are in
tests/integration/test_damaged_checkpoint_rollback.py)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from streamflow.api.delivery import declared_guarantee
from streamflow.checkpoint.metadata import CheckpointMetadata
from streamflow.checkpoint.rollback import CheckpointRollbackError, check_fallback
from streamflow.checkpoint.storage import CompletedCheckpoint, RestoreScan, SkippedCheckpoint
from streamflow.connectors import CollectSink, ExactlyOnceFileSink, ExactlyOnceSqliteSink
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink
from streamflow.core.ids import CheckpointId

LOGGER = "streamflow.checkpoint.rollback"


def completed(n: int) -> CompletedCheckpoint:
    metadata = CheckpointMetadata(job_name="job", checkpoint_id=CheckpointId(n), timestamp=0.0, operators={})
    return CompletedCheckpoint(checkpoint_id=CheckpointId(n), path=Path(f"/chk/chk-{n}"), metadata=metadata)


def skipped(n: int, *, done: bool) -> SkippedCheckpoint:
    problem = (f"checkpoint {n} is damaged: '/chk/chk-{n}/count-0': its contents do not match its sha256 checksum"
               if done else f"checkpoint {n} is incomplete: '/chk/chk-{n}' has no _metadata")
    return SkippedCheckpoint(checkpoint_id=CheckpointId(n), completed=done, problem=problem)


def scan(latest: int | None, *skips: SkippedCheckpoint) -> RestoreScan:
    return RestoreScan(latest=None if latest is None else completed(latest), skipped=skips)


def check(found: RestoreScan, *, sinks: list[str], allow: bool = False, ignore_up_to: int = 0) -> None:
    restores = "no checkpoint" if found.latest is None else f"checkpoint {found.latest.checkpoint_id}"
    check_fallback(found, job_name="wc", exactly_once_sinks=sinks, allow_rollback=allow, restores=restores,
                   ignore_up_to=ignore_up_to)


def test_nothing_skipped_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        check(scan(5), sinks=["out"])
    assert not caplog.records


def test_skipping_checkpoints_that_never_completed_needs_no_permission(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        check(scan(5, skipped(7, done=False), skipped(6, done=False)), sinks=["out"])
    assert [(r.levelno, "never completed" in r.getMessage()) for r in caplog.records] == [(logging.INFO, True)] * 2


def test_a_damaged_completed_checkpoint_with_an_exactly_once_sink_is_refused() -> None:
    found = scan(5, skipped(7, done=False), skipped(6, done=True))
    with pytest.raises(CheckpointRollbackError) as refused:
        check(found, sinks=["out", "kafka-out"])
    error = refused.value
    assert (error.job, error.damaged, error.restore_id, error.retriable) == ("wc", [6], 5, False)
    message = str(error)
    assert "the latest completed checkpoint 6 is damaged (checkpoint 6 is damaged: '/chk/chk-6/count-0': its " \
           "contents do not match its sha256 checksum)" in message
    assert "Restoring checkpoint 5 instead would write again the output that exactly-once sink(s) 'out', " \
           "'kafka-out' committed for checkpoint(s) 6 (duplicates)" in message
    assert "Repair chk-6" in message and "--allow-rollback" in message
    assert "allow_checkpoint_rollback=True" in message
    assert "7" not in message.replace("chk-6", "")  # the incomplete one committed nothing: not listed
    assert pickle.loads(pickle.dumps(error)).damaged == [6]


def test_every_damaged_completed_checkpoint_is_named_and_starting_empty_counts_too() -> None:
    with pytest.raises(CheckpointRollbackError) as refused:
        check(scan(None, skipped(3, done=True), skipped(2, done=True)), sinks=["out"])
    assert (refused.value.damaged, refused.value.restore_id) == ([3, 2], None)
    assert "the latest completed checkpoint 3 is damaged" in str(refused.value)
    assert "committed for checkpoint(s) 3, 2" in str(refused.value)
    assert "Restoring no checkpoint instead" in str(refused.value)


def test_an_allowed_rollback_says_at_error_what_will_be_duplicated(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        check(scan(5, skipped(6, done=True)), sinks=["out"], allow=True)
    [said] = caplog.records
    assert said.levelno == logging.ERROR
    assert "restores checkpoint 5 past damaged completed checkpoint(s) 6, as allowed" in said.getMessage()
    assert "the output that exactly-once sink(s) 'out' committed for checkpoint(s) 6 will be written again " \
           "(duplicates)" in said.getMessage()


def test_without_an_exactly_once_sink_the_fallback_is_automatic_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        check(scan(5, skipped(6, done=True)), sinks=[])
    [said] = caplog.records
    assert said.levelno == logging.WARNING
    assert "falling back to checkpoint 5 past damaged completed checkpoint(s) 6" in said.getMessage()
    assert "no exactly-once sink" in said.getMessage()


def test_checkpoints_before_the_run_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        check(scan(None, skipped(3, done=True)), sinks=["out"], ignore_up_to=3)
    assert not caplog.records


def test_sinks_declare_their_guarantee() -> None:
    assert declared_guarantee(ExactlyOnceFileSink("/tmp/out")) is DeliveryGuarantee.EXACTLY_ONCE
    sqlite = ExactlyOnceSqliteSink("/tmp/x.db", table="t", statement="INSERT INTO t VALUES (?)", row_fn=tuple)
    assert declared_guarantee(sqlite) is DeliveryGuarantee.EXACTLY_ONCE
    eo = KafkaSink("k:9092", "t", delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, transactional_id_prefix="p")
    assert declared_guarantee(eo) is DeliveryGuarantee.EXACTLY_ONCE
    assert declared_guarantee(KafkaSink("k:9092", "t")) is DeliveryGuarantee.AT_LEAST_ONCE
    assert declared_guarantee(CollectSink("x")) is None  # undeclared: not exactly-once
