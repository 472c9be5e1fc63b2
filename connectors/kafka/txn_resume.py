"""Finishing and fencing Kafka transactions without a producer of their own.

After a restart the sink must commit transactions that an earlier process prepared, and
abort the ones it left open. aiokafka's producer cannot do either: its ``start()`` sends
InitProducerId, which *aborts* the open transaction of its id and bumps the epoch. So,
like Flink, the sink resumes a prepared transaction from the producer id and epoch stored
in the checkpoint and talks to the transaction coordinator directly:

* commit: FindCoordinator(key type transaction) -> EndTxn v0(id, producer id, epoch,
  commit). EndTxn(commit) of a transaction already committed with the same producer id
  and epoch answers NONE on the broker (checked on Kafka 3.9), so commit is idempotent.
* abort: InitProducerId v0(id) -> the coordinator aborts whatever is open for the id and
  fences its producer (CONCURRENT_TRANSACTIONS until the abort markers are written, then
  NONE with the next epoch).

A prepared transaction that can no longer be committed is a :class:`DataLossError`:
the broker fenced it (INVALID_PRODUCER_EPOCH / PRODUCER_FENCED: aborted after
``transaction_timeout``, or another producer took the id), does not know it
(INVALID_PRODUCER_ID_MAPPING), or has it aborted (INVALID_TXN_STATE). Coordinator moves
and loads (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS) and
CONCURRENT_TRANSACTIONS are retried with backoff until ``deadline`` seconds have passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.transaction import EndTxnRequest, InitProducerIdRequest

from streamflow.connectors.kafka.clients import start_client, watch_client
from streamflow.connectors.kafka.txn_listing import list_open_transactions
from streamflow.errors import ConfigError, ConnectorError, DataLossError

__all__ = ["CLIENT_SETTINGS", "PreparedTxn", "TransactionCoordinator"]

# Kafka error codes (org.apache.kafka.common.protocol.Errors); aiokafka lacks PRODUCER_FENCED.
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
PRODUCER_FENCED = 90

_NAMES = {
    COORDINATOR_LOAD_IN_PROGRESS: "COORDINATOR_LOAD_IN_PROGRESS", COORDINATOR_NOT_AVAILABLE: "COORDINATOR_NOT_AVAILABLE",
    NOT_COORDINATOR: "NOT_COORDINATOR", INVALID_PRODUCER_EPOCH: "INVALID_PRODUCER_EPOCH",
    INVALID_TXN_STATE: "INVALID_TXN_STATE", INVALID_PRODUCER_ID_MAPPING: "INVALID_PRODUCER_ID_MAPPING",
    INVALID_TRANSACTION_TIMEOUT: "INVALID_TRANSACTION_TIMEOUT", CONCURRENT_TRANSACTIONS: "CONCURRENT_TRANSACTIONS",
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", PRODUCER_FENCED: "PRODUCER_FENCED",
}


def error_name(code: int) -> str:
    """Kafka's name of an error code (aiokafka names some codes after consumer groups)."""
    return _NAMES.get(code) or for_code(code).__name__


_RETRIABLE = frozenset({COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
                        CONCURRENT_TRANSACTIONS})
_COORDINATOR_MOVED = frozenset({COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR})

CLIENT_SETTINGS = frozenset({
    "client_id", "metadata_max_age_ms", "request_timeout_ms", "retry_backoff_ms",
    "security_protocol", "ssl_context", "connections_max_idle_ms", "sasl_mechanism",
    "sasl_plain_username", "sasl_plain_password", "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name", "sasl_oauth_token_provider",
})
"""Producer settings that also apply to the coordinator client (connection, security)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedTxn:
    """A transaction whose records are all on the broker, waiting for EndTxn(commit).

    This is the sink's checkpointed handle (:meth:`to_handle` / :meth:`from_handle`);
    ``records == 0`` marks an empty transaction that never reached Kafka.
    """

    transactional_id: str | None
    producer_id: int
    epoch: int
    checkpoint_id: int
    records: int
    started_at: float  # wall-clock seconds of the transaction's first record

    def to_handle(self) -> dict[str, Any]:
        return {
            "transactional_id": self.transactional_id,
            "producer_id": self.producer_id,
            "epoch": self.epoch,
            "checkpoint_id": self.checkpoint_id,
            "records": self.records,
            "started_at": self.started_at,
        }

    @classmethod
    def from_handle(cls, handle: Any) -> PreparedTxn:
        try:
            tid = handle["transactional_id"]
            return cls(
                transactional_id=None if tid is None else str(tid),
                producer_id=int(handle["producer_id"]),
                epoch=int(handle["epoch"]),
                checkpoint_id=int(handle["checkpoint_id"]),
                records=int(handle["records"]),
                started_at=float(handle.get("started_at", 0.0)),
            )
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ConnectorError(
                f"not a Kafka sink transaction handle: {handle!r}; was the sink's uid used by "
                "another sink type before? Give the sink a new uid or restore a matching checkpoint.",
                handle=repr(handle),
            ) from exc

    @property
    def empty(self) -> bool:
        return self.records == 0 or self.transactional_id is None


class TransactionCoordinator:
    """One low-level aiokafka client speaking to transaction coordinators for a writer."""

    def __init__(self, bootstrap_servers: str, settings: Mapping[str, Any], *, where: str,
                 deadline: float = 60.0) -> None:
        self._client = AIOKafkaClient(
            bootstrap_servers=bootstrap_servers,
            **{k: v for k, v in settings.items() if k in CLIENT_SETTINGS},
        )
        self._where = where
        self._deadline = deadline
        self._started = False
        watch_client(self._client, f"{where} (transaction coordinator)")

    async def start(self) -> None:
        try:
            await start_client(self._client.bootstrap(), self._where)
        except BaseException as exc:  # cancelled too: a half-bootstrapped client holds sockets
            await self._client.close()
            if isinstance(exc, KafkaError):
                raise ConnectorError(f"{self._where}: cannot reach the Kafka brokers: {exc!r}") from exc
            raise
        self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._client.close()

    async def commit(self, txn: PreparedTxn, *, transaction_timeout: float) -> None:
        """EndTxn(commit) for ``txn``; idempotent. DataLossError if it cannot be committed."""
        assert txn.transactional_id is not None  # empty transactions are never sent here
        tid = txn.transactional_id
        code = await self._call(tid, lambda: EndTxnRequest(tid, txn.producer_id, txn.epoch, True),
                                f"commit transaction {tid!r}")
        if code == 0:
            return
        raise lost_error(self._where, txn, code, transaction_timeout=transaction_timeout)

    async def open_transactions(self, prefix: str) -> list[str] | None:
        """Transactional ids starting with ``prefix`` that have a transaction open on the
        brokers, or None if the brokers cannot tell (see :mod:`.txn_listing`)."""
        return await list_open_transactions(self._client, prefix, self._where)

    async def abort(self, tid: str, transaction_timeout: float) -> None:
        """Abort whatever transaction ``tid`` has open (InitProducerId fences its producer)."""
        timeout_ms = int(transaction_timeout * 1000)
        code = await self._call(tid, lambda: InitProducerIdRequest(tid, timeout_ms),
                                f"abort the open transaction of {tid!r}")
        if code == 0:
            return
        if code == INVALID_TRANSACTION_TIMEOUT:
            raise timeout_too_long_error(self._where, transaction_timeout)
        raise self._error(code, f"abort the open transaction of {tid!r}")

    async def _call(self, tid: str, make: Any, action: str) -> int:
        """Send ``make()`` to ``tid``'s coordinator, retrying retriable outcomes; returns the
        first non-retriable error code (0 on success)."""
        deadline = time.monotonic() + self._deadline
        backoff = 0.02
        node: int | None = None
        last: str = "no answer"
        while True:
            try:
                if node is None:
                    node = await self._client.coordinator_lookup(CoordinationType.TRANSACTION, tid)
                response = await self._client.send(node, make(), group=ConnectionGroup.COORDINATION)
                code = int(response.error_code)
            except KafkaError as exc:
                if getattr(exc, "errno", None) == TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
                    raise self._error(TRANSACTIONAL_ID_AUTHORIZATION_FAILED, action) from exc
                if not exc.retriable and not _is_connection_error(exc):
                    raise ConnectorError(f"{self._where}: cannot {action}: {exc!r}") from exc
                node, last = None, repr(exc)
            else:
                if code not in _RETRIABLE:
                    return code
                if code in _COORDINATOR_MOVED:
                    node = None
                last = error_name(code)
            if time.monotonic() + backoff > deadline:
                raise ConnectorError(
                    f"{self._where}: could not {action} within {self._deadline:.0f} s (last: "
                    f"{last}); is the broker up and its transaction coordinator loaded?"
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _error(self, code: int, action: str) -> ConnectorError:
        if code == TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            return ConnectorError(
                f"{self._where}: cannot {action}: not authorized for this transactional id; "
                "grant WRITE and DESCRIBE on transactional ids starting with the sink's "
                "transactional_id_prefix",
            )
        return ConnectorError(f"{self._where}: cannot {action}: broker error {error_name(code)} ({code})")


def _is_connection_error(exc: KafkaError) -> bool:
    return type(exc).__name__ in {"KafkaConnectionError", "NodeNotReadyError", "RequestTimedOutError"}


def timeout_too_long_error(where: str, transaction_timeout: float) -> ConfigError:
    return ConfigError(
        f"{where}: transaction_timeout={transaction_timeout:g} s is longer than the broker "
        "allows (broker setting transaction.max.timeout.ms, 900 s by default); lower the "
        "sink's transaction_timeout or raise transaction.max.timeout.ms on the brokers",
        value=transaction_timeout,
    )


def lost_error(where: str, txn: PreparedTxn, code: int, *, transaction_timeout: float) -> DataLossError:
    """The DataLossError for a prepared transaction the broker refused to commit with ``code``."""
    age = time.time() - txn.started_at if txn.started_at else None
    age_text = f"it started {age:.0f} s ago" if age is not None else "its start time is unknown"
    if code in (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED):
        why = (
            f"the broker fenced its producer: either the transaction ran past the sink's "
            f"transaction_timeout ({transaction_timeout:g} s; {age_text}) and the broker "
            "aborted it, or another producer initialised the same transactional id (two jobs "
            "sharing transactional_id_prefix and sink uid?)"
        )
    elif code == INVALID_PRODUCER_ID_MAPPING:
        why = (
            "the broker does not know this producer id for the transactional id: the id "
            "expired (broker setting transactional.id.expiration.ms) or another producer took it over"
        )
    elif code == INVALID_TXN_STATE:
        why = (
            f"the transaction is no longer open on the broker: it was aborted, e.g. after "
            f"transaction_timeout ({transaction_timeout:g} s; {age_text})"
        )
    else:
        why = f"the broker answered {error_name(code)} ({code})"
    return DataLossError(
        f"{where}: data may be lost: transaction {txn.transactional_id!r} (producer id "
        f"{txn.producer_id}, epoch {txn.epoch}) holding {txn.records} records of completed "
        f"checkpoint {txn.checkpoint_id} cannot be committed: {why}. Restarting cannot bring "
        "these records back; replay the input from before that checkpoint if the output must "
        "be complete, and set transaction_timeout above the longest expected checkpoint "
        "interval plus downtime.",
        checkpoint_id=txn.checkpoint_id,
        transactional_id=txn.transactional_id,
        error_code=code,
    )
