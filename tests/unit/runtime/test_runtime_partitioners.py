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
from streamflow.runtime.partitioners import RecordWriter

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
