"""CollectionSource driven through the SourceReader protocol directly."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow.api.connector import SourceContext
from streamflow.connectors import CollectionSource
from streamflow.connectors.collection import CollectionReader
from streamflow.errors import ConfigError, StateError


def ctx(subtask: int = 0, parallelism: int = 1, restored: list[Any] | None = None) -> SourceContext:
    return SourceContext(job_name="j", operator_uid="src", subtask_index=subtask,
                         parallelism=parallelism, restored_splits=restored)


async def drain(reader: CollectionReader, max_records: int = 1000) -> tuple[list[Any], list[Any]]:
    records: list[Any] = []
    positions: list[Any] = []
    while (batch := await reader.poll(max_records, 0.01)) is not None:
        records += batch.records
        positions += batch.positions or []
    return records, positions


async def test_reads_everything_in_batches_then_ends() -> None:
    reader = CollectionSource(list("abcde"), batch_size=2).create_reader(ctx())
    await reader.open()
    first = await reader.poll(100, 0.01)
    assert first is not None and first.records == ["a", "b"] and first.positions == [0, 1]
    assert await drain(reader) == (["c", "d", "e"], [2, 3, 4])
    assert await reader.poll(100, 0.01) is None
    await reader.close()


async def test_subtasks_split_the_items_deterministically() -> None:
    source = CollectionSource(range(10))
    parts = [await drain(source.create_reader(ctx(i, 3))) for i in range(3)]
    assert [r for r, _ in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


async def test_restore_resumes_at_the_next_record_without_gap_or_duplicate() -> None:
    source = CollectionSource(list(range(7)), batch_size=3)
    reader = source.create_reader(ctx())
    batch = await reader.poll(100, 0.01)
    assert batch is not None and batch.records == [0, 1, 2]
    state = reader.snapshot_splits(1)
    assert state == [{"split": "collection[0:7]", "next": 3, "end": 7}]  # the NEXT index
    resumed = source.create_reader(ctx(restored=state))
    assert await drain(resumed) == ([3, 4, 5, 6], [3, 4, 5, 6])


async def test_restore_at_another_parallelism_reads_each_remainder_once() -> None:
    source = CollectionSource(list(range(10)), batch_size=2)
    old = [source.create_reader(ctx(i, 2)) for i in range(2)]
    seen = []
    for reader in old:
        batch = await reader.poll(100, 0.01)
        assert batch is not None
        seen += batch.records
    states = [s for reader in old for s in reader.snapshot_splits(1)]
    # Scale 2 -> 3: the third subtask gets nothing and ends at once.
    new = [source.create_reader(ctx(i, 3, [states[i]] if i < 2 else [])) for i in range(3)]
    for reader in new:
        seen += (await drain(reader))[0]
    assert sorted(seen) == list(range(10))


async def test_finished_reader_snapshots_nothing() -> None:
    reader = CollectionSource([1]).create_reader(ctx())
    await drain(reader)
    assert reader.snapshot_splits(1) == []


def test_source_is_inert_and_copies_items() -> None:
    items = [1, 2]
    source = CollectionSource(items)
    items.append(3)
    assert source.items == (1, 2)


@pytest.mark.parametrize("bad", [{"items": "abc"}, {"items": 5}, {"items": [1], "batch_size": 0}])
def test_bad_config_is_a_config_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="CollectionSource"):
        CollectionSource(**bad)


def test_foreign_or_stale_split_state_is_a_state_error() -> None:
    with pytest.raises(StateError, match="not a CollectionSource split"):
        CollectionSource([1]).create_reader(ctx(restored=[{"path": "x"}]))
    with pytest.raises(StateError, match="collection changed"):
        CollectionSource([1]).create_reader(ctx(restored=[{"split": "c", "next": 0, "end": 5}]))
