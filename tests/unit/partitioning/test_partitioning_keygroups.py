"""Key groups: a stable hash, contiguous key-group ranges and their inverse."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streamflow.errors import ConfigError
from streamflow.partitioning.keygroups import (
    key_group_for,
    key_group_range,
    stable_hash,
    subtask_for_key_group,
    subtask_table,
    validate_parallelism,
)

# Computed once and pinned: a change here moves every key to another key group, which
# breaks restoring keyed state from existing checkpoints and savepoints.
PINNED = [
    ("", 0),
    ("hello", 3137501350),
    ("user-42", 965272195),
    (0, 3646767813),
    (1, 1325196676),
    (-1, 2676244986),
    (2**40, 2001283077),
    (("a", 1), 3694158441),
    (b"hello", 3137501350),
    (1.5, 1162722705),
    (True, 2018509995),
]


@pytest.mark.parametrize(("key", "expected"), PINNED, ids=[repr(k) for k, _ in PINNED])
def test_stable_hash_pinned_values(key: object, expected: int) -> None:
    assert stable_hash(key) == expected


def test_key_group_for_pinned_values() -> None:
    assert key_group_for("hello", 128) == 38
    assert key_group_for("user-42", 128) == 3
    assert key_group_for(("a", 1), 128) == 105
    assert key_group_for(1, 128) == 4


def test_tuple_and_list_of_same_items_hash_alike() -> None:
    assert stable_hash(("a", 1)) == stable_hash(["a", 1])


def test_dict_keys_hash_independently_of_insertion_order() -> None:
    assert stable_hash({"a": 2, "b": 1}) == stable_hash({"b": 1, "a": 2})


def test_unhashable_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be hashed stably"):
        stable_hash(object())


@pytest.mark.parametrize("max_parallelism", [1, 7, 128, 1000])
def test_key_group_is_within_range(max_parallelism: int) -> None:
    for key in range(500):
        assert 0 <= key_group_for(f"k{key}", max_parallelism) < max_parallelism


@pytest.mark.parametrize(("max_parallelism", "parallelism"), [(128, 1), (128, 2), (128, 3), (128, 7), (10, 10), (7, 3), (128, 128)])
def test_key_group_ranges_cover_all_groups_contiguously(max_parallelism: int, parallelism: int) -> None:
    ranges = [key_group_range(max_parallelism, parallelism, i) for i in range(parallelism)]
    assert ranges[0].start == 0
    assert ranges[-1].stop == max_parallelism
    for before, after in zip(ranges, ranges[1:]):
        assert before.stop == after.start
    for r in ranges:
        assert r.step == 1
        assert len(r) >= 1
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1  # near-equal split


@pytest.mark.parametrize(("max_parallelism", "parallelism"), [(128, 1), (128, 2), (128, 3), (128, 5), (128, 7), (10, 4), (128, 128)])
def test_subtask_for_key_group_is_the_inverse_of_key_group_range(max_parallelism: int, parallelism: int) -> None:
    for subtask in range(parallelism):
        for key_group in key_group_range(max_parallelism, parallelism, subtask):
            assert subtask_for_key_group(key_group, max_parallelism, parallelism) == subtask
    table = subtask_table(max_parallelism, parallelism)
    assert table == [subtask_for_key_group(kg, max_parallelism, parallelism) for kg in range(max_parallelism)]


def test_validate_parallelism_refuses_bad_values() -> None:
    validate_parallelism(4, 128)
    with pytest.raises(ConfigError, match="parallelism must be at least 1"):
        validate_parallelism(0, 128)
    with pytest.raises(ConfigError, match=r"exceeds max_parallelism 8"):
        validate_parallelism(9, 8)
    with pytest.raises(ConfigError, match=r"max_parallelism must be in 1\.\.32768"):
        validate_parallelism(1, 40000)


_CHILD = """
import json
from streamflow.partitioning.keygroups import key_group_for
keys = [f"user-{i}" for i in range(500)] + list(range(250)) + [("t", i) for i in range(250)]
print(json.dumps([key_group_for(k, 128) for k in keys]))
"""


def test_key_groups_are_identical_across_processes_with_different_hash_seeds() -> None:
    results = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        results.append(json.loads(done.stdout))
    assert len(results[0]) == 1000
    assert results[0] == results[1]
    # and the same as in this process
    keys = [f"user-{i}" for i in range(500)] + list(range(250)) + [("t", i) for i in range(250)]
    assert results[0] == [key_group_for(k, 128) for k in keys]
