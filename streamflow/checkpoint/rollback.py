"""Restoring past damaged checkpoints: a harmless fallback, or a rollback of committed output.

When the newest checkpoint on disk fails verification, the job could restore an older
one. Whether that is safe depends on what the skipped checkpoint was:

* **Incomplete** (no ``_metadata``): it never completed, so no sink committed anything
  for it. Falling back past it is what every restart after a crash does; it stays
  automatic (logged at INFO).
* **Completed** (``_metadata`` present, but a file is damaged): exactly-once sinks commit
  a checkpoint's output when it completes. Restoring an older checkpoint replays the
  input from there, and that output is written a second time. A job with an exactly-once
  sink therefore refuses, with :class:`CheckpointRollbackError` (never retried), unless
  the rollback was allowed explicitly (``allow_checkpoint_rollback=True`` on
  ``env.execute``, ``--allow-rollback`` on ``streamflow run``); then the duplicates it
  accepts are logged at ERROR. A job without an exactly-once sink (at-least-once output
  may repeat records anyway) falls back automatically with a WARNING.

Which sinks are exactly-once is what each sink declares through its
``delivery_guarantee`` attribute (see :func:`streamflow.api.delivery.declared_guarantee`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from streamflow.checkpoint.storage import RestoreScan, SkippedCheckpoint
from streamflow.errors import CheckpointError

__all__ = ["CheckpointRollbackError", "check_fallback"]

log = logging.getLogger("streamflow.checkpoint.rollback")


class CheckpointRollbackError(CheckpointError):
    """Restoring would skip a damaged *completed* checkpoint while the job has an
    exactly-once sink: the output that checkpoint committed would be written again.

    Not retriable: every attempt would find the same damage. Fields: ``job``,
    ``damaged`` (ids of the skipped completed checkpoints, newest first) and
    ``restore_id`` (the checkpoint that would be restored, None for none).
    """

    retriable = False


def check_fallback(
    scan: RestoreScan,
    *,
    job_name: str,
    exactly_once_sinks: Sequence[str],
    allow_rollback: bool,
    restores: str,
    ignore_up_to: int = 0,
) -> None:
    """Decide whether restoring ``restores`` past ``scan.skipped`` may go ahead.

    Args:
        scan: what storage found (the newest intact checkpoint and the newer skipped ones).
        job_name: for the messages.
        exactly_once_sinks: uids of the job's sinks that declare EXACTLY_ONCE.
        allow_rollback: the user accepted re-emitted output (``--allow-rollback``).
        restores: what will be restored instead, in words ("checkpoint 11", "the
            savepoint ...", "no checkpoint: ...").
        ignore_up_to: skipped checkpoints with an id up to this are not this run's
            concern (a run started from a savepoint ignores older runs' checkpoints).

    Raises:
        CheckpointRollbackError: a completed checkpoint is skipped, the job has an
            exactly-once sink and the rollback was not allowed.
    """
    relevant = [s for s in scan.skipped if s.checkpoint_id > ignore_up_to]
    for skipped in relevant:
        if not skipped.completed:
            log.info("job %r: skipping checkpoint %d, which never completed (nothing of it was committed): %s",
                     job_name, skipped.checkpoint_id, skipped.problem)
    damaged = [s for s in relevant if s.completed]
    if not damaged:
        return
    ids = ", ".join(str(s.checkpoint_id) for s in damaged)
    problems = " ".join(f"{s.problem}." for s in damaged)
    if not exactly_once_sinks:
        log.warning(
            "job %r is falling back to %s past damaged completed checkpoint(s) %s: %s Records after it are "
            "processed again; the job has no exactly-once sink, so its at-least-once sinks may write some of "
            "them twice",
            job_name, restores, ids, problems,
        )
        return
    sinks = ", ".join(repr(uid) for uid in exactly_once_sinks)
    if allow_rollback:
        log.error(
            "job %r restores %s past damaged completed checkpoint(s) %s, as allowed (allow_checkpoint_rollback): "
            "the output that exactly-once sink(s) %s committed for checkpoint(s) %s will be written again "
            "(duplicates). %s",
            job_name, restores, ids, sinks, ids, problems,
        )
        return
    raise CheckpointRollbackError(_refusal(job_name, damaged, restores, sinks, problems),
                                  job=job_name, damaged=[s.checkpoint_id for s in damaged],
                                  restore_id=None if scan.latest is None else scan.latest.checkpoint_id)


def _refusal(job_name: str, damaged: list[SkippedCheckpoint], restores: str, sinks: str, problems: str) -> str:
    ids = ", ".join(str(s.checkpoint_id) for s in damaged)
    newest = damaged[0].checkpoint_id
    return (
        f"job {job_name!r} will not roll back committed output: the latest completed checkpoint "
        f"{newest} is damaged ({problems.removesuffix('.')}). Restoring {restores} instead would write "
        f"again the output that exactly-once sink(s) {sinks} committed for checkpoint(s) {ids} "
        f"(duplicates). Repair chk-{newest} (e.g. from a backup) and run again, or accept the duplicates: "
        f"`streamflow run ... --allow-rollback`, or env.execute(..., allow_checkpoint_rollback=True)."
    )
