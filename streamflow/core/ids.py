"""Ids as distinct types: a checkpoint id is not any int, an operator uid not any str."""

from __future__ import annotations

from typing import NewType

CheckpointId = NewType("CheckpointId", int)
OperatorUid = NewType("OperatorUid", str)

TaskKey = tuple[str, int]
"""One operator subtask: ``(operator uid, subtask index)``; what acks and declines name."""
