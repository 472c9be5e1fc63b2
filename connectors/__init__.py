"""Sources and sinks, importable as ``streamflow.connectors`` (never as ``connectors``).

The built-in connectors, and the contract to write your own, from one place:

- a source: :class:`GeneratorSource` (one async generator, its position kept in the
  checkpoint), or the full :class:`Source` / :class:`SourceReader` contract
  (:class:`SourceReaderBase` has the no-op steps);
- a sink: :class:`Sink` / :class:`SinkWriter` (:class:`SinkWriterBase` has the no-op
  steps; a writer may keep operator state through ``initialize_state`` /
  ``snapshot_state``), and :class:`TwoPhaseCommitSinkWriter` for exactly-once output.

The README sections "Write your own source" and "Write your own exactly-once sink" walk
through both.

Delivery guarantees:

=========================  ==========================================================
CollectionSource           exactly-once (replayable, bounded)
FileSource                 exactly-once (replayable from byte offsets, bounded)
GeneratorSource            exactly-once when the generator replays from a position
KafkaSource                exactly-once (replayable: offsets in checkpoints; bounded or not)
SocketTextSource           at-most-once (a socket cannot replay; unbounded)
PrintSink, CollectSink     at-least-once (records appear when written)
DiscardingSink             none needed (records are dropped)
ExactlyOnceFileSink        exactly-once (two-phase commit: pending file, atomic rename)
ExactlyOnceSqliteSink      exactly-once (two-phase commit: staged rows + commit marker)
KafkaSink                  none, at-least-once (flush at each barrier) or exactly-once
                           (two-phase commit: Kafka transactions; read_committed readers)
=========================  ==========================================================
"""

from __future__ import annotations

from streamflow.api.connector import (
    RecordFailure,
    Sink,
    SinkContext,
    SinkWriter,
    SinkWriterBase,
    Source,
    SourceBatch,
    SourceContext,
    SourceReader,
    SourceReaderBase,
)
from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink, PrintSink
from streamflow.connectors.discarding import DiscardingSink
from streamflow.connectors.file_sink import ExactlyOnceFileSink, read_committed_lines
from streamflow.connectors.files import FileSource
from streamflow.connectors.generator import GeneratorContext, GeneratorSource
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.connectors.socket import SocketTextSource
from streamflow.connectors.sqlite import ExactlyOnceSqliteSink
from streamflow.transactions import TwoPhaseCommitSinkWriter

__all__ = [
    "CollectSink",
    "CollectionSource",
    "DeliveryGuarantee",
    "DiscardingSink",
    "ExactlyOnceFileSink",
    "ExactlyOnceSqliteSink",
    "FileSource",
    "GeneratorContext",
    "GeneratorSource",
    "KafkaSink",
    "KafkaSource",
    "PrintSink",
    "RecordFailure",
    "Sink",
    "SinkContext",
    "SinkWriter",
    "SinkWriterBase",
    "SocketTextSource",
    "Source",
    "SourceBatch",
    "SourceContext",
    "SourceReader",
    "SourceReaderBase",
    "TwoPhaseCommitSinkWriter",
    "read_committed_lines",
]
