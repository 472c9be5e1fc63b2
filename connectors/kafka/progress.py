"""The offsets each KafkaSource subtask snapshotted, by job run and checkpoint, for sinks
that store them next to their results (``MySqlOffsetsSink``).

A job runs in one process, and barriers reach a sink only after every source subtask
upstream has snapshotted the same checkpoint, so when a sink snapshots checkpoint n the
board holds every source subtask's offsets for n. Entries are keyed by the run id
(``SourceContext.run_id``), so two jobs in one process never mix.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamflow.errors import StateError

__all__ = ["BOARD", "OffsetsBoard"]

TopicPartition = tuple[str, int]
_KEPT = 16  # checkpoints kept per source subtask (a sink commits far fewer behind)
_RUNS_KEPT = 32  # job runs kept, most recently published first: a process may run many jobs


@dataclass(slots=True)
class _Source:
    parallelism: int
    by_subtask: dict[int, dict[int, dict[TopicPartition, int]]] = field(default_factory=dict)


class OffsetsBoard:
    def __init__(self) -> None:
        self._runs: dict[str, dict[str, _Source]] = {}
        self._lock = threading.Lock()

    def publish(self, run_id: str, source_uid: str, subtask: int, parallelism: int, checkpoint_id: int,
                offsets: Mapping[TopicPartition, int]) -> None:
        """Record the NEXT offsets ``subtask`` of ``source_uid`` stored in checkpoint n."""
        with self._lock:
            sources = self._runs.pop(run_id, {})
            self._runs[run_id] = sources  # now the most recent
            while len(self._runs) > _RUNS_KEPT:
                del self._runs[next(iter(self._runs))]
            source = sources.get(source_uid)
            if source is None or source.parallelism != parallelism:
                source = sources[source_uid] = _Source(parallelism)
            kept = source.by_subtask.setdefault(subtask, {})
            for stale in [c for c in kept if c >= checkpoint_id]:  # left by a failed attempt
                del kept[stale]
            kept[checkpoint_id] = dict(offsets)
            while len(kept) > _KEPT:
                del kept[min(kept)]

    def offsets_at(self, run_id: str, checkpoint_id: int, source_uid: str | None = None
                   ) -> dict[TopicPartition, int]:
        """The offsets of every subtask of the run's Kafka sources (or of ``source_uid``)
        as of checkpoint n: each subtask's latest snapshot at or before n."""
        with self._lock:
            sources = dict(self._runs.get(run_id, {}))
        if source_uid is not None:
            sources = {source_uid: sources[source_uid]} if source_uid in sources else {}
        if not sources:
            which = f"KafkaSource {source_uid!r}" if source_uid else "KafkaSource"
            raise StateError(f"no {which} of this job snapshotted offsets before checkpoint {checkpoint_id}; "
                             "storing source offsets needs a KafkaSource upstream of the sink")
        merged: dict[TopicPartition, int] = {}
        for uid, source in sources.items():
            for subtask in range(source.parallelism):
                taken = [c for c in source.by_subtask.get(subtask, {}) if c <= checkpoint_id]
                if not taken:
                    raise StateError(f"KafkaSource {uid!r} subtask {subtask} has no offsets for checkpoint "
                                     f"{checkpoint_id}; please report it", operator=uid)
                merged.update(source.by_subtask[subtask][max(taken)])
        return merged

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)


BOARD = OffsetsBoard()
"""The process's board: KafkaSource readers publish, offset-storing sinks read."""
