"""What a completed checkpoint is made of: the ``_metadata`` record and state handles.

The metadata names, per operator uid and subtask, the state file that subtask wrote.
Writing it (atomically, see :mod:`streamflow.checkpoint.storage`) is what makes a
checkpoint complete, so it is the one place that says which files belong together.

The JSON layout (``format_version`` 1)::

    {"format_version": 1, "job_name": "...", "checkpoint_id": 7, "timestamp": 1.7e9,
     "is_savepoint": false,
     "operators": {"count": {"parallelism": 2, "max_parallelism": 128,
                             "subtasks": {"0": {"file": "count-0", "size": 10,
                                                "sha256": "ab..."}}}}}

``format_version`` 2 adds, to the handle of a subtask whose state lives partly in the
job's ``shared/`` folder (an incremental checkpoint, see
:mod:`streamflow.checkpoint.shared_files`), the list of those files::

    "0": {"file": "count-0", "size": 812, "sha256": "ab...",
          "shared": [{"name": "12-count-0-000042.sst", "size": 65536, "sha256": "cd..."}]}

``format_version`` 3 adds, to the handle of a task's head operator in an unaligned
checkpoint, that it ran unaligned and how many bytes of in-flight records (channel state,
inside its state file) it persisted::

    "0": {"file": "count-0", "size": 812, "sha256": "ab...", "unaligned": true, "persisted_bytes": 5120}

An earlier streamflow would restore such a checkpoint without its in-flight records, so
it must refuse the version instead. A checkpoint without shared files or channel state is
written as version 1, so earlier versions of streamflow still read it (every savepoint
is). ``format_version`` is a major version: a
reader refuses any version it does not know, by name, rather than guess at the meaning
of fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streamflow.checkpoint.shared_files import SharedFile, uploaded_for
from streamflow.core.ids import CheckpointId
from streamflow.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "CheckpointMetadata",
    "OperatorStateMeta",
    "StateHandle",
    "UnsupportedCheckpointVersionError",
]

FORMAT_VERSION = 3
"""The newest version written and read; 1 and 2 are read too (see the module docstring)."""
READ_VERSIONS = frozenset({1, 2, 3})


class UnsupportedCheckpointVersionError(CheckpointError):
    """The metadata was written in a format version this streamflow cannot read.

    Not retriable (restarting runs the same code) and not a sign of damage: storage does
    not skip such a checkpoint in favour of an older one but raises. Fields:
    ``found`` and ``supported``.
    """

    retriable = False
    found: object
    supported: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StateHandle:
    """Where one subtask's snapshot lives inside a checkpoint directory.

    Attributes:
        file: file name relative to the ``chk-<n>`` directory.
        size: payload size in bytes (without the file's checksum header).
        sha256: hex SHA-256 of the payload.
        shared: the files of the job's ``shared/`` folder the state also needs.
        unaligned: the subtask took this checkpoint unaligned (its head operator's
            state file holds the channel state).
        persisted_bytes: bytes of in-flight records in that channel state.
    """

    file: str
    size: int
    sha256: str
    shared: tuple[SharedFile, ...] = ()
    unaligned: bool = False
    persisted_bytes: int = 0

    def with_channel_state(self, persisted_bytes: int) -> StateHandle:
        """This handle, marked as holding the channel state of an unaligned checkpoint."""
        return StateHandle(
            file=self.file, size=self.size, sha256=self.sha256, shared=self.shared, unaligned=True,
            persisted_bytes=persisted_bytes,
        )

    @property
    def total_size(self) -> int:
        """The state file and its shared files (some shared with other checkpoints)."""
        return self.size + sum(shared.size for shared in self.shared)

    def written_for(self, checkpoint_id: int) -> int:
        """The bytes written for checkpoint ``checkpoint_id``: the state file and the
        shared files uploaded for it (not those reused from earlier checkpoints)."""
        return self.size + sum(shared.size for shared in self.shared if uploaded_for(shared.name) == checkpoint_id)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.file, "size": self.size, "sha256": self.sha256}
        if self.shared:
            data["shared"] = [shared.to_dict() for shared in self.shared]
        if self.unaligned:
            data["unaligned"] = True
            data["persisted_bytes"] = self.persisted_bytes
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateHandle:
        file, size, sha256 = data["file"], data["size"], data["sha256"]
        if not isinstance(file, str) or not isinstance(sha256, str):
            raise CheckpointError(f"state handle has a non-string file or sha256: {dict(data)!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise CheckpointError(f"state handle has an invalid size: {dict(data)!r}")
        shared = data.get("shared", [])
        if not isinstance(shared, list):
            raise CheckpointError(f"state handle lists its shared files as a {type(shared).__name__}: {dict(data)!r}")
        unaligned, persisted = data.get("unaligned", False), data.get("persisted_bytes", 0)
        if not isinstance(unaligned, bool) or isinstance(persisted, bool) or not isinstance(persisted, int):
            raise CheckpointError(f"state handle has an invalid unaligned or persisted_bytes: {dict(data)!r}")
        return cls(
            file=file, size=size, sha256=sha256, shared=tuple(SharedFile.from_dict(s) for s in shared),
            unaligned=unaligned, persisted_bytes=persisted,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorStateMeta:
    """The state of one operator uid: its parallelism at snapshot time and one handle per
    subtask that had state (stateless subtasks are absent).

    ``max_parallelism`` is recorded because keyed state is split by key group; a restore
    with a different parallelism redistributes key groups, but a different max
    parallelism cannot be restored.
    """

    parallelism: int
    max_parallelism: int
    subtasks: Mapping[int, StateHandle] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "parallelism": self.parallelism,
            "max_parallelism": self.max_parallelism,
            "subtasks": {str(index): handle.to_dict() for index, handle in sorted(self.subtasks.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatorStateMeta:
        subtasks = {int(index): StateHandle.from_dict(handle) for index, handle in data["subtasks"].items()}
        return cls(
            parallelism=int(data["parallelism"]),
            max_parallelism=int(data["max_parallelism"]),
            subtasks=subtasks,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointMetadata:
    """The ``_metadata`` record of one checkpoint (or savepoint).

    Attributes:
        job_name: the job that wrote it (a restore checks it is the same job).
        checkpoint_id: n of ``chk-<n>``.
        timestamp: wall-clock seconds when the checkpoint was triggered.
        is_savepoint: True for user-triggered savepoints.
        operators: operator uid -> its state.
        format_version: the major version it was read in (written: 2 when a handle
            lists shared files, else 1; see the module docstring).
    """

    job_name: str
    checkpoint_id: CheckpointId
    timestamp: float
    is_savepoint: bool = False
    operators: Mapping[str, OperatorStateMeta] = field(default_factory=dict)
    format_version: int = field(default=1, compare=False)  # as read; what is written follows the handles

    def handles(self) -> Iterator[tuple[str, int, StateHandle]]:
        """Every ``(operator uid, subtask, handle)``, in a stable order."""
        for uid in sorted(self.operators):
            for subtask, handle in sorted(self.operators[uid].subtasks.items()):
                yield uid, subtask, handle

    def shared_files(self) -> list[SharedFile]:
        """Every shared file a handle lists (a file several subtasks share, once)."""
        found = {shared.name: shared for _uid, _subtask, handle in self.handles() for shared in handle.shared}
        return [found[name] for name in sorted(found)]

    def to_json(self) -> bytes:
        """The JSON of ``_metadata``: version 3 when a handle holds channel state, 2 when
        one lists shared files, else 1."""
        handles = [handle for _uid, _subtask, handle in self.handles()]
        version = 3 if any(h.unaligned for h in handles) else 2 if any(h.shared for h in handles) else 1
        return orjson.dumps(
            {
                "format_version": version,
                "job_name": self.job_name,
                "checkpoint_id": self.checkpoint_id,
                "timestamp": self.timestamp,
                "is_savepoint": self.is_savepoint,
                "operators": {uid: meta.to_dict() for uid, meta in sorted(self.operators.items())},
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> CheckpointMetadata:
        """Parse ``_metadata`` JSON.

        Raises:
            UnsupportedCheckpointVersionError: ``format_version`` is not one this code reads.
            CheckpointError: the JSON does not parse or misses or mistypes a field.
        """
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CheckpointError(f"checkpoint metadata is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise CheckpointError(f"checkpoint metadata must be a JSON object, got {type(raw).__name__}")
        version = raw.get("format_version")
        if version not in READ_VERSIONS or isinstance(version, bool):
            raise UnsupportedCheckpointVersionError(
                f"checkpoint metadata has format_version {version!r}, but this streamflow "
                f"only reads format_version {', '.join(map(str, sorted(READ_VERSIONS)))}; use the streamflow "
                "version that wrote it",
                found=version,
                supported=FORMAT_VERSION,
            )
        try:
            return cls(
                job_name=str(raw["job_name"]),
                checkpoint_id=CheckpointId(int(raw["checkpoint_id"])),
                timestamp=float(raw["timestamp"]),
                is_savepoint=bool(raw.get("is_savepoint", False)),
                operators={str(uid): OperatorStateMeta.from_dict(meta) for uid, meta in raw["operators"].items()},
                format_version=version,
            )
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint metadata is missing or mistypes a field: {exc!r}") from exc
