"""The hash exchange: each subtask gets exactly the records of its key groups, in input
order, each with its source position, timestamp, key and key group (so the keyed operator behind
it never applies the key selector again)."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow.core.elements import Batch, SourceRef
from streamflow.graph.spec import Partitioning
from streamflow.partitioning.keygroups import key_group_for, subtask_for_key_group
from streamflow.runtime.channel import Channel
from streamflow.runtime.partitioners import HashSplit, RecordWriter

MAX_PARALLELISM = 128
ORIGIN = SourceRef("src", 0, "split")


def user_of(record: dict[str, Any]) -> Any:
    return record["user"]


@pytest.mark.parametrize("parallelism", [1, 2, 3, 7])
@pytest.mark.parametrize("with_positions", [True, False], ids=["positions-timestamps", "bare"])
async def test_a_hash_exchange_splits_records_positions_timestamps_keys_and_key_groups_alike(
    parallelism: int, with_positions: bool
) -> None:
    users: list[Any] = [f"u{i % 23}" for i in range(200)] + [7, ("t", 1), 2.5]
    records = [{"user": user, "n": n} for n, user in enumerate(users)]
    positions = [f"p{n}" for n in range(len(records))] if with_positions else None
    timestamps = [float(n) for n in range(len(records))] if with_positions else None
    channels = [Channel(f"c{i}", 10) for i in range(parallelism)]
    writer = RecordWriter(channels, Partitioning.HASH, user_of, MAX_PARALLELISM)
    await writer.emit(Batch(records, positions, ORIGIN, timestamps=timestamps))
    await writer.emit(Batch(records[:1], positions[:1] if positions else None, ORIGIN,
                            timestamps=timestamps[:1] if timestamps else None))  # a one-record batch

    received: list[list[dict[str, Any]]] = []
    for subtask, channel in enumerate(channels):
        got: list[dict[str, Any]] = []
        while len(channel):
            batch = channel.pop()
            assert batch.origin == ORIGIN and batch.records
            assert batch.keys == [user_of(r) for r in batch.records]
            assert batch.key_groups == [key_group_for(k, MAX_PARALLELISM) for k in batch.keys]
            assert all(subtask_for_key_group(g, MAX_PARALLELISM, parallelism) == subtask for g in batch.key_groups)
            assert batch.positions == ([f"p{r['n']}" for r in batch.records] if with_positions else None)
            assert batch.timestamps == ([float(r["n"]) for r in batch.records] if with_positions else None)
            got.extend(batch.records)
        received.append(got)
    everything = sorted((r["n"] for part in received for r in part))
    assert everything == sorted(list(range(len(records))) + [0])
    for part in received:  # input order kept within each subtask
        numbers = [r["n"] for r in part]
        first_batch = numbers[: len(numbers) - (1 if part and part[-1] is records[0] else 0)]
        assert first_batch == sorted(first_batch)


def one_by_one(records: list[Any], parallelism: int) -> list[list[tuple[Any, Any, int]]]:
    """What each subtask owns of ``records``, as (record, key, key group), in order."""
    owned: list[list[tuple[Any, Any, int]]] = [[] for _ in range(parallelism)]
    for record in records:
        key = user_of(record)
        group = key_group_for(key, MAX_PARALLELISM)
        owned[subtask_for_key_group(group, MAX_PARALLELISM, parallelism)].append((record, key, group))
    return owned


def received(part: Batch | None) -> list[tuple[Any, Any, int]]:
    if part is None:
        return []
    assert part.keys is not None and part.key_groups is not None
    return list(zip(part.records, part.keys, part.key_groups, strict=True))


@pytest.mark.parametrize("parallelism", [2, 5])
def test_a_hash_split_reused_over_batches_of_any_size_splits_each_as_one_record_at_a_time(parallelism: int) -> None:
    """The split keeps its index lists and numbers between batches: a batch larger than
    any before it, one smaller, one of a single key and an empty one all come out as
    computed record by record, nothing left over from the batch before."""
    split = HashSplit(MAX_PARALLELISM, parallelism)
    sizes = [10, 1000, 3, 2500, 0]
    for size in sizes:
        records = [{"user": f"u{(n * 7919) % 97}", "n": n} for n in range(size)]
        keys = [user_of(r) for r in records]
        key_groups: list[int] = [key_group_for(k, MAX_PARALLELISM) for k in keys]
        parts = split.parts(Batch(records, None, ORIGIN), keys, key_groups)
        assert [received(part) for part in parts] == one_by_one(records, parallelism)
        assert all(part is None or part.records for part in parts)  # no subtask gets an empty batch
    single = [{"user": "u1", "n": n} for n in range(50)]
    keys = [user_of(r) for r in single]
    groups: list[int] = [key_group_for(k, MAX_PARALLELISM) for k in keys]
    parts = split.parts(Batch(single, [f"p{n}" for n in range(50)], ORIGIN, timestamps=[1.0] * 50), keys, groups)
    owner = subtask_for_key_group(groups[0], MAX_PARALLELISM, parallelism)
    assert [part is None for part in parts] == [subtask != owner for subtask in range(parallelism)]
    whole = parts[owner]
    assert whole is not None
    assert (whole.records, whole.positions, whole.timestamps) == (single, [f"p{n}" for n in range(50)], [1.0] * 50)
    assert (whole.keys, whole.key_groups, whole.origin) == (keys, groups, ORIGIN)
