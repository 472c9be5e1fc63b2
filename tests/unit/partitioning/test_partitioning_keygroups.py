"""Key groups: a stable hash, contiguous key-group ranges and their inverse."""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
from typing import Any, NamedTuple

import pytest

from streamflow.errors import ConfigError
from streamflow.partitioning.keygroups import (
    KeyGroupAssigner,
    key_group_for,
    key_group_range,
    stable_hash,
    subtask_for_key_group,
    subtask_table,
    validate_parallelism,
)

# Computed once and pinned: a change here moves every key to another key group, which
# breaks restoring keyed state from existing checkpoints and savepoints. (True once had
# its own bytes; it is the int 1 as a dict key, so it hashes as 1 now, and restoring an
# old snapshot recomputes the key group of such keys.)
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
    (True, 1325196676),
    (1.0, 1325196676),
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


class Pair(NamedTuple):
    name: str
    n: int


class Level(enum.IntEnum):
    LOW = 1


class Colour(enum.StrEnum):
    RED = "red"


# Each group holds keys that are one and the same dict key in Python.
EQUAL_KEYS: list[list[Any]] = [
    [1, 1.0, True, Level.LOW],
    [0, 0.0, -0.0, False],
    [-7, -7.0],
    [2**70, float(2**70)],
    ["red", Colour.RED],
    [(1, "a"), (1.0, "a"), (True, "a"), Pair("a", 1)[::-1]],
    [("a", 1), Pair("a", 1), ("a", True), ("a", 1.0)],
    [(1, (2, "x")), (1.0, (2.0, "x")), (True, [2, "x"])],
    [("a", 2**64), ("a", float(2**64))],  # wider than JSON ints: still hashed, still equal
    [(b"x", 1), (b"x", True)],
]


@pytest.mark.parametrize("keys", EQUAL_KEYS, ids=[repr(keys[0]) for keys in EQUAL_KEYS])
def test_keys_that_are_equal_dict_keys_share_a_key_group(keys: list[Any]) -> None:
    assert len({stable_hash(key) for key in keys}) == 1, [stable_hash(key) for key in keys]
    # and the cached assigner agrees with the plain function, in any order of first sight
    for ordering in (keys, keys[::-1]):
        assign = KeyGroupAssigner(128)
        assert [assign(key) for key in ordering] == [key_group_for(key, 128) for key in ordering]


def test_unequal_numbers_keep_apart() -> None:
    assert stable_hash(1.5) == 1162722705  # a non-integral float keeps its IEEE 754 bytes
    assert len({stable_hash(k) for k in (1, 1.5, 2, "1")}) == 4  # ("1" and b"1" share bytes, as ever)
    assert stable_hash(("a", 1.5)) != stable_hash(("a", 1))


def test_the_assigner_caches_every_common_key_type_and_copes_with_unhashable_ones() -> None:
    assign = KeyGroupAssigner(128, limit=4)
    for key in ("s", 7, 2.5, True, b"b", ("t", 1)):
        assert assign(key) == key_group_for(key, 128)
        assert assign(key) == key_group_for(key, 128)  # from the cache
    assert len(assign._cache) <= 4  # bounded
    assert assign(("t", [1, 2])) == key_group_for(("t", [1, 2]), 128)  # not a dict key: not cached
    assert assign([1, 2]) == key_group_for([1, 2], 128)


def test_key_groups_of_a_whole_batch_agree_with_one_by_one_cached_or_not() -> None:
    assign = KeyGroupAssigner(128)
    keys: list[Any] = ["u1", "u2", 7, ("t", 1), b"b", 2.5, [1, 2], ("t", [1]), Colour.RED]
    expected = [key_group_for(key, 128) for key in keys]
    assert assign.of_all(keys) == expected  # first sight: one by one, filling the cache
    assert assign.of_all(keys) == expected  # again, with uncacheable keys among them
    hashable = [key for key in keys if not isinstance(key, list) and key != ("t", [1])]
    assert assign.of_all(hashable) == [key_group_for(key, 128) for key in hashable]  # all cached now


def test_a_batch_lookup_never_gives_an_uncached_type_the_group_of_an_equal_cached_key() -> None:
    class Loose(int):  # equals and hashes as its int, but stable_hash may see it otherwise
        pass

    assign = KeyGroupAssigner(128)
    assign.of_all([1, 1])
    assert assign.of_all([1, Loose(1)]) == [key_group_for(1, 128), assign(Loose(1))]


def test_a_cache_that_mostly_misses_steps_aside_then_tries_again() -> None:
    """A key set larger than the cache: once it filled with mostly misses it is bypassed
    for 16 keys per entry (the groups stay right), then it caches again."""
    assign = KeyGroupAssigner(128, limit=8)
    wide = [f"user-{i}" for i in range(200)]
    assert assign.of_all(wide[:9]) == [key_group_for(key, 128) for key in wide[:9]]  # 9 misses: full at the 9th
    assert assign._cache == {} and assign._bypass == 16 * 8
    assert assign.of_all(wide[9:137]) == [key_group_for(key, 128) for key in wide[9:137]]  # bypassed: 128 keys
    assert assign._cache == {} and assign._bypass == 0
    assert [assign(key) for key in wide[137:140]] == [key_group_for(key, 128) for key in wide[137:140]]
    assert set(assign._cache) == set(wide[137:140])  # caching again


def test_a_cache_that_mostly_hits_is_cleared_when_full_and_keeps_caching() -> None:
    """A key set that drifts slowly: many hits before the cache fills, so it starts over
    and goes on caching."""
    assign = KeyGroupAssigner(128, limit=8)
    hot = [f"hot-{i}" for i in range(8)]
    for _ in range(5):
        assert assign.of_all(hot) == [key_group_for(key, 128) for key in hot]
    assert assign("new") == key_group_for("new", 128)  # full after 40 lookups, 32 of them hits
    assert assign._bypass == 0 and set(assign._cache) == {"new"}
