"""Kafka: a source that keeps its offsets in operator state, a sink with delivery
guarantees none, at-least-once and exactly-once (transactions; docs/architecture.md),
and the exchanges between the workers of a job that runs on several processes."""

from streamflow.connectors.kafka.exchange import KafkaExchange
from streamflow.connectors.kafka.offsets import OffsetReset, StartingOffsets
from streamflow.connectors.kafka.records import KafkaOutput, KafkaRecord
from streamflow.connectors.kafka.sink import DeliveryGuarantee, KafkaSink
from streamflow.connectors.kafka.source import KafkaSource
from streamflow.connectors.kafka.watermarks import BoundedOutOfOrderness

__all__ = [
    "BoundedOutOfOrderness",
    "DeliveryGuarantee",
    "KafkaExchange",
    "KafkaOutput",
    "KafkaRecord",
    "KafkaSink",
    "KafkaSource",
    "OffsetReset",
    "StartingOffsets",
]
