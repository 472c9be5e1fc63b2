"""What a source task and the timestamps operator share when they assign timestamps:
the error for a record whose timestamp could not be had, and dropping such records.

A :class:`~streamflow.eventtime.WatermarkTracker` never raises for a bad timestamp; it
reports each record as a :class:`~streamflow.eventtime.TimestampFailure`. The caller
hands it to its error policy: ``fail`` raises :func:`timestamp_error` (naming who
assigns timestamps, the record, its source position and what was wrong), ``skip`` and
``dead_letter`` set the record aside, and the batch goes on without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamflow.errors import TimestampError
from streamflow.eventtime.tracker import TimestampFailure
from streamflow.runtime.operators.base import short_repr

__all__ = ["drop_failed", "timestamp_error"]


def timestamp_error(
    owner: str, uid: str, subtask: int, record: Any, where: str | None, error: Exception
) -> TimestampError:
    """The error that fails the attempt for a record without a usable timestamp.

    ``owner`` is ``"source"`` or ``"operator"``, ``uid`` its uid, ``where`` the record's
    source position (None when it has none).
    """
    at = f"at {where}" if where else "(no source position: produced by an operator)"
    return TimestampError(
        f"{owner} {uid!r} (subtask {subtask}) could not assign an event timestamp to record {short_repr(record)} {at}: "
        f"{type(error).__name__}: {error}. The job attempt fails and the restart strategy decides; fix the "
        "timestamp assigner of the WatermarkStrategy (it must return finite float seconds since the epoch), "
        "or route such records aside with .with_error_policy(ErrorPolicy.skip()) or "
        "ErrorPolicy.dead_letter(sink) where the timestamps are assigned.",
        operator=uid,
        subtask=subtask,
        position=where,
        record=short_repr(record),
    )


def drop_failed(
    records: list[Any], positions: list[Any] | None, failures: Sequence[TimestampFailure]
) -> tuple[list[Any], list[Any] | None]:
    """``records`` and ``positions`` without the failed records' entries."""
    gone = {failure.index for failure in failures}
    kept = [r for i, r in enumerate(records) if i not in gone]
    if positions is None:
        return kept, None
    return kept, [p for i, p in enumerate(positions) if i not in gone]
