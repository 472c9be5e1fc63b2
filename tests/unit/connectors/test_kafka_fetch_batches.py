"""Reading fetched Kafka record batches a batch at a time (``connectors/kafka/fetch.py``),
checked against aiokafka's own ``PartitionRecords`` on the same bytes.

Fetch responses are built here from real Kafka v2 record batches (aiokafka's
``DefaultRecordBatchBuilder``; control batches get their attribute bit and CRC by hand):
plain, transactional from two producers (committed and aborted, interleaved), commit and
abort markers, a fetch position inside a batch, a damaged CRC. For each, both readers must
hand out the same records and leave the same fetch position.
"""

from __future__ import annotations

import collections
import struct
from typing import Any

import pytest
from aiokafka.consumer.fetcher import READ_COMMITTED, READ_UNCOMMITTED, FetchError, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import ConsumerRecord, TopicPartition

from streamflow.connectors.kafka import fetch
from streamflow.connectors.kafka.fetch import RecordBatches, read_batches, records_of

TP = TopicPartition("t", 0)
ABORT, COMMIT = 0, 1
_ATTRIBUTES_AT, _CRC_AT, _CONTROL_BIT = 21, 17, 0x20

Entry = tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]  # key, value, headers, timestamp ms


def batch(base: int, entries: list[Entry], *, producer: int = -1, transactional: bool = False) -> bytes:
    builder = DefaultRecordBatchBuilder(2, 0, int(transactional), producer, 0 if producer >= 0 else -1,
                                        0 if producer >= 0 else -1, 1 << 20)
    for delta, (key, value, headers, ts) in enumerate(entries):
        builder.append(delta, ts, key, value, headers)
    raw = builder.build()
    raw[0:8] = struct.pack(">q", base)
    return bytes(raw)


def marker(base: int, producer: int, kind: int) -> bytes:
    """A control batch: one record whose key says commit or abort, the control bit set."""
    raw = bytearray(batch(base, [(struct.pack(">hh", 0, kind), struct.pack(">hi", 0, 0), [], 9)],
                          producer=producer, transactional=True))
    attributes = struct.unpack_from(">h", raw, _ATTRIBUTES_AT)[0] | _CONTROL_BIT
    struct.pack_into(">h", raw, _ATTRIBUTES_AT, attributes)
    struct.pack_into(">I", raw, _CRC_AT, calc_crc32c(bytes(raw[_ATTRIBUTES_AT:])))
    return bytes(raw)


def entries(first: int, count: int) -> list[Entry]:
    return [
        (b"k%d" % i if i % 3 else None, None if i % 5 == 4 else b"v%d" % i,
         [("h", b"%d" % i)] if i % 2 else [], 1_700_000_000_000 + i)
        for i in range(first, first + count)
    ]


def read_by_aiokafka(response: bytes, aborted: list[tuple[int, int]], fetch_offset: int,
                     isolation: int) -> tuple[list[tuple[Any, ...]], int]:
    records = PartitionRecords(TP, MemoryRecords(response), list(aborted), fetch_offset, None, None, True, isolation)
    got = [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in records]
    return got, records.next_fetch_offset


def read_by_batch(response: bytes, aborted: list[tuple[int, int]], fetch_offset: int,
                  isolation: int) -> tuple[list[tuple[Any, ...]], int]:
    batches = RecordBatches(TP, MemoryRecords(response), list(aborted), fetch_offset, check_crcs=True,
                            read_committed=isolation == READ_COMMITTED)
    chunks = list(batches)
    assert all(type(chunk) is list and chunk for chunk in chunks)
    got = [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in records_of(chunks)]
    return got, batches.next_fetch_offset


PLAIN = batch(0, entries(0, 5)) + batch(5, entries(5, 3)) + batch(8, entries(8, 4))
# Producer 1 commits 0-2 (marker 3); producer 2 writes 4-5 and aborts (marker 6);
# producer 1 writes 7-8, producer 2 writes 9 in between, then 1 commits (10), 2 aborts (11);
# producer 2 then writes 12-13 and commits (14); a plain batch 15-16 ends it.
TRANSACTIONS = (
    batch(0, entries(0, 3), producer=1, transactional=True) + marker(3, 1, COMMIT)
    + batch(4, entries(4, 2), producer=2, transactional=True) + marker(6, 2, ABORT)
    + batch(7, entries(7, 2), producer=1, transactional=True)
    + batch(9, entries(9, 1), producer=2, transactional=True)
    + marker(10, 1, COMMIT) + marker(11, 2, ABORT)
    + batch(12, entries(12, 2), producer=2, transactional=True) + marker(14, 2, COMMIT)
    + batch(15, entries(15, 2))
)
ABORTED = [(2, 9), (2, 4)]  # (producer id, first offset), unsorted as a broker may send them


@pytest.mark.parametrize(
    ("response", "aborted", "fetch_offset"),
    [
        (PLAIN, [], 0),
        (PLAIN, [], 3),  # a fetch from inside the first batch: offsets 0-2 were read before
        (PLAIN, [], 5),
        (TRANSACTIONS, ABORTED, 0),
        (TRANSACTIONS, ABORTED, 5),  # inside an aborted transaction
        (TRANSACTIONS, ABORTED, 13),
        (marker(0, 1, COMMIT) + marker(1, 2, ABORT), [(2, 0)], 0),  # nothing to read, position moves on
    ],
    ids=["plain", "plain-inside-a-batch", "plain-at-a-batch", "transactions", "inside-aborted",
         "inside-committed", "markers-only"],
)
@pytest.mark.parametrize("isolation", [READ_COMMITTED, READ_UNCOMMITTED], ids=["committed", "uncommitted"])
def test_record_batches_hand_out_what_aiokafka_hands_out(
    response: bytes, aborted: list[tuple[int, int]], fetch_offset: int, isolation: int
) -> None:
    expected, expected_next = read_by_aiokafka(response, aborted, fetch_offset, isolation)
    got, got_next = read_by_batch(response, aborted, fetch_offset, isolation)
    assert got == expected
    assert got_next == expected_next


def test_read_committed_leaves_out_the_aborted_records_and_every_marker() -> None:
    got, next_offset = read_by_batch(TRANSACTIONS, ABORTED, 0, READ_COMMITTED)
    assert [offset for offset, *_ in got] == [0, 1, 2, 7, 8, 12, 13, 15, 16]
    assert next_offset == 17
    uncommitted, _ = read_by_batch(TRANSACTIONS, ABORTED, 0, READ_UNCOMMITTED)
    assert [offset for offset, *_ in uncommitted] == [0, 1, 2, 4, 5, 7, 8, 9, 12, 13, 15, 16]


def test_a_damaged_batch_raises_as_aiokafka_does() -> None:
    damaged = bytearray(PLAIN)
    damaged[-1] ^= 0xFF  # the last batch's last byte: its CRC no longer checks
    with pytest.raises(CorruptRecordException, match="Invalid CRC"):
        read_by_aiokafka(bytes(damaged), [], 0, READ_COMMITTED)
    with pytest.raises(CorruptRecordException, match="Invalid CRC"):
        read_by_batch(bytes(damaged), [], 0, READ_COMMITTED)


def test_a_batch_that_cannot_be_decoded_raises_and_is_not_skipped() -> None:
    """A codec this client cannot read (here one that does not exist): the error comes out,
    nothing more is handed out of that response, and the fetch position stays before the
    batch, so the next fetch meets it again instead of skipping its records."""
    raw = bytearray(batch(5, entries(5, 3)))
    struct.pack_into(">h", raw, _ATTRIBUTES_AT, struct.unpack_from(">h", raw, _ATTRIBUTES_AT)[0] | 0x06)
    struct.pack_into(">I", raw, _CRC_AT, calc_crc32c(bytes(raw[_ATTRIBUTES_AT:])))
    response = batch(0, entries(0, 5)) + bytes(raw) + batch(8, entries(8, 4))
    batches = RecordBatches(TP, MemoryRecords(response), [], 0, check_crcs=True, read_committed=True)
    assert [r.offset for r in next(batches)] == [0, 1, 2, 3, 4]
    with pytest.raises(UnsupportedCodecError, match="Unknown compression codec"):
        next(batches)
    assert list(batches) == []
    assert batches.next_fetch_offset == 5


def test_records_of_flattens_batches_and_passes_consumer_records_through() -> None:
    consumer_records = [
        ConsumerRecord("t", 0, i, 0, 0, None, b"v", None, 0, 1, ()) for i in range(3)
    ]
    assert records_of(consumer_records) is consumer_records
    assert records_of([[1, 2], [3]]) == [1, 2, 3]
    assert records_of([]) == []


class _Fetcher:
    def __init__(self) -> None:
        self._records: collections.OrderedDict[Any, Any] = collections.OrderedDict()


class _Consumer:
    def __init__(self) -> None:
        self._fetcher = _Fetcher()


def fetch_result(response: bytes) -> FetchResult:
    records = PartitionRecords(TP, MemoryRecords(response), [], 0, None, None, True, READ_COMMITTED)
    return FetchResult(TP, assignment=None, partition_records=records, backoff=0.1)


def test_read_batches_swaps_each_stored_fetch_result_and_leaves_errors_alone() -> None:
    consumer = _Consumer()
    assert read_batches(consumer, "test")
    results = consumer._fetcher._records
    results[TP] = fetch_result(PLAIN)
    assert type(results[TP]._partition_records) is RecordBatches
    error = FetchError(error=CorruptRecordException("x"), backoff=0.1)
    results[TopicPartition("t", 1)] = error
    assert results[TopicPartition("t", 1)] is error
    del results[TP]
    assert list(results) == [TopicPartition("t", 1)]


def test_read_batches_falls_back_with_a_warning_when_aiokafka_differs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Other:  # a PartitionRecords of another shape
        def __init__(self, tp: Any, records: Any) -> None: ...

    monkeypatch.setattr(fetch._fetcher_module, "PartitionRecords", Other)
    monkeypatch.setattr(fetch, "_warned", set())
    consumer = _Consumer()
    with caplog.at_level("WARNING", logger="streamflow.connectors.kafka"):
        assert not read_batches(consumer, "KafkaSource 'src' (subtask 0)")
    assert type(consumer._fetcher._records) is collections.OrderedDict
    assert "KafkaSource 'src' (subtask 0): aiokafka" in caplog.text
    assert "reading through aiokafka's public getmany instead" in caplog.text
    assert "PartitionRecords takes ('tp', 'records')" in caplog.text


def test_a_fetch_result_of_another_shape_is_left_to_aiokafka(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = _Consumer()
    assert read_batches(consumer, "test")
    result = fetch_result(PLAIN)
    del result._partition_records._aborted_transactions  # as if aiokafka renamed it
    monkeypatch.setattr(fetch, "_warned", set())
    with caplog.at_level("WARNING", logger="streamflow.connectors.kafka"):
        consumer._fetcher._records[TP] = result
    assert type(result._partition_records) is PartitionRecords
    assert "does not hold the PartitionRecords this reader knows" in caplog.text


def test_a_consumer_that_fetched_already_is_not_changed() -> None:
    consumer = _Consumer()
    consumer._fetcher._records[TP] = fetch_result(PLAIN)
    assert not read_batches(consumer, "test")
    assert type(consumer._fetcher._records[TP]._partition_records) is PartitionRecords
