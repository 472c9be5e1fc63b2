"""The retry and error-mapping logic of TransactionCoordinator, with a scripted fake in
place of aiokafka's client. What the real broker answers is checked in tests/kafka; here
only what the sink does with each answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import NodeNotReadyError

from streamflow.connectors.kafka import txn_resume
from streamflow.connectors.kafka.txn_resume import PreparedTxn, TransactionCoordinator
from streamflow.errors import ConfigError, ConnectorError, DataLossError

# The message's "started N s ago" is checked only for its shape: the module is imported
# at collection, minutes before the test runs in a long suite.
TXN = PreparedTxn(transactional_id="job-out-0of1-0", producer_id=7, epoch=3, checkpoint_id=12,
                  records=5, started_at=time.time() - 3600)


@dataclass
class Answer:
    error_code: int


@dataclass
class ScriptedClient:
    """Answers each request with the next scripted error code (or raises it)."""

    script: list[int | Exception]
    lookups: int = 0
    sent: list[Any] = field(default_factory=list)

    async def coordinator_lookup(self, kind: Any, key: str) -> int:
        self.lookups += 1
        return 1

    async def send(self, node: int, request: Any, *, group: Any) -> Answer:
        self.sent.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return Answer(step)


def coordinator(*script: int | Exception, deadline: float = 5.0) -> tuple[TransactionCoordinator, ScriptedClient]:
    c = TransactionCoordinator("k:9092", {}, where="KafkaSink 'out'[0]", deadline=deadline)
    fake = ScriptedClient(list(script))
    c._client = fake  # type: ignore[assignment]
    return c, fake


async def test_commit_retries_coordinator_moves_loads_and_concurrent_transactions() -> None:
    c, fake = coordinator(txn_resume.CONCURRENT_TRANSACTIONS, txn_resume.NOT_COORDINATOR,
                          txn_resume.COORDINATOR_LOAD_IN_PROGRESS, NodeNotReadyError("down"), 0)
    await c.commit(TXN, transaction_timeout=900)
    assert len(fake.sent) == 5
    assert fake.lookups == 3  # looked up again after NOT_COORDINATOR and the lost connection
    request = fake.sent[-1]
    assert (request._transactional_id, request._producer_id, request._producer_epoch,
            request._transaction_result) == ("job-out-0of1-0", 7, 3, True)


@pytest.mark.parametrize(
    ("code", "match"),
    [
        (txn_resume.INVALID_PRODUCER_EPOCH, r"broker fenced its producer: either the transaction ran past the "
                                            r"sink's transaction_timeout \(900 s; it started \d+ s ago\)"),
        (txn_resume.PRODUCER_FENCED, "broker fenced its producer"),
        (txn_resume.INVALID_PRODUCER_ID_MAPPING, "does not know this producer id"),
        (txn_resume.INVALID_TXN_STATE, "no longer open on the broker"),
    ],
)
async def test_a_transaction_that_cannot_be_committed_is_data_loss(code: int, match: str) -> None:
    c, _ = coordinator(code)
    with pytest.raises(DataLossError, match=match) as info:
        await c.commit(TXN, transaction_timeout=900)
    err = info.value
    assert "data may be lost: transaction 'job-out-0of1-0' (producer id 7, epoch 3) holding 5 records" in str(err)
    assert "completed checkpoint 12" in str(err)
    assert (err.checkpoint_id, err.error_code, err.retriable) == (12, code, False)


async def test_retries_stop_at_the_deadline_with_a_retriable_error() -> None:
    c, _ = coordinator(*[txn_resume.COORDINATOR_LOAD_IN_PROGRESS] * 50, deadline=0.1)
    with pytest.raises(ConnectorError, match=r"could not commit transaction .* within 0 s \(last: "
                                             r"COORDINATOR_LOAD_IN_PROGRESS\)") as info:
        await c.commit(TXN, transaction_timeout=900)
    assert info.value.retriable and not isinstance(info.value, DataLossError)


async def test_abort_maps_the_brokers_timeout_limit_to_a_config_error() -> None:
    c, fake = coordinator(txn_resume.CONCURRENT_TRANSACTIONS, 0)
    await c.abort("job-out-0of1-1", 120.0)  # the first answer only starts the abort
    assert [r._transaction_timeout_ms for r in fake.sent] == [120_000, 120_000]
    c, _ = coordinator(txn_resume.INVALID_TRANSACTION_TIMEOUT)
    with pytest.raises(ConfigError, match="transaction_timeout=3600 s is longer than the broker allows .*"
                                          "transaction.max.timeout.ms"):
        await c.abort("job-out-0of1-1", 3600.0)


@pytest.mark.parametrize("handle", [None, {"transactional_id": "x"}, {"transactional_id": "x", "producer_id": "p",
                                                                      "epoch": 0, "checkpoint_id": 1, "records": 1}])
def test_a_foreign_handle_is_a_clear_error(handle: Any) -> None:
    with pytest.raises(ConnectorError, match="not a Kafka sink transaction handle"):
        PreparedTxn.from_handle(handle)


def test_handles_round_trip() -> None:
    assert PreparedTxn.from_handle(TXN.to_handle()) == TXN
    assert PreparedTxn.from_handle({**TXN.to_handle(), "transactional_id": None}).empty
