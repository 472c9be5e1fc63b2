"""Write your own exactly-once sink: a TwoPhaseCommitSinkWriter that publishes a file per checkpoint.

What it shows (the README section "Write your own exactly-once sink"):
- ``JsonLinesSink``: each sink subtask's transaction of checkpoint n becomes one JSON-lines
  file. The five steps of a two-phase-commit writer, and nothing else:
  ``begin`` (a new transaction: a list in memory), ``write_to`` (append to it),
  ``pre_commit`` (write it to ``.staging/`` and fsync: durable, and committable later by
  any process; returns the handle the checkpoint stores), ``commit`` (publish it by an
  atomic rename, idempotent), ``abort`` (drop it), plus ``abort_lingering`` (delete
  staged files of earlier attempts that no checkpoint recorded);
- the base class drives them: pre-commit on the barrier, commit when the checkpoint
  completes, and on restore commit what the restored checkpoint prepared;
- a crash on purpose right after a checkpoint completed and before its files were
  published: the restart restores that checkpoint, publishes its files (``recover``), and
  the output holds every record exactly once, which the script checks.

Run it: ``python examples/custom_2pc_sink.py [--out DIR]`` (prints ``CHECK OK``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streamflow import DataLossError, RestartStrategy, StreamEnvironment
from streamflow.connectors import CollectionSource, DeliveryGuarantee, SinkContext, TwoPhaseCommitSinkWriter

STAGING = ".staging"


class JsonLinesSink:
    """Records as JSON lines in ``directory``, one file per subtask and checkpoint, exactly once."""

    # Declared so that the job refuses to roll committed output back past a damaged
    # completed checkpoint (see the README, "Outages and damaged checkpoints").
    delivery_guarantee = DeliveryGuarantee.EXACTLY_ONCE

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).resolve()  # handles must not depend on the cwd

    def create_writer(self, ctx: SinkContext) -> JsonLinesWriter:
        return JsonLinesWriter(ctx, self.directory)


class JsonLinesWriter(TwoPhaseCommitSinkWriter[list[bytes]]):
    """A transaction is the list of encoded lines; its handle ``{"staged", "final"}``."""

    def __init__(self, ctx: SinkContext, directory: Path) -> None:
        super().__init__(ctx)
        self.directory = directory
        self.staging = directory / STAGING
        # <uid>-<subtask>-<checkpoint>-<run>.jsonl: unique across attempts and runs
        self.names = re.compile(rf"^{re.escape(ctx.operator_uid)}-(\d+)-\d+-\w+\.jsonl$")

    async def open(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        await super().open()  # commits the restored handles, aborts lingering transactions

    async def begin(self) -> list[bytes]:
        return []

    async def write_to(self, txn: list[bytes], records: list[Any]) -> None:
        txn.extend(orjson.dumps(r) + b"\n" for r in records)

    async def pre_commit(self, txn: list[bytes], checkpoint_id: int) -> Any:
        if not txn:
            return None  # nothing to publish
        ctx = self.ctx
        name = f"{ctx.operator_uid}-{ctx.subtask_index}-{checkpoint_id:08d}-{ctx.run_id[:12]}.jsonl"
        staged = self.staging / name
        await asyncio.to_thread(_write_durably, staged, b"".join(txn))
        return {"staged": str(staged), "final": str(self.directory / name)}

    async def commit(self, handle: Any) -> None:
        if handle is not None:
            await asyncio.to_thread(_publish, Path(handle["staged"]), Path(handle["final"]))

    async def abort(self, txn: list[bytes]) -> None:
        txn.clear()  # never left memory

    async def abort_lingering(self) -> None:
        live = {Path(h["staged"]).name for h in self.pending_handles() if h is not None}
        mine, parallelism = self.ctx.subtask_index, self.ctx.parallelism
        for path in self.staging.iterdir():
            match = self.names.match(path.name)
            if match is None or path.name in live:
                continue
            subtask = int(match.group(1))
            if subtask == mine or (mine == 0 and subtask >= parallelism):
                path.unlink()


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _publish(staged: Path, final: Path) -> None:
    """Rename ``staged`` to ``final``; a second call finds it done (commit is idempotent)."""
    if staged.exists():
        os.replace(staged, final)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself is durable
        finally:
            os.close(fd)
    elif not final.exists():
        raise DataLossError(f"{staged} was prepared for a completed checkpoint but is gone, and {final} does not exist")


def read_committed(directory: Path) -> list[Any]:
    return [orjson.loads(line) for p in sorted(directory.glob("*.jsonl")) for line in p.read_bytes().splitlines()]


# -- the demo ---------------------------------------------------------------------------------


class FlakyJsonLinesSink(JsonLinesSink):
    def create_writer(self, ctx: SinkContext) -> JsonLinesWriter:
        return FlakyJsonLinesWriter(ctx, self.directory)


class FlakyJsonLinesWriter(JsonLinesWriter):
    """Crashes once, when checkpoint 2 (or a later one) completed and before its files
    are published: the demo's injected failure (the "once" lives on the class)."""

    crashed = False

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if not FlakyJsonLinesWriter.crashed and checkpoint_id >= 2 and any(self.pending_handles()):
            FlakyJsonLinesWriter.crashed = True
            raise ConnectionError(
                f"crash on purpose: checkpoint {checkpoint_id} completed, its files are not published yet"
            )
        await super().notify_checkpoint_complete(checkpoint_id)


async def pace(order: dict[str, int]) -> dict[str, int]:
    if order["id"] % 100 == 0:
        await asyncio.sleep(0.02)  # some work per order, so the run spans several checkpoints
    return order


async def run(out: Path) -> bool:
    orders = [{"id": i, "cents": (i * 37) % 1000} for i in range(3000)]
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.1, directory=out / "checkpoints")
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=2, delay=0.2))
    env.set_source_batch_size(50)
    (
        env.from_source(CollectionSource(orders), name="orders").uid("orders")
        .map(pace).uid("pace")
        .sink_to(FlakyJsonLinesSink(out / "orders")).uid("orders-out")
    )
    result = await env.execute("custom-2pc-sink")
    print(
        f"finished after {result.attempts} attempts, restored from checkpoint {result.restored_from}, "
        f"{result.checkpoints_completed} checkpoints"
    )
    got = Counter(orjson.dumps(r) for r in read_committed(out / "orders"))
    expected = Counter(orjson.dumps(o) for o in orders)
    leftovers = sorted(p.name for p in (out / "orders" / STAGING).iterdir())
    if result.attempts == 2 and got == expected and not leftovers:
        print(f"CHECK OK: {sum(got.values())} orders published exactly once, nothing left in {STAGING}/")
        return True
    print(f"CHECK FAILED: {sum((expected - got).values())} missing, {sum((got - expected).values())} extra, "
          f"left in {STAGING}/: {leftovers}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for the output and checkpoints")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="streamflow-custom-2pc-"))
    return 0 if asyncio.run(run(out)) else 1


if __name__ == "__main__":
    sys.exit(main())
