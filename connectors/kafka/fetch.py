"""Fetched records without a ``ConsumerRecord`` per record.

aiokafka's consumer turns every fetched record into a ``ConsumerRecord`` (a Python
dataclass of eleven fields) before ``getmany`` hands it out: about half of the source's
cost per record, for fields the reader copies again at once. :func:`read_batches` makes a
consumer's ``getmany`` return, per partition, one list per Kafka record batch of the
records as aiokafka's record-batch reader decodes them (``offset``, ``timestamp``,
``key``, ``value``, ``headers``: the attributes the reader uses, under the same names), and
:func:`records_of` flattens either form into one list.

The seam: aiokafka's fetcher stores each partition's fetch response as a ``FetchResult``
wrapping a ``PartitionRecords`` (an iterator over the response's record batches that
skips aborted transactions and control batches) and ``getmany`` drains those iterators.
:func:`read_batches` swaps each ``PartitionRecords`` for a :class:`RecordBatches`, which
yields a whole record batch at a time and applies the same rules in the same order:

1. a batch whose CRC does not check raises ``CorruptRecordException`` (when ``check_crcs``);
2. under ``read_committed``, for a batch with a producer id: the aborted transactions that
   start at or before the batch's base offset mark their producer as aborting; an abort
   marker (a control batch whose record says ABORT) unmarks its producer; a transactional
   batch of a marked producer is skipped;
3. control batches are skipped at every isolation level;
4. records below the fetch position are left out (Kafka returns whole batches, so a fetch
   from the middle of a batch starts with records read before);
5. after each batch the fetch position moves to the batch's next offset, so the consumer's
   position and the next fetch are exactly where aiokafka would put them;
6. a batch that cannot be decoded (a compression codec not installed, a damaged record)
   raises, ends the response, and leaves the position before it: the next fetch meets it
   again, and no record is skipped.

Those are aiokafka internals. Everything the swap needs is checked before it is made; when
aiokafka differs (another version), the fetch is left as aiokafka made it, ``getmany``
hands out ConsumerRecords, and :func:`records_of` passes them through: the public path,
slower but the same records. The first such fetch logs a warning saying so.
"""

from __future__ import annotations

import collections
import inspect
import logging
from collections.abc import Iterator
from itertools import chain
from typing import Any

from aiokafka.errors import CorruptRecordException, KafkaError
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord

try:  # aiokafka internals: without them the public path serves (see the module docstring)
    from aiokafka.consumer import fetcher as _fetcher_module
except ImportError:  # pragma: no cover - aiokafka without the module this was written for
    _fetcher_module = None

__all__ = ["RecordBatches", "read_batches", "records_of"]

log = logging.getLogger("streamflow.connectors.kafka")

_PARTITION_RECORDS_ARGS = (
    "tp", "records", "aborted_transactions", "fetch_offset", "key_deserializer", "value_deserializer",
    "check_crcs", "isolation_level",
)
_PARTITION_RECORDS_FIELDS = (
    "_tp", "_records", "_aborted_transactions", "_key_deserializer", "_value_deserializer", "_check_crcs",
    "_isolation_level", "next_fetch_offset",
)


class RecordBatches:
    """One partition's fetch response, a Kafka record batch at a time: iterating yields a
    non-empty list of records per batch that holds records to read (the rules are in the
    module docstring). Stands in for aiokafka's ``PartitionRecords``, so it keeps the
    attribute aiokafka reads, ``next_fetch_offset``: the offset the consumer fetches next
    once everything yielded so far is consumed."""

    __slots__ = ("next_fetch_offset", "_tp", "_batches", "_aborted", "_aborting", "_check_crcs", "_read_committed")

    def __init__(
        self,
        tp: Any,
        batches: Any,
        aborted_transactions: list[tuple[int, int]],
        fetch_offset: int,
        *,
        check_crcs: bool,
        read_committed: bool,
    ) -> None:
        """``batches``: aiokafka ``MemoryRecords`` of the response; ``aborted_transactions``:
        ``(producer_id, first_offset)`` pairs as the broker sent them."""
        self.next_fetch_offset = fetch_offset
        self._tp = tp
        self._batches = batches
        self._aborted = collections.deque(sorted(aborted_transactions or (), key=lambda pair: pair[1]))
        self._aborting: set[int] = set()
        self._check_crcs = check_crcs
        self._read_committed = read_committed

    def __iter__(self) -> Iterator[list[Any]]:
        return self

    def __next__(self) -> list[Any]:
        try:
            return self._next_records()
        except StopIteration:
            raise
        except BaseException:
            # Like a generator that raised: nothing more comes out, and the fetch position
            # stays before the batch that failed, so the next fetch meets it again (it is
            # never skipped).
            self._batches = _NO_BATCHES
            raise

    def _next_records(self) -> list[Any]:
        batches = self._batches
        while batches.has_next():
            batch = batches.next_batch()
            if self._check_crcs and not batch.validate_crc():
                raise CorruptRecordException(f"Invalid CRC - {self._tp}")
            if self._read_committed and batch.producer_id is not None:
                self._note_aborted_up_to(batch.base_offset)
                if batch.is_control_batch and _is_abort_marker(batch):
                    self._aborting.discard(batch.producer_id)
                if batch.is_transactional and batch.producer_id in self._aborting:
                    log.debug("%s: skipping the aborted batch at offsets %d..%d of producer %d",
                              self._tp, batch.base_offset, batch.next_offset - 1, batch.producer_id)
                    self.next_fetch_offset = batch.next_offset
                    continue
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            floor = self.next_fetch_offset
            records = list(batch)  # decodes (and decompresses): may raise
            self.next_fetch_offset = batch.next_offset
            if records and records[0].offset < floor:
                records = [record for record in records if record.offset >= floor]
            if records:
                return records
        raise StopIteration

    def _note_aborted_up_to(self, offset: int) -> None:
        aborted = self._aborted
        while aborted and aborted[0][1] <= offset:
            self._aborting.add(aborted.popleft()[0])


class _NoBatches:
    """The batches left of a response whose reading failed: none."""

    def has_next(self) -> bool:
        return False


_NO_BATCHES = _NoBatches()


def _is_abort_marker(batch: Any) -> bool:
    """A control batch holds one control record; its key says commit or abort."""
    try:
        record = next(iter(batch))
    except StopIteration:
        raise KafkaError("Control batch did not contain any records") from None
    return bool(ControlRecord.parse(record.key) == ABORT_MARKER)


def records_of(fetched: list[Any]) -> list[Any]:
    """One partition's ``getmany`` result as one list of records, whichever path made it:
    lists of records per batch (:func:`read_batches`) or ConsumerRecords (aiokafka's own)."""
    if fetched and type(fetched[0]) is list:
        return list(chain.from_iterable(fetched))
    return fetched


def read_batches(consumer: Any, where: str) -> bool:
    """Make ``consumer.getmany`` return lists of records per Kafka record batch (see the
    module docstring). Call after ``consumer.start()`` and before any fetch (before
    ``assign``). False when this aiokafka's internals are not the ones it was written for:
    then nothing changes and the consumer hands out ConsumerRecords (a warning says so)."""
    problem = _unsupported()
    if not problem:
        fetcher: Any = getattr(consumer, "_fetcher", None)
        results = getattr(fetcher, "_records", None)
        if type(results) is not collections.OrderedDict:
            problem = f"the consumer's fetcher keeps its results in {type(results).__name__}, not an OrderedDict"
        elif results:
            problem = "the consumer fetched before the records could be read by batch"
        else:
            fetcher._records = _BatchingResults(where)
            return True
    _warn_public_path(where, problem)
    return False


class _BatchingResults(collections.OrderedDict):  # type: ignore[type-arg]
    """The fetcher's table of fetch results, swapping each new result's PartitionRecords
    for :class:`RecordBatches` as the fetcher stores it (before anything reads it)."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self._where = where

    def __setitem__(self, tp: Any, result: Any) -> None:
        if type(result) is _fetcher_module.FetchResult:  # FetchError and others pass as they are
            _swap(result, self._where)
        super().__setitem__(tp, result)


def _swap(result: Any, where: str) -> None:
    old: Any = getattr(result, "_partition_records", None)
    if type(old) is not _fetcher_module.PartitionRecords or not all(
        hasattr(old, name) for name in _PARTITION_RECORDS_FIELDS
    ):
        _warn_public_path(where, "a fetch result does not hold the PartitionRecords this reader knows")
        return
    if old._key_deserializer is not None or old._value_deserializer is not None:
        return  # a consumer that deserializes in aiokafka: its records are ConsumerRecords
    result._partition_records = RecordBatches(
        old._tp, old._records, old._aborted_transactions, old.next_fetch_offset,
        check_crcs=bool(old._check_crcs),
        read_committed=old._isolation_level == _fetcher_module.READ_COMMITTED,
    )


def _unsupported() -> str:
    """Why this aiokafka's fetcher cannot be read by batch ('' if it can)."""
    module = _fetcher_module
    if module is None:
        return "aiokafka.consumer.fetcher is missing"
    for name in ("FetchResult", "PartitionRecords", "READ_COMMITTED"):
        if not hasattr(module, name):
            return f"aiokafka.consumer.fetcher.{name} is missing"
    try:
        params = tuple(inspect.signature(module.PartitionRecords).parameters)
    except (TypeError, ValueError):
        params = ()
    if params != _PARTITION_RECORDS_ARGS:
        return f"aiokafka's PartitionRecords takes {params}, not {_PARTITION_RECORDS_ARGS}"
    if not callable(getattr(module.FetchResult, "getall", None)):
        return "aiokafka's FetchResult has no getall"
    return ""


_warned: set[str] = set()


def _warn_public_path(where: str, problem: str) -> None:
    if problem in _warned:
        return
    _warned.add(problem)
    import aiokafka

    log.warning(
        "%s: aiokafka %s is not the version this reader's batch decoding was written for (%s); "
        "reading through aiokafka's public getmany instead: the same records, at a higher cost per record",
        where, getattr(aiokafka, "__version__", "?"), problem,
    )
