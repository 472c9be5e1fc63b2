"""Checkpoints: the lifecycle state machine, trigger scheduling, metadata and storage.

- :mod:`~streamflow.checkpoint.pending`: one checkpoint from trigger to completed/aborted.
- :mod:`~streamflow.checkpoint.scheduler`: when to trigger; when failures fail the job.
- :mod:`~streamflow.checkpoint.metadata`: the ``_metadata`` record and state handles.
- :mod:`~streamflow.checkpoint.storage`: ``chk-<n>/`` directories with checksummed files.
- :mod:`~streamflow.checkpoint.serde`: snapshot bytes (pickle, exact; old orjson blobs still read).
"""

from __future__ import annotations

from streamflow.checkpoint.metadata import (
    FORMAT_VERSION,
    CheckpointMetadata,
    OperatorStateMeta,
    StateHandle,
    UnsupportedCheckpointVersionError,
)
from streamflow.checkpoint.pending import (
    ALLOWED_TRANSITIONS,
    CheckpointStatus,
    PendingCheckpoint,
    check_transition,
)
from streamflow.checkpoint.scheduler import CheckpointScheduler
from streamflow.checkpoint.serde import decode, encode
from streamflow.checkpoint.storage import (
    METADATA_FILE,
    CheckpointStorage,
    CompletedCheckpoint,
    state_file_name,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "CheckpointMetadata",
    "CheckpointScheduler",
    "CheckpointStatus",
    "CheckpointStorage",
    "CompletedCheckpoint",
    "OperatorStateMeta",
    "PendingCheckpoint",
    "StateHandle",
    "UnsupportedCheckpointVersionError",
    "check_transition",
    "decode",
    "encode",
    "state_file_name",
]
