"""The key-group lookup of the keyed hot path alone: ``KeyGroupAssigner.of_all`` over
batches of 1000 str keys drawn uniformly from ``--keys`` distinct users, warm (a first
pass over the same keys runs untimed), against ``stable_hash`` per key with no cache.
Prints nanoseconds per key for each cache limit.

Uses only APIs older trees share, so the same file measures a baseline tree too:

    python3 bench/keygroup_cache.py --keys 1000000
    (cd /path/to/baseline && /path/to/baseline/.venv/bin/python /path/to/this/bench/keygroup_cache.py)
"""

from __future__ import annotations

import argparse
import random
import time

from streamflow.partitioning.keygroups import KeyGroupAssigner, stable_hash

MAX_PARALLELISM = 128
DRAWS = 2_000_000


def per_key(batches: list[list[str]], limit: int | None) -> float:
    """Nanoseconds per key of one timed pass (after an untimed one) with a cache of
    ``limit`` entries, or of stable_hash alone (None)."""
    if limit is None:
        started = time.perf_counter()
        for batch in batches:
            [stable_hash(key) % MAX_PARALLELISM for key in batch]
        return (time.perf_counter() - started) / DRAWS * 1e9
    assign = KeyGroupAssigner(MAX_PARALLELISM, limit)
    for batch in batches:
        assign.of_all(batch)
    started = time.perf_counter()
    for batch in batches:
        assign.of_all(batch)
    return (time.perf_counter() - started) / DRAWS * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct users (default 1,000,000)")
    args = parser.parse_args()
    rng = random.Random(17)
    keys = [f"user-{rng.randrange(args.keys)}" for _ in range(DRAWS)]
    batches = [keys[start : start + 1000] for start in range(0, DRAWS, 1000)]
    for limit in (None, 1 << 16, 1 << 18, 1 << 20):
        name = "stable_hash, no cache" if limit is None else f"cache of {limit:,}"
        print(f"{args.keys:>9,} keys, {name:<22}: {per_key(batches, limit):6.0f} ns per key")


if __name__ == "__main__":
    main()
