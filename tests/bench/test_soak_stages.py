"""The soak's optional stages (bench/soak_stages.py): the async lookup answers each
record with itself whatever the attempt, and fails the planned records' first call
once; stage names are checked. Pure logic, no servers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak_stages import FAIL_EVERY, LookupFailed, SlowLookup, parse_stages  # noqa: E402


async def test_the_lookup_answers_the_record_and_fails_a_planned_record_once() -> None:
    lookup = SlowLookup()
    assert await lookup(("k1", 1)) == ("k1", 1)
    planned = ("k2", 3 * FAIL_EVERY)
    with pytest.raises(LookupFailed, match=str(3 * FAIL_EVERY)):
        await lookup(planned)
    assert await lookup(planned) == planned  # the retry gets the answer
    assert await lookup(planned) == planned  # a later call (after a restore) as well
    assert lookup.failed == {3 * FAIL_EVERY}


def test_stage_names_are_parsed_and_an_unknown_one_is_refused_with_the_known_ones() -> None:
    assert parse_stages("") == ()
    assert parse_stages("async") == ("async",)
    assert parse_stages(" async, ") == ("async",)
    assert parse_stages("windows,async") == ("windows", "async")
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown stage\(s\) windowz: choose from async, windows"):
        parse_stages("async,windowz")
