"""Which transactions are open on the brokers: Kafka's ListTransactions (KIP-664).

The exactly-once sink aborts the open transactions its earlier runs left behind. Those
of its own transactional ids it can name; those of a run at another parallelism (or with
a larger id pool) it cannot, without trying every parallelism there could have been. So
it asks the brokers: ListTransactions (API key 66, Kafka 3.0+) returns, from every broker,
the transactions it coordinates, filtered by state. aiokafka does not speak it, so its
request and response are declared here from Kafka's protocol definition (version 0, a
"flexible" version: compact strings and arrays, tagged fields).

Needs DESCRIBE on the transactional ids (a broker lists only what the client may see).
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

from aiokafka.errors import IncompatibleBrokerVersion, KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

__all__ = ["ListTransactionsRequest", "ONGOING", "list_open_transactions"]

_log = logging.getLogger("streamflow.connectors.kafka")

ONGOING = "Ongoing"
"""The state of a transaction that has begun and is neither committed nor aborted."""


class ListTransactionsResponse_v0(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 66
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("unknown_state_filters", CompactArray(CompactString("utf-8"))),
        (
            "transaction_states",
            CompactArray(
                ("transactional_id", CompactString("utf-8")),
                ("producer_id", Int64),
                ("transaction_state", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class ListTransactionsRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 66
    API_VERSION = 0
    RESPONSE_TYPE = ListTransactionsResponse_v0
    SCHEMA = Schema(
        ("state_filters", CompactArray(CompactString("utf-8"))),
        ("producer_id_filters", CompactArray(Int64)),
        ("tags", TaggedFields),
    )


ListTransactionsRequestStruct: TypeAlias = ListTransactionsRequest_v0


class ListTransactionsRequest(Request[ListTransactionsRequestStruct]):  # type: ignore[misc]
    """The transactions of the given states (all states if empty) a broker coordinates."""

    API_KEY = 66

    def __init__(self, states: list[str]) -> None:
        self._states = states

    def build(self, request_struct_class: type[ListTransactionsRequestStruct]) -> ListTransactionsRequestStruct:
        return request_struct_class(self._states, [], {})


async def list_open_transactions(client: Any, prefix: str, where: str) -> list[str] | None:
    """The transactional ids starting with ``prefix`` that have a transaction open on any
    broker of ``client``'s cluster (an ``AIOKafkaClient`` that has bootstrapped).

    Returns None when that cannot be known (a broker older than Kafka 3.0, one that
    refuses or cannot be reached): the caller then goes without, saying so.
    """
    found: set[str] = set()
    for broker in client.cluster.brokers():
        try:
            response = await client.send(broker.nodeId, ListTransactionsRequest([ONGOING]))
        except IncompatibleBrokerVersion:
            _log.info("%s: the brokers do not list transactions (Kafka before 3.0); open transactions of "
                      "earlier runs at another parallelism are left to time out", where)
            return None
        except KafkaError as exc:
            _log.warning("%s: listing the open transactions of broker %s failed (%r); open transactions of "
                         "earlier runs at another parallelism may hold back read_committed readers until they "
                         "time out", where, broker.nodeId, exc)
            return None
        if response.error_code != 0:
            _log.warning("%s: broker %s refused to list its open transactions (error code %d); open "
                         "transactions of earlier runs at another parallelism may hold back read_committed "
                         "readers until they time out", where, broker.nodeId, response.error_code)
            return None
        found.update(tid for tid, _pid, state, _tags in response.transaction_states
                     if state == ONGOING and tid.startswith(prefix))
    return sorted(found)
