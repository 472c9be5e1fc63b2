"""Worker layout arithmetic: global indices, exchange partitions and key groups."""

from __future__ import annotations

import itertools

import pytest

from streamflow.errors import ConfigError
from streamflow.partitioning.keygroups import key_group_for
from streamflow.partitioning.workers import (
    WorkerLayout,
    check_exchange_partitions,
    partition_key_groups,
    partition_of_key_group,
    partition_table,
    reader_partitions,
    subtask_key_groups,
    worker_key_groups,
    worker_partitions,
)

# (max_parallelism, partitions): small and odd sizes, where off-by-one mistakes show
SHAPES = [(1, 1), (7, 3), (8, 8), (10, 4), (128, 8), (128, 12), (97, 13)]


def test_global_subtasks_number_every_worker_subtask_once() -> None:
    p = 3
    seen = [WorkerLayout(workers=4, index=i).global_subtask(j, p) for i in range(4) for j in range(p)]
    assert seen == list(range(12))
    layout = WorkerLayout(workers=4, index=2)
    assert layout.global_parallelism(p) == 12
    assert [layout.worker_of(g, p) for g in (0, 2, 3, 11)] == [0, 0, 1, 3]
    with pytest.raises(ValueError, match="local subtask 3"):
        layout.global_subtask(3, p)


@pytest.mark.parametrize("workers, index", [(0, 0), (2, 2), (2, -1), (True, 0)])
def test_a_layout_out_of_range_says_which_index_to_give(workers: object, index: int) -> None:
    with pytest.raises(ConfigError, match="workers|--worker-index"):
        WorkerLayout(workers=workers, index=index)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_parallelism, partitions", SHAPES)
def test_every_key_group_is_in_exactly_the_partition_the_table_names(max_parallelism: int, partitions: int) -> None:
    table = partition_table(max_parallelism, partitions)
    covered = []
    for e in range(partitions):
        groups = partition_key_groups(max_parallelism, partitions, e)
        assert len(groups) >= 1  # partitions <= max_parallelism: none is empty
        for kg in groups:
            assert table[kg] == e == partition_of_key_group(kg, max_parallelism, partitions)
        covered.extend(groups)
    assert covered == list(range(max_parallelism))


@pytest.mark.parametrize("max_parallelism, partitions", SHAPES)
def test_subtasks_own_the_key_groups_of_the_partitions_they_read(max_parallelism: int, partitions: int) -> None:
    for workers in range(1, partitions + 1):
        for local in (1, 2, 3):
            parallelism = workers * local
            owner: dict[int, int] = {}
            for g in range(parallelism):
                groups = subtask_key_groups(max_parallelism, partitions, parallelism, g)
                expected = [kg for e in reader_partitions(partitions, parallelism, g)
                            for kg in partition_key_groups(max_parallelism, partitions, e)]
                assert list(groups) == expected  # contiguous: a range equal to the union
                for kg in groups:
                    assert kg not in owner
                    owner[kg] = g
            assert sorted(owner) == list(range(max_parallelism))


@pytest.mark.parametrize("max_parallelism, partitions", SHAPES)
def test_a_worker_reads_the_same_partitions_whatever_its_local_parallelism(
    max_parallelism: int, partitions: int
) -> None:
    for workers in range(1, partitions + 1):
        for w in range(workers):
            mine = worker_partitions(partitions, workers, w)
            keys = worker_key_groups(max_parallelism, partitions, workers, w)
            for local in (1, 2, 5):
                parts = [p for j in range(local) for p in reader_partitions(partitions, workers * local, w * local + j)]
                assert parts == list(mine)
                groups = [kg for j in range(local)
                          for kg in subtask_key_groups(max_parallelism, partitions, workers * local, w * local + j)]
                assert groups == list(keys)


def test_rescaling_moves_whole_partitions() -> None:
    """From 2 to 3 workers every partition (and so every key group in it) has one old and
    one new owner: nothing is split."""
    partitions = 12
    for e in range(partitions):
        old = [w for w in range(2) if e in worker_partitions(partitions, 2, w)]
        new = [w for w in range(3) if e in worker_partitions(partitions, 3, w)]
        assert len(old) == len(new) == 1


def test_more_subtasks_than_partitions_leaves_some_without_key_groups() -> None:
    groups = [subtask_key_groups(16, 2, 4, g) for g in range(4)]
    assert [len(g) for g in groups] == [8, 0, 8, 0]  # each worker (2 subtasks) still reads one
    assert all(g.start <= g.stop for g in groups)


def test_keys_land_in_the_partition_of_their_key_group() -> None:
    table = partition_table(128, 8)
    for key in itertools.islice(itertools.count(), 500):
        kg = key_group_for(f"user-{key}", 128)
        assert kg in partition_key_groups(128, 8, table[kg])


@pytest.mark.parametrize(
    "partitions, max_parallelism, workers, message",
    [
        (0, 128, 1, "int >= 1"),
        (200, 128, 2, "exceed max_parallelism 128"),
        (4, 128, 5, "at most 4 workers"),
    ],
)
def test_exchange_partition_counts_the_layout_cannot_serve_are_refused(
    partitions: int, max_parallelism: int, workers: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_exchange_partitions(partitions, max_parallelism, workers)
    check_exchange_partitions(8, 128, 8)
