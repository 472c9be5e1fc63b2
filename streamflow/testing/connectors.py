"""The connector contract as checks you can run against your own source or sink.

The runtime's promises about a source and a sink hold only if the connector keeps its
side of the contract (:mod:`streamflow.api.connector`). These checks drive a connector
the way the runtime does, without a job, and raise :class:`ContractViolation` saying
what broke. Run them from any test (they are plain coroutines)::

    await check_replayable_source(lambda: MySource(...), parallelism=2, rescale_to=3)
    await check_exactly_once_sink(lambda: MySink(directory), read_back, records=list(range(40)))

A replayable source (:func:`check_replayable_source`), bounded for the check:

1. read to its end with fresh readers: the reference;
2. read part of it, snapshot the readers' splits, restore new readers from them (as the
   runtime does: each split list redistributed over the subtasks) and read on: what is
   read before and after the snapshot together is the reference, each record once (a
   stored position is the NEXT record to read: restoring never replays the last one);
3. the same, restored at another parallelism (splits rescaled);
4. restored from a snapshot taken at the end, the readers read nothing more.

An exactly-once sink (:func:`check_exactly_once_sink`), whose writers take part in
checkpoints (two-phase commit):

1. invisible until commit: written and even pre-committed records are not readable
   until the checkpoint that covers them completes, and then each is there once;
2. idempotent commit on restore: a writer restored from a checkpoint whose transaction
   was prepared but not committed commits it, and a second restore from the same
   checkpoint (a crash right after that commit) commits nothing twice;
3. abort of leftovers: a transaction prepared for a checkpoint that never completed is
   aborted by the writer restored from the checkpoint before it, and never becomes
   visible.

The built-in connectors run these checks in the project's own test suite.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from streamflow.api.connector import Sink, SinkContext, SinkWriter, Source, SourceContext, SourceReader
from streamflow.api.connector_checks import check_reader, check_writer
from streamflow.state.operator import redistribute_split

__all__ = ["ContractViolation", "check_exactly_once_sink", "check_replayable_source"]

ReadBack = Callable[[Any], Awaitable[Sequence[Any]]]


class ContractViolation(AssertionError):
    """A connector does not keep the contract; the message says which step and how."""


# -- sources -------------------------------------------------------------------------------


async def check_replayable_source(
    make_source: Callable[[], Source],
    *,
    parallelism: int = 2,
    rescale_to: int = 3,
    batch_size: int = 7,
    timeout: float = 60.0,
) -> None:
    """Check that a bounded, replayable source resumes exactly where it was snapshotted
    and rescales its splits (steps 1-4 of the module docstring).

    Args:
        make_source: a fresh Source over the same input, per call.
        parallelism: the subtasks that read and snapshot.
        rescale_to: the subtasks that restore in step 3.
        batch_size: ``max_records`` per poll (small, so a snapshot falls mid-input).
        timeout: seconds a full read may take.

    Raises:
        ContractViolation: a record lost or read twice, or a reader that never ends.
    """
    reference = await _read_all(make_source(), parallelism, None, batch_size, timeout)
    if not reference:
        raise ContractViolation("the source read no records at all; give the check a source with some input")
    expected = _multiset(reference)
    for restore_at, step in ((parallelism, "2 (resume)"), (rescale_to, "3 (rescale)")):
        source = make_source()
        before, splits = await _read_part(source, parallelism, batch_size, max(1, len(reference) // 2), timeout)
        after = await _read_all(source, restore_at, splits, batch_size, timeout)
        _compare(expected, before + after, f"step {step}: read {len(before)} records at parallelism {parallelism}, "
                 f"snapshotted, restored at parallelism {restore_at} and read on")
    source = make_source()
    _, splits = await _read_part(source, parallelism, batch_size, None, timeout)
    rest = await _read_all(source, parallelism, splits, batch_size, timeout)
    if rest:
        raise ContractViolation(
            f"step 4: restored from a snapshot taken after the last record, the readers read {len(rest)} record(s) "
            f"again (first {rest[0]!r}): a split's state must say it is done"
        )


def _reader(source: Source, subtask: int, parallelism: int, restored: list[list[Any]] | None) -> SourceReader:
    splits = everything = None
    if restored is not None:
        splits = redistribute_split(restored, parallelism)[subtask]
        everything = [split for old in restored for split in old]
    reader = source.create_reader(
        SourceContext(
            job_name="contract",
            operator_uid="contract-source",
            subtask_index=subtask,
            parallelism=parallelism,
            restored_splits=splits,
            all_restored_splits=everything,
            run_id=uuid.uuid4().hex,
        )
    )
    check_reader(reader, "contract-source")
    return reader


async def _read_all(
    source: Source, parallelism: int, restored: list[list[Any]] | None, batch_size: int, timeout: float
) -> list[Any]:
    records: list[Any] = []
    for subtask in range(parallelism):
        reader = _reader(source, subtask, parallelism, restored)
        await reader.open()
        try:
            records += await _poll_until(reader, batch_size, None, timeout)
        finally:
            await reader.close()
    return records


async def _read_part(
    source: Source, parallelism: int, batch_size: int, total: int | None, timeout: float
) -> tuple[list[Any], list[list[Any]]]:
    """Read about ``total`` records over the subtasks (all of them: None), then snapshot
    every reader."""
    readers = [_reader(source, subtask, parallelism, None) for subtask in range(parallelism)]
    records: list[Any] = []
    states: list[list[Any]] = []
    try:
        for reader in readers:
            await reader.open()
        share = None if total is None else max(1, total // parallelism)
        for reader in readers:
            records += await _poll_until(reader, batch_size, share, timeout)
        states = [list(reader.snapshot_splits(1)) for reader in readers]
        for reader in readers:
            await reader.notify_checkpoint_complete(1)
    finally:
        for reader in readers:
            await reader.close()
    return records, states


async def _poll_until(reader: SourceReader, batch_size: int, limit: int | None, timeout: float) -> list[Any]:
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while limit is None or len(records) < limit:
        batch = await reader.poll(batch_size, 0.05)
        if batch is None:
            return records
        if batch.failures:
            raise ContractViolation(f"the reader could not decode records: {batch.failures!r:.200}")
        records += batch.records
        if time.monotonic() > deadline:
            raise ContractViolation(
                f"the reader did not end within {timeout:g} s ({len(records)} records): the check needs a bounded "
                "source, whose poll returns None at the end"
            )
    return records


# -- exactly-once sinks ----------------------------------------------------------------------


async def check_exactly_once_sink(
    make_sink: Callable[[], Sink],
    read_committed: ReadBack,
    *,
    records: Sequence[Any],
    as_read: Callable[[Any], Any] = lambda record: record,
) -> None:
    """Check that a two-phase-commit sink's writers make output visible exactly once, at
    commit (steps 1-3 of the module docstring).

    Args:
        make_sink: a fresh Sink writing to a fresh, empty target, per call.
        read_committed: what a reader of committed data sees in the target of the sink
            it is given (``await read_committed(sink)``), in any order.
        records: at least 4 distinct records to write.
        as_read: a record as ``read_committed`` returns it (default: itself).

    Raises:
        ContractViolation: a record visible too early, missing, or there twice.
    """
    if len(records) < 4:
        raise ContractViolation("check_exactly_once_sink needs at least 4 records")
    half = len(records) // 2
    first, second = list(records[:half]), list(records[half:])

    async def seen(sink: Sink, expected: list[Any], when: str) -> None:
        _compare(_multiset([as_read(r) for r in expected]), list(await read_committed(sink)), when, read=True)

    # 1. invisible until commit
    sink = make_sink()
    writer = await _open_writer(sink, "invisible", None)
    await writer.write(first)
    await seen(sink, [], "step 1: records written, not yet pre-committed")
    await writer.snapshot(1)
    await seen(sink, [], "step 1: records pre-committed at barrier 1, checkpoint 1 not yet complete")
    await writer.notify_checkpoint_complete(1)
    await seen(sink, first, "step 1: checkpoint 1 complete")
    await writer.write(second)
    await writer.snapshot(2)
    await writer.notify_checkpoint_complete(2)
    await writer.finish()
    await writer.close()
    await seen(sink, first + second, "step 1: checkpoint 2 complete, writer finished")

    # 2. idempotent commit on restore
    sink = make_sink()
    writer = await _open_writer(sink, "restore", None)
    await writer.write(list(records))
    prepared = await writer.snapshot(1)
    await writer.close()  # the process dies after checkpoint 1 completed, before the commit
    for attempt in ("first", "second"):
        restored = await _open_writer(sink, "restore", list(prepared))
        await restored.close()
        await seen(sink, list(records), f"step 2: {attempt} restore from checkpoint 1 (prepared, not committed)")

    # 3. abort of leftovers
    sink = make_sink()
    writer = await _open_writer(sink, "leftovers", None)
    await writer.write(first[:1])
    checkpoint_1 = await writer.snapshot(1)
    await writer.notify_checkpoint_complete(1)
    await writer.write(first[1:])
    await writer.snapshot(2)  # prepared for checkpoint 2, which never completes
    await writer.close()
    restored = await _open_writer(sink, "leftovers", list(checkpoint_1))
    await restored.write(second)
    await restored.snapshot(3)
    await restored.notify_checkpoint_complete(3)
    await restored.finish()
    await restored.close()
    await seen(sink, first[:1] + second, "step 3: restored from checkpoint 1 after checkpoint 2 was prepared but "
               "never completed, then checkpoint 3 completed (checkpoint 2's records must never appear)")


async def _open_writer(sink: Sink, uid: str, restored_state: list[Any] | None) -> SinkWriter:
    writer = sink.create_writer(
        SinkContext(
            job_name="contract",
            operator_uid=f"contract-{uid}",
            subtask_index=0,
            parallelism=1,
            checkpointing=True,
            checkpoint_interval=1.0,
            restored_state=restored_state,
            run_id=uuid.uuid4().hex,
        )
    )
    check_writer(writer, f"contract-{uid}")
    await writer.open()
    return writer


# -- comparing ---------------------------------------------------------------------------------


def _multiset(values: Sequence[Any]) -> Counter[str]:
    return Counter(repr(v) for v in values)


def _compare(expected: Counter[str], got: Sequence[Any], when: str, *, read: bool = False) -> None:
    found = _multiset(got)
    if found == expected:
        return
    missing = expected - found
    extra = found - expected
    problems = []
    if missing:
        problems.append(f"{sum(missing.values())} missing (e.g. {next(iter(missing))})")
    if extra:
        what = "visible but not (or not yet) committed, or there twice" if read else "read twice"
        problems.append(f"{sum(extra.values())} {what} (e.g. {next(iter(extra))})")
    raise ContractViolation(f"{when}: {'; '.join(problems)}")
