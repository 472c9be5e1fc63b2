"""The soak's verdict (bench/soak_data.py): the expected output of an input, and a
comparison that catches every kind of wrong output. Pure logic, no servers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak_data import (  # noqa: E402
    MAX_JITTER_MS,
    RECORDS_PER_MS,
    WINDOW_MS,
    Result,
    Verdict,
    compare,
    event_ms,
    format_result,
    make_input,
    parse_input,
    parse_result,
)


def test_input_puts_each_key_in_one_partition_and_expected_counts_run_one_to_n() -> None:
    soak_input = make_input(5_000, partitions=4, keys=50, seed=3)
    assert soak_input.records == 5_000
    owners: dict[str, set[int]] = {}
    for partition, lines in enumerate(soak_input.partitions):
        for line in lines:
            owners.setdefault(line.split(",")[0], set()).add(partition)
    assert all(len(partitions) == 1 for partitions in owners.values())
    expected = soak_input.expected()
    assert sorted(i for _, _, i in expected) == list(range(5_000))
    counts: dict[str, list[int]] = {}
    for key, n, _ in expected:
        counts.setdefault(key, []).append(n)
    assert all(ns == list(range(1, len(ns) + 1)) for ns in counts.values())
    assert make_input(5_000, partitions=4, keys=50, seed=3) == soak_input  # the seed decides
    assert make_input(5_000, partitions=4, keys=50, seed=4) != soak_input


def test_event_times_trail_the_input_order_by_at_most_the_jitter_and_windows_count_every_record() -> None:
    soak_input = make_input(6_000, partitions=4, keys=50, seed=3)
    for lines in soak_input.partitions:
        newest = 0
        for line in lines:
            record_id, at = parse_input(line)[1], event_ms(line)
            assert record_id // RECORDS_PER_MS - MAX_JITTER_MS <= at <= record_id // RECORDS_PER_MS
            assert at >= newest - MAX_JITTER_MS  # never later than the bounded out-of-orderness allows
            newest = max(newest, at)
    plain = soak_input.expected()
    with_windows = soak_input.expected(windows=True)
    assert with_windows[: len(plain)] == plain
    windows = with_windows[len(plain):]
    assert windows and all(n == 1 and "@" in key for key, n, _ in windows)  # each window fires once
    assert sum(count for _, _, count in windows) == 6_000
    starts = {int(key.partition("@")[2]) for key, _, _ in windows}
    assert starts == set(range(0, 3_000, WINDOW_MS))  # 6,000 records span 3 s of event time
    # A window fired twice, or with a wrong count, is caught like any other result.
    assert compare(with_windows, [*with_windows, windows[0]]).duplicates == 1
    key, n, count = windows[0]
    wrong = compare(with_windows, [*with_windows[:-len(windows)], (key, n, count + 1), *windows[1:]])
    assert (wrong.losses, wrong.unexpected) == (1, 1)


def test_results_survive_their_text_form() -> None:
    result: Result = ("k17", 3, 123456)
    assert parse_result(format_result(result)) == result


EXPECTED: list[Result] = [("a", 1, 0), ("b", 1, 1), ("a", 2, 2), ("a", 3, 3), ("b", 2, 4)]


def test_the_expected_output_in_any_interleaving_of_keys_is_exact() -> None:
    committed = [("b", 1, 1), ("a", 1, 0), ("a", 2, 2), ("b", 2, 4), ("a", 3, 3)]
    verdict = compare(EXPECTED, committed)
    assert verdict == Verdict(expected=5, committed=5, duplicates=0, losses=0, unexpected=0, keys_out_of_order=0)
    assert verdict.exact


def test_a_duplicate_a_loss_a_wrong_record_and_a_reordering_are_each_caught() -> None:
    duplicate = compare(EXPECTED, [*EXPECTED, ("a", 3, 3)])
    assert (duplicate.duplicates, duplicate.keys_out_of_order, duplicate.exact) == (1, 1, False)
    loss = compare(EXPECTED, EXPECTED[:-1])
    assert (loss.losses, loss.duplicates, loss.exact) == (1, 0, False)
    wrong = compare(EXPECTED, [*EXPECTED[:-1], ("b", 2, 99)])  # a count paired with the wrong record
    assert (wrong.losses, wrong.unexpected, wrong.exact) == (1, 1, False)
    swapped = compare(EXPECTED, [("a", 2, 2), ("a", 1, 0), ("b", 1, 1), ("a", 3, 3), ("b", 2, 4)])
    assert (swapped.keys_out_of_order, swapped.losses, swapped.duplicates, swapped.exact) == (1, 0, 0, False)
    # Same multiset, same count, but one record twice and one missing: not exact.
    traded = compare(EXPECTED, [*EXPECTED[:-1], ("a", 3, 3)])
    assert (traded.committed, traded.duplicates, traded.losses, traded.exact) == (5, 1, 1, False)


def test_verdicts_of_rounds_add_up() -> None:
    one = compare(EXPECTED, EXPECTED)
    two = compare(EXPECTED, [*EXPECTED, ("b", 1, 1)])
    total = one + two
    assert (total.expected, total.committed, total.duplicates, total.exact) == (10, 11, 1, False)
