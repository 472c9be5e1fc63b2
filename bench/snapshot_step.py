"""The synchronous snapshot step of pipeline (b)'s keyed state, alone: backend.snapshot()
plus the encode the task does, for 10,000 users each holding a ``{"user", "amount"}``
dict. Prints the minimum of 300 runs and the bytes written.

Uses only APIs older trees share, so the same file measures a baseline tree too:

    python3 bench/snapshot_step.py                                  # this tree
    python3 bench/snapshot_step.py --fork                           # a forked child takes it
    (cd /path/to/baseline && /path/to/baseline/.venv/bin/python /path/to/this/bench/snapshot_step.py)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from streamflow.checkpoint import serde
from streamflow.core.clock import ManualClock
from streamflow.partitioning.keygroups import key_group_for
from streamflow.state import HashMapStateBackend, ValueStateDescriptor

USERS = 10_000
MAX_PARALLELISM = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=USERS, help="users in the state (default 10,000)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--fork", action="store_true", help="a forked child takes the snapshot (newer trees only)")
    args = parser.parse_args()
    users, repeats = args.keys, args.repeats
    backend = HashMapStateBackend().create_keyed_backend(
        operator_uid="sum-per-user", subtask_index=0, max_parallelism=MAX_PARALLELISM,
        key_group_range=range(MAX_PARALLELISM), clock=ManualClock(0.0),
    )  # fmt: skip
    state = backend.get_state(ValueStateDescriptor("reduce"))
    for i in range(users):
        user = f"user-{i}"
        backend.set_current_key(user, key_group_for(user, MAX_PARALLELISM))
        state.update({"user": user, "amount": i * 3})

    def step() -> bytes:
        return serde.encode({"keyed": backend.snapshot(), "timers": {"processing": [], "event": []}})

    if args.fork:
        fork_step(backend, users, repeats)
        return
    best = min(timeit.repeat(step, number=1, repeat=repeats))
    print(f"snapshot + encode of {users:,} keys: {best * 1e3:.2f} ms (min of {repeats}), {len(step()):,} bytes")


def fork_step(backend: Any, users: int, repeats: int) -> None:
    """The synchronous step when a forked child takes the snapshot (the fork), and how
    long the child then takes to hand the encoded snapshot over."""
    from streamflow.checkpoint.forked_snapshot import fork_snapshot
    from streamflow.checkpoint.shared_files import SharedFileStore

    async def once() -> tuple[float, float, int]:
        started = time.perf_counter()
        child = fork_snapshot(backend.snapshot, operator="sum-per-user", subtask=0)
        forked = time.perf_counter()
        try:
            finished = await child.finish(SharedFileStore(Path(tempfile.gettempdir())))
        finally:
            await child.discard()
        done = time.perf_counter()
        return forked - started, done - forked, len(serde.encode(finished.keyed))

    runs = [asyncio.run(once()) for _ in range(repeats)]
    sync, background, size = min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]
    print(f"fork of {users:,} keys: {sync * 1e3:.2f} ms at the barrier, the child's snapshot + encode "
          f"{background * 1e3:.0f} ms (min of {repeats}), {size:,} bytes")


if __name__ == "__main__":
    main()
