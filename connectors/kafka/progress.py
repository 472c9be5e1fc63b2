"""The offsets each KafkaSource subtask snapshotted, by checkpoint, for sinks that store
them next to their results (``MySqlOffsetsSink``).

Each job run has its own board (``ctx.services.shared(OffsetsBoard)``: readers publish,
offset-storing sinks read), so two jobs in one process never mix. Barriers reach a sink
only after every source subtask upstream has snapshotted the same checkpoint, so when a
sink snapshots checkpoint n the board holds every source subtask's offsets for n. The
board outlives a failed attempt of the run: what the next attempt publishes replaces
what the failed one did for the same checkpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamflow.errors import StateError

__all__ = ["OffsetsBoard"]

TopicPartition = tuple[str, int]
_KEPT = 16  # checkpoints kept per source subtask (a sink commits far fewer behind)


@dataclass(slots=True)
class _Source:
    parallelism: int
    by_subtask: dict[int, dict[int, dict[TopicPartition, int]]] = field(default_factory=dict)


class OffsetsBoard:
    """One job run's offsets, per Kafka source, subtask and checkpoint."""

    def __init__(self) -> None:
        self._sources: dict[str, _Source] = {}
        self._lock = threading.Lock()

    def publish(self, source_uid: str, subtask: int, parallelism: int, checkpoint_id: int,
                offsets: Mapping[TopicPartition, int]) -> None:
        """Record the NEXT offsets ``subtask`` of ``source_uid`` stored in checkpoint n."""
        with self._lock:
            source = self._sources.get(source_uid)
            if source is None or source.parallelism != parallelism:
                source = self._sources[source_uid] = _Source(parallelism)
            kept = source.by_subtask.setdefault(subtask, {})
            for stale in [c for c in kept if c >= checkpoint_id]:  # left by a failed attempt
                del kept[stale]
            kept[checkpoint_id] = dict(offsets)
            while len(kept) > _KEPT:
                del kept[min(kept)]

    def offsets_at(self, checkpoint_id: int, source_uid: str | None = None) -> dict[TopicPartition, int]:
        """The offsets of every subtask of the run's Kafka sources (or of ``source_uid``)
        as of checkpoint n: each subtask's latest snapshot at or before n."""
        with self._lock:
            sources = dict(self._sources)
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
