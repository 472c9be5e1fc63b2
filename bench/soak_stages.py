"""Optional stages of the soak job (``soak.py --stages ...``): stateful features that
must survive the random kills like the keyed count does.

``windows``: beside the count, an event-time tumbling window count per key (timestamps
from the input lines, a bounded out-of-orderness watermark per input partition), its
results written by the same exactly-once sink (``soak_data.py`` says what they are).

``async``: a keyed ``map_async`` before the count. Its calls answer after a short random
sleep, so a kill or a barrier finds calls in flight (their inputs are in the checkpoint
and are called again after a restore), and the first call of one record in
``FAIL_EVERY`` raises once and is tried again by the operator's AsyncRetry. The answer is
the record itself, whatever the sleep or the attempt: the job's output, and so the
expected output of ``soak_data.py``, is the same with or without the stage. Calls of one
key run one at a time in input order (``ordered="per_key"``), which the count's 1, 2, 3...
per key then checks.

Imports no streamflow (the soak driver reads the stage names from here).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random

STAGES = ("async", "windows")
WINDOW_UID = "window-count"
LOOKUP_UID = "lookup"
LOOKUP_LOGGER = "soak.lookup"  # at INFO in the job: what the soak reads of the stage
LOOKUP_CAPACITY = 50  # calls in flight per subtask
LOOKUP_MAX_SLEEP = 0.004  # seconds; a call sleeps 0..this
FAIL_EVERY = 97  # the first call of every 97th record id raises
LOOKUP_ATTEMPTS = 3  # the AsyncRetry's calls per record at most (one planned failure needs 2)
LOOKUP_RETRY_DELAY = 0.01  # seconds


class LookupFailed(Exception):
    """The lookup's planned failure: raised once per process for some records."""


class SlowLookup:
    """An async call that answers ``record`` after a random sleep, failing its first
    attempt for ids divisible by ``FAIL_EVERY`` (once per process: a restored process
    fails them again, which the retry absorbs as well)."""

    def __init__(self) -> None:
        self.rng = random.Random()
        self.failed: set[int] = set()

    async def __call__(self, record: tuple[str, int]) -> tuple[str, int]:
        await asyncio.sleep(self.rng.uniform(0.0, LOOKUP_MAX_SLEEP))
        record_id = record[1]
        if record_id % FAIL_EVERY == 0 and record_id not in self.failed:
            self.failed.add(record_id)
            raise LookupFailed(f"planned failure of the first call for record {record_id}")
        return record

    def close(self) -> None:
        """At the job's end (not after a kill): say how many planned failures were retried."""
        logging.getLogger(LOOKUP_LOGGER).info("soak lookup: %d planned failures retried", len(self.failed))


def parse_stages(text: str) -> tuple[str, ...]:
    """``"async,windows"`` (comma-separated names) or ``""`` (none) as a tuple of stage names;
    an unknown name is refused with the names there are (an argparse type)."""
    stages = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in stages if name not in STAGES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    return stages
