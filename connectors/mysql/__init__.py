"""MySQL and MariaDB: an exactly-once XA sink, an at-least-once upsert sink, and a sink
that stores results and Kafka source offsets in one local transaction (see
docs/architecture.md, "Two-phase-commit sinks")."""

from streamflow.api.delivery import DeliveryGuarantee
from streamflow.connectors.mysql.connection import MySqlAddress, parse_mysql_url
from streamflow.connectors.mysql.offsets_sink import MySqlOffsetsSink, load_offsets
from streamflow.connectors.mysql.sink import MySqlSink
from streamflow.connectors.mysql.statements import MySqlStatementError

__all__ = [
    "DeliveryGuarantee", "MySqlAddress", "MySqlOffsetsSink", "MySqlSink", "MySqlStatementError",
    "load_offsets", "parse_mysql_url",
]
