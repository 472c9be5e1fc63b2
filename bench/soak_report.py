"""What the soak found, per target: counts, the verdict, restart times; printed and as JSON."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soak_data import NO_RECORDS, Verdict

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class DbRestart:
    kind: str  # "crash" (SIGKILL) or "clean" (SIGTERM)
    down_seconds: float  # from the stop to the server answering again
    ride_out_seconds: float | None  # from then to the job's next completed checkpoint


@dataclass(frozen=True, slots=True)
class Kill:
    number: int
    round: int
    seconds_after_start: float  # of the killed process
    restart: bool  # the killed process restarted the job from a checkpoint
    restored_from: int | None  # the checkpoint it said it restored (None: a first start, or not yet)
    first_checkpoint_seconds: float | None  # its start -> its first completed checkpoint (None: not yet)
    committed_after: int | None  # results the independent reader saw right after the kill
    after_database_restart: bool  # the process rode out a database restart before this kill
    worker: int | None = None  # the worker killed (``--workers N``), None for a one-process job


@dataclass(slots=True)
class TargetReport:
    target: str
    kills: int = 0
    rounds: int = 0
    kill_log: list[Kill] = field(default_factory=list)
    verdict: Verdict = NO_RECORDS
    restart_seconds: list[float] = field(default_factory=list)  # process start -> first checkpoint
    restore_seconds: list[float] = field(default_factory=list)  # process start -> restore logged
    restarts_killed_early: int = 0  # restarts killed before their first checkpoint (no restart time)
    in_process_restarts: int = 0
    async_inputs_called_again: int = 0  # --stages async: inputs in flight at a restored checkpoint, called again
    lookup_retries: int = 0  # --stages async: planned lookup failures retried (by processes that finished)
    db_restarts: list[DbRestart] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.verdict.exact and self.verdict.expected > 0 and not self.unexpected_exits and not self.problems

    def restart_summary(self) -> dict[str, float | None]:
        return summary(self.restart_seconds)

    def restore_summary(self) -> dict[str, float | None]:
        return summary(self.restore_seconds)


def summary(seconds: list[float]) -> dict[str, float | None]:
    ordered = sorted(seconds)
    return {"p50": percentile(ordered, 50), "p99": percentile(ordered, 99), "max": ordered[-1] if ordered else None}


def percentile(ordered: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ascending ``ordered`` (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def commit() -> str:
    """The repository's commit, ``-dirty`` when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPOSITORY,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def print_report(reports: list[TargetReport], args: argparse.Namespace, wall: float) -> None:
    print("\n=== soak report ===")
    print(f"seed {args.seed}, commit {commit()}, {args.records:,} records a round over {args.keys} keys at "
          f"{args.rate:g}/s, {args.workers} worker(s) of parallelism {args.parallelism}, kill delay {args.kill_delay[0]:g}-"
          f"{args.kill_delay[1]:g}s, checkpoint interval {args.checkpoint_interval:g}s, state backend "
          f"{args.state_backend}, stages {','.join(args.stages) or 'none'}, "
          f"{'unaligned' if args.unaligned else 'aligned'} checkpoints, "
          f"wall time {wall:.0f}s")
    for report in reports:
        v = report.verdict
        restarts = report.restart_summary()
        print(f"\n{report.target}: {'PASSED' if report.passed else 'FAILED'} in {report.wall_seconds:.0f}s")
        spread = Counter(kill.worker for kill in report.kill_log if kill.worker is not None)
        per_worker = f" (per worker: {', '.join(f'{w}: {n}' for w, n in sorted(spread.items()))})" if spread else ""
        print(f"  kills {report.kills} over {report.rounds} round(s){per_worker}")
        print(f"  records expected {v.expected:,}, committed {v.committed:,}, duplicates {v.duplicates}, "
              f"losses {v.losses}, unexpected {v.unexpected}, keys out of order {v.keys_out_of_order}")
        print(f"  restart to first checkpoint: p50 {_seconds(restarts['p50'])}, p99 {_seconds(restarts['p99'])}, "
              f"max {_seconds(restarts['max'])} over {len(report.restart_seconds)} restarts; "
              f"{report.restarts_killed_early} more killed before their first checkpoint")
        restores = report.restore_summary()
        print(f"  of which start to restore (interpreter, imports, reading the checkpoint): "
              f"p50 {_seconds(restores['p50'])}, max {_seconds(restores['max'])}")
        if "async" in args.stages:
            print(f"  async stage: {report.async_inputs_called_again} inputs in flight at a restored checkpoint "
                  f"called again; {report.lookup_retries} planned call failures retried (processes that finished)")
        if report.in_process_restarts:
            print(f"  in-process restarts (attempts failed and retried): {report.in_process_restarts}")
        for i, db in enumerate(report.db_restarts, 1):
            print(f"  database restart #{i} ({db.kind}): down {db.down_seconds:.1f}s, "
                  f"next checkpoint {_seconds(db.ride_out_seconds)} after it was back")
        for line in report.unexpected_exits:
            print(f"  unexpected exit: {line}")
        for line in report.problems:
            print(f"  problem: {line}")


def write_json(path: Path, reports: list[TargetReport], args: argparse.Namespace, wall: float) -> None:
    def one(report: TargetReport) -> dict[str, Any]:
        data = asdict(report)
        data["verdict"] = {**asdict(report.verdict), "exact": report.verdict.exact}
        data["restart"] = report.restart_summary()
        data["restore"] = report.restore_summary()
        data["passed"] = report.passed
        return data

    options = {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
               for k, v in vars(args).items()}
    document = {"seed": args.seed, "commit": commit(), "wall_seconds": wall, "options": options,
                "passed": all(r.passed for r in reports), "targets": [one(r) for r in reports]}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
