"""The soak's data: its input, the output a correct run must commit, and the comparison.

Input record ``i`` is the line ``"<key>,<i>,<event ms>"``; a key lives in exactly one
input partition (key ``k<j>`` in partition ``j mod partitions``), so the job sees each
key's records in the order of that partition whatever its parallelism and timing. The job
counts records per key and emits ``(key, n, i)`` for the key's n-th record: the expected
output is a pure function of the input, every result is unique, and a key's results carry
the counts 1..n.

Event time (``soak.py --stages windows``): record ``i`` happened at ``i // RECORDS_PER_MS``
milliseconds less a seeded jitter of up to ``MAX_JITTER_MS``, so within a partition the
records are at most that much out of order, and a watermark with that bounded
out-of-orderness finds none of them late. The job counts each key's records per
tumbling window of ``WINDOW_MS`` and emits, when the window fires, the result
``("<key>@<window start ms>", 1, <records in it>)``: a window fires once, so that key
has the one result n = 1, and the comparison below checks it like any other.

This module imports neither streamflow nor a client library: the soak's verdict rests on
it and on the independent readers of ``soak_readers.py`` alone.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

Result = tuple[str, int, int]  # (key, count of the key so far, input record id), or a window's (see above)

RECORDS_PER_MS = 2  # event time runs one millisecond every two input records
MAX_JITTER_MS = 250  # a record's event time lies up to this much before its place in the input
WINDOW_MS = 1_000  # the tumbling event-time window of the windows stage


@dataclass(frozen=True, slots=True)
class SoakInput:
    """The input lines per partition, in partition order."""

    partitions: tuple[tuple[str, ...], ...]

    @property
    def records(self) -> int:
        return sum(len(lines) for lines in self.partitions)

    def expected(self, *, windows: bool = False) -> list[Result]:
        """What a correct run commits, as a multiset (each result once); ``windows``: the
        job also counts per key and event-time window."""
        counts: Counter[str] = Counter()
        per_window: Counter[tuple[str, int]] = Counter()
        out: list[Result] = []
        for lines in self.partitions:
            for line in lines:
                key, record_id = parse_input(line)
                counts[key] += 1
                out.append((key, counts[key], record_id))
                if windows:
                    per_window[key, event_ms(line) // WINDOW_MS * WINDOW_MS] += 1
        out.extend(window_result(key, start, n) for (key, start), n in per_window.items())
        return out


def make_input(records: int, *, partitions: int, keys: int, seed: int) -> SoakInput:
    """``records`` lines over ``keys`` keys, drawn with a seeded RNG; ids 0..records-1,
    event times as the module docstring says."""
    if records < 1 or partitions < 1 or keys < 1:
        raise ValueError(f"records, partitions and keys must be >= 1, got {records}, {partitions}, {keys}")
    rng = random.Random(seed)
    jitter = random.Random(f"{seed}/event-time")  # the keys drawn stay those of the seed without event time
    lines: list[list[str]] = [[] for _ in range(partitions)]
    for record_id in range(records):
        key_index = rng.randrange(keys)
        at_ms = max(0, record_id // RECORDS_PER_MS - jitter.randrange(MAX_JITTER_MS + 1))
        lines[key_index % partitions].append(f"k{key_index},{record_id},{at_ms}")
    return SoakInput(tuple(tuple(p) for p in lines))


def parse_input(line: str) -> tuple[str, int]:
    key, record_id, _ = line.split(",")
    return key, int(record_id)


def event_ms(line: str) -> int:
    """The input record's event time in milliseconds."""
    return int(line.rpartition(",")[2])


def event_seconds(line: str) -> float:
    """The input record's event time as the job's timestamps are: float seconds."""
    return event_ms(line) / 1000


def window_result(key: str, start_ms: int, records: int) -> Result:
    """What the windows stage emits for ``key``'s window starting at ``start_ms``."""
    return f"{key}@{start_ms}", 1, records


def format_result(result: Result) -> str:
    return f"{result[0]},{result[1]},{result[2]}"


def parse_result(text: str) -> Result:
    key, count, record_id = text.split(",")
    return key, int(count), int(record_id)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Committed output against the expected output.

    ``duplicates``: committed copies beyond the first of an expected result;
    ``losses``: expected results never committed; ``unexpected``: committed results that
    no correct run emits (a wrong count or id); ``keys_out_of_order``: keys whose counts,
    in the order the reader saw them, do not rise 1, 2, 3... (a key's results share one
    Kafka partition, and MySQL rows are read in insertion order).
    """

    expected: int
    committed: int
    duplicates: int
    losses: int
    unexpected: int
    keys_out_of_order: int

    @property
    def exact(self) -> bool:
        return (self.committed == self.expected and not self.duplicates and not self.losses
                and not self.unexpected and not self.keys_out_of_order)

    def __add__(self, other: Verdict) -> Verdict:
        return Verdict(*(a + b for a, b in zip(self.fields(), other.fields(), strict=True)))

    def fields(self) -> tuple[int, ...]:
        return (self.expected, self.committed, self.duplicates, self.losses, self.unexpected,
                self.keys_out_of_order)


NO_RECORDS = Verdict(0, 0, 0, 0, 0, 0)


def compare(expected: Sequence[Result], committed: Sequence[Result]) -> Verdict:
    """Compare record by record, as multisets, and each key's order."""
    wanted = Counter(expected)
    seen = Counter(committed)
    duplicates = sum(n - 1 for result, n in seen.items() if n > 1 and result in wanted)
    losses = sum(1 for result in wanted if result not in seen)
    unexpected = sum(n for result, n in seen.items() if result not in wanted)
    counts_by_key: defaultdict[str, list[int]] = defaultdict(list)
    for key, count, _ in committed:
        counts_by_key[key].append(count)
    out_of_order = sum(1 for counts in counts_by_key.values() if counts != list(range(1, len(counts) + 1)))
    return Verdict(len(expected), len(committed), duplicates, losses, unexpected, out_of_order)
