"""Sources and sinks, importable as ``streamflow.connectors`` (never as ``connectors``).

Delivery guarantees:

=========================  ==========================================================
CollectionSource           exactly-once (replayable, bounded)
FileSource                 exactly-once (replayable from byte offsets, bounded)
KafkaSource                exactly-once (replayable: offsets in checkpoints; bounded or not)
SocketTextSource           at-most-once (a socket cannot replay; unbounded)
PrintSink, CollectSink     at-least-once (records appear when written)
ExactlyOnceFileSink        exactly-once (two-phase commit: pending file, atomic rename)
ExactlyOnceSqliteSink      exactly-once (two-phase commit: staged rows + commit marker)
KafkaSink                  none, at-least-once (flush at each barrier) or exactly-once
                           (two-phase commit: Kafka transactions; read_committed readers)
=========================  ==========================================================
"""

from __future__ import annotations

from streamflow.connectors.collection import CollectionSource
from streamflow.connectors.debug import CollectSink, PrintSink
from streamflow.connectors.file_sink import ExactlyOnceFileSink, read_committed_lines
from streamflow.connectors.files import FileSource
from streamflow.connectors.kafka import DeliveryGuarantee, KafkaSink, KafkaSource
from streamflow.connectors.socket import SocketTextSource
from streamflow.connectors.sqlite import ExactlyOnceSqliteSink

__all__ = [
    "CollectSink",
    "CollectionSource",
    "DeliveryGuarantee",
    "ExactlyOnceFileSink",
    "ExactlyOnceSqliteSink",
    "FileSource",
    "KafkaSink",
    "KafkaSource",
    "PrintSink",
    "SocketTextSource",
    "read_committed_lines",
]
