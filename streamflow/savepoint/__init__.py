"""Savepoints: user-triggered, self-contained, portable snapshots of a job.

- :mod:`~streamflow.savepoint.writer`: publish a completed checkpoint as a savepoint.
- :mod:`~streamflow.savepoint.location`: find and verify a savepoint, ``chk-<n>`` or
  checkpoint directory named by a path.
- :mod:`~streamflow.savepoint.restore`: check a snapshot against a new job (uids, max
  parallelism) and read it for restore.
- :mod:`~streamflow.savepoint.describe`: what a snapshot holds (``streamflow inspect``).

The format is the checkpoint format (``_metadata`` with ``format_version`` and
``is_savepoint``, checksummed state files; :mod:`streamflow.checkpoint.metadata`), in a
directory of its own that the system never deletes.
"""

from __future__ import annotations

from streamflow.savepoint.describe import describe_snapshot, format_description
from streamflow.savepoint.location import LocatedSnapshot, SnapshotDirectory, locate_snapshot
from streamflow.savepoint.restore import (
    NonRestoredStateError,
    RestorePoint,
    RestoreSettings,
    operators_without_uid,
    prepare_restore,
)
from streamflow.savepoint.writer import SAVEPOINT_PREFIX, write_savepoint

__all__ = [
    "SAVEPOINT_PREFIX",
    "LocatedSnapshot",
    "NonRestoredStateError",
    "RestorePoint",
    "RestoreSettings",
    "SnapshotDirectory",
    "describe_snapshot",
    "format_description",
    "locate_snapshot",
    "operators_without_uid",
    "prepare_restore",
    "write_savepoint",
]
