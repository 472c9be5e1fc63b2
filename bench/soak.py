"""The random-kill soak: SIGKILL an exactly-once job many times, check its output exactly.

    python3 bench/soak.py [--kills 100] [--target kafka|mysql|both] [--seed S]
                          [--records 200000] [--rate 10000] [--parallelism 2] [--workers N]
                          [--kill-delay 0.5 5] [--db-restarts K] [--report FILE]
                          [--state-backend heap|heap-fork|rocksdb] [--stages async,windows] [--unaligned]

For each target, the job of ``soak_job.py`` (Kafka -> keyed count -> an exactly-once
Kafka sink, or an XA MySQL sink) runs as a real process on a checkpoint directory. The
soak kills it with SIGKILL after a random delay (``--kill-delay``, seconds from process
start, seeded RNG), starts it again on the same directory, and repeats until ``--kills``
kills have happened; then it lets the job finish. A run that finishes before all kills
are spent ends a round: its output is checked and a new round starts on a fresh output
and checkpoint directory. Kills may land anywhere: during start-up and restore, between
records, at a barrier, between pre-commit and commit.

Each round's committed output is read by an independent client (``soak_readers.py``: a
``read_committed`` aiokafka consumer, a PyMySQL SELECT; no streamflow code) and compared
record by record with the expected output computed from the input (``soak_data.py``:
per-key counts 1..n): as a multiset (duplicates, losses, unexpected records) and per key
in order. For Kafka, every transaction must be closed at the end; for MySQL, no prepared
XA transaction of the job may be left.

Sizing: the job is held to ``--rate`` records a second, so at the defaults (200,000
records at 10,000/s) an unkilled run lasts ~20 s against kills every 0.5-5 s: a round
takes about ten kills. Checkpoints every ``--checkpoint-interval`` (0.5 s).

Restart time: from the start of a process that restores a checkpoint to its first
completed checkpoint (state restored, the restored transactions committed, new output
durable), read from the job's log; kills that land before that point are counted apart.

``--db-restarts K`` (MySQL target, own MariaDB only): K of the kills are preceded by a
database restart while the job runs (alternately SIGKILL and a clean stop of the server,
then a random 1-5 s outage); the job must ride it out in-process and complete a
checkpoint after the server is back before it is killed.

``--workers N`` (Kafka target): the job runs as N worker processes (exchange topics
between them, a checkpoint root shared by them), and each kill hits one worker chosen at
random, which is started again alone while the others run on (``soak_workers.py``).

``--state-backend rocksdb`` keeps the job's counts in RocksDB (databases under the work
directory, those of killed processes removed by the next start) with incremental
checkpoints: every restore then reads shared SST files. ``--state-backend heap-fork`` keeps
them on the heap with every keyed snapshot taken by a forked child process (the soak's
1,000 users are below the default threshold of forking), so kills land while children
pickle.

``--stages async`` adds a keyed ``map_async`` before the count (``soak_stages.py``): a
short random sleep per call, capacity 50, per-key order, a planned failure retried by
AsyncRetry, so kills land with calls in flight; its answer is the record, so the
expected output is unchanged. ``--stages windows`` adds an event-time tumbling window
count per key (1 s windows of the input's event time, bounded out-of-orderness
watermarks per input partition) whose results go through the same exactly-once sink and
are checked like the counts (``soak_data.py``). The two combine: ``--stages async,windows``.

``--unaligned`` takes unaligned checkpoints: a barrier overtakes the records queued
between the job's tasks (after each ``key_by``), which go into the checkpoint as channel
state and back into their channels on restore. With the stages, kills land while
records wait in channels behind the lookup and the window.

``--at-least-once`` is the negative control: the same jobs with at-least-once sinks, which
write some results again after a restart; the soak must then report duplicates and fail,
which shows that its check can fail.

Servers: ``KAFKA_BOOTSTRAP_SERVERS`` / ``MYSQL_URL`` if set, else a Kafka broker and a
MariaDB of the soak's own (streamflow.devtools). The report gives kills, records
expected and committed, duplicates, losses, restart time p50/p99/max, wall time, seed and
commit; the exit code is 1 on any mismatch or unexpected job exit.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from soak_data import SoakInput, compare, make_input  # noqa: E402
from soak_process import KILLED, JobProcess  # noqa: E402
from soak_report import DbRestart, Kill, TargetReport, print_report, write_json  # noqa: E402
from soak_stages import LOOKUP_UID, WINDOW_UID, parse_stages  # noqa: E402
from soak_servers import INPUT_PARTITIONS, Servers, SoakOutput, fill_input, open_servers  # noqa: E402
from soak_workers import open_transactions, run_workers  # noqa: E402

JOB = Path(__file__).resolve().parent / "soak_job.py"
MAX_FAILED_IN_A_ROW = 3  # unexpected exits of the job in a row before a round is given up
RIDE_OUT_TIMEOUT = 120.0  # seconds for the job to complete a checkpoint after a database restart


class SoakError(RuntimeError):
    """The soak cannot go on as asked (the message says what to change)."""


class Life(enum.Enum):
    """How one job process ended."""

    KILLED = "killed by the soak"
    FINISHED = "finished (exit code 0)"
    FAILED = "exited on its own with an error"
    HUNG = "did not finish in time"

    @classmethod
    def of(cls, code: int | None) -> Life:
        return cls.HUNG if code is None else cls.FINISHED if code == 0 else cls.FAILED


class TargetSoak:
    """The kill loop of one target (``kafka`` or ``mysql``)."""

    def __init__(self, target: str, args: argparse.Namespace, servers: Servers, soak_input: SoakInput,
                 input_topic: str, workdir: Path) -> None:
        self.target = target
        self.args = args
        self.servers = servers
        self.input_topic = input_topic
        self.expected = soak_input.expected(windows="windows" in args.stages)
        self.workdir = workdir
        self.rng = random.Random(f"{args.seed}/{target}")  # the same kill times alone or with --target both
        self.report = TargetReport(target)
        restarts = args.db_restarts if target == "mysql" else 0
        self.db_restart_before = set(self.rng.sample(range(1, args.kills + 1), restarts))
        self.started = time.monotonic()

    def say(self, line: str) -> None:
        print(f"[{self.target} {time.monotonic() - self.started:7.1f}s] {line}", flush=True)

    def kill_delay(self) -> float:
        return self.rng.uniform(*self.args.kill_delay)

    def pick(self, choices: list[int]) -> int:
        return self.rng.choice(choices)

    @property
    def kills_wanted(self) -> int:
        return int(self.args.kills)

    async def run(self) -> TargetReport:
        self.say(f"{self.args.kills} kills, {len(self.expected):,} records a round at {self.args.rate:g}/s, "
                 f"parallelism {self.args.parallelism}, kill delay {self.args.kill_delay[0]:g}-"
                 f"{self.args.kill_delay[1]:g} s" + (f", {len(self.db_restart_before)} database restarts"
                                                     if self.db_restart_before else ""))
        while self.report.rounds == 0 or self.report.kills < self.args.kills:
            if not await self.run_round(self.report.rounds + 1):
                break
        self.report.wall_seconds = time.monotonic() - self.started
        return self.report

    def exchange_topics(self) -> list[str]:
        """The exchange topics of the multi-worker job (one per key_by)."""
        upstream = "hold-rate" if self.args.rate > 0 else "parse"
        edges = []
        if "async" in self.args.stages:
            edges.append((upstream, LOOKUP_UID))
            upstream = LOOKUP_UID
        edges.append((upstream, "count"))
        if "windows" in self.args.stages:
            edges.append((upstream, WINDOW_UID))
        return [f"streamflow.soak.{up}.{down}.0" for up, down in edges]

    def job_argv(self, output: SoakOutput, checkpoints: Path, worker: int = 0) -> list[str]:
        workers = ["--workers", str(self.args.workers), "--worker-index", str(worker)] if self.args.workers > 1 else []
        return [sys.executable, str(JOB), "--bootstrap", self.servers.bootstrap,
                "--input-topic", self.input_topic, "--checkpoints", str(checkpoints),
                "--parallelism", str(self.args.parallelism), "--rate", str(self.args.rate),
                "--checkpoint-interval", str(self.args.checkpoint_interval), *output.job_args, *workers,
                "--state-backend", self.args.state_backend, "--state-dir", str(self.workdir / "rocksdb"),
                "--stages", ",".join(self.args.stages),
                *(["--unaligned"] if self.args.unaligned else []),
                *(["--at-least-once"] if self.args.at_least_once else [])]

    async def run_round(self, number: int) -> bool:
        """One round: kill and restart the job until it finishes, then check its output.
        False when the round had to be given up (the report says why)."""
        self.report.rounds = number
        kills_before, db_restarts_before = self.report.kills, len(self.report.db_restarts)
        round_started = time.monotonic()
        output = await self.servers.new_output(self.target, f"soak-{self.target}-{self.args.seed}-r{number}")
        keep = True  # a failed round's output stays for a look
        try:
            checkpoints = self.workdir / f"{self.target}-r{number}-checkpoints"
            if self.args.workers > 1:
                argvs = [self.job_argv(output, checkpoints, i) for i in range(self.args.workers)]
                finished = await run_workers(self, number, argvs, output.committed_count)
            else:
                with open(self.workdir / f"{self.target}-r{number}.log", "w", encoding="utf-8") as log:
                    finished = await self.run_until_finished(number, self.job_argv(output, checkpoints), log, output)
            run_seconds = time.monotonic() - round_started
            try:
                committed = await output.read_all()
            except Exception as exc:  # an open transaction, an unreachable server: the round fails
                self.report.problems.append(f"round {number}: the output could not be read: {exc}")
                return False
            verdict = compare(self.expected, committed)
            self.report.verdict += verdict
            leftovers = await output.leftovers()
            if self.args.workers > 1:
                leftovers += await open_transactions(self.servers.bootstrap, self.exchange_topics())
            self.report.problems.extend(f"round {number}: {what}" for what in leftovers)
            keep = not verdict.exact or bool(leftovers)
        finally:
            await output.close(keep)
        kills = self.report.kills - kills_before
        db_restarts = len(self.report.db_restarts) - db_restarts_before
        events = f"{kills} kills" + (f" and {db_restarts} database restarts" if db_restarts else "")
        self.say(f"round {number} done after {events}: {'EXACT' if verdict.exact else 'MISMATCH'} "
                 f"(committed {verdict.committed:,} of {verdict.expected:,}, duplicates {verdict.duplicates}, "
                 f"losses {verdict.losses}, unexpected {verdict.unexpected}, "
                 f"keys out of order {verdict.keys_out_of_order}) in {output.where}")
        if finished and kills == 0 and db_restarts == 0 and self.report.kills < self.args.kills:
            raise SoakError(
                f"a whole run finished in {run_seconds:.1f} s before its first kill: raise --records "
                f"or lower --rate so that a run outlasts --kill-delay")
        return finished

    async def run_until_finished(self, number: int, argv: list[str], log: IO[str], output: SoakOutput) -> bool:
        """Start the job again after every kill, until it finishes (True) or fails
        MAX_FAILED_IN_A_ROW times in a row (False)."""
        failed_in_a_row = 0
        checkpointed = False  # a process of this round has completed a checkpoint
        while failed_in_a_row < MAX_FAILED_IN_A_ROW:
            process = await JobProcess.start(argv, log, self.workdir, restart=checkpointed)
            try:
                life = await self.one_life(process, output)
            except BaseException:  # the soak fails or is interrupted: leave no job running
                await process.kill()
                raise
            self.report.in_process_restarts += process.in_process_restarts
            checkpointed = checkpointed or process.checkpoints_completed > 0
            if life is Life.FINISHED:
                self.note_ended(process)
                return True
            if life is Life.KILLED:
                failed_in_a_row = 0
                continue
            failed_in_a_row += 1
            code = process.process.returncode
            what = "did not finish in time" if life is Life.HUNG else f"exited with code {code}"
            self.report.unexpected_exits.append(f"round {number}: pid {process.pid} {what}")
            tail = "\n    ".join(process.tail)
            self.say(f"UNEXPECTED: pid {process.pid} {what} after {process.age():.1f}s; log tail:\n    {tail}")
        self.report.problems.append(f"round {number}: given up after {MAX_FAILED_IN_A_ROW} failed runs in a row")
        return False

    async def one_life(self, process: JobProcess, output: SoakOutput) -> Life:
        """Let the process run until its kill (or its end, when the kills are spent)."""
        if self.report.kills >= self.args.kills:
            timeout = 120.0 + (3 * len(self.expected) / self.args.rate if self.args.rate else 600.0)
            code = await process.wait(timeout)
            if code is None:
                await process.kill()
            return Life.of(code)
        kill_number = self.report.kills + 1
        delay = self.rng.uniform(*self.args.kill_delay)
        restart_database = kill_number in self.db_restart_before
        if restart_database:
            if (code := await process.wait(delay)) is not None:
                return Life.of(code)
            self.db_restart_before.discard(kill_number)  # once, even if the job then finishes
            await self.restart_database(process)
            delay = process.age() + self.rng.uniform(*self.args.kill_delay)
        if (code := await process.wait(max(0.0, delay - process.age()))) is not None:
            return Life.of(code)
        killed_at = process.age()
        if (code := await process.kill()) != KILLED:
            return Life.of(code)  # it ended on its own just before the signal
        self.report.kills = kill_number
        self.note_ended(process)
        committed = await output.committed_count()
        self.report.kill_log.append(Kill(kill_number, self.report.rounds, killed_at, process.restart,
                                         process.restored_from, process.restart_seconds, committed,
                                         restart_database))
        shown = "?" if committed is None else f"{committed:,}"
        self.say(f"kill #{kill_number} of pid {process.pid} at {killed_at:.2f}s ({process.describe()}); "
                 f"committed so far {shown}/{len(self.expected):,}")
        return Life.KILLED

    def note_ended(self, process: JobProcess) -> None:
        """Count what a process that was killed or finished reports: the async stage's
        counts, and for a process that restarted the job its restart time, or that it has none."""
        self.report.async_inputs_called_again += process.async_inputs_called_again
        self.report.lookup_retries += process.lookup_retries
        if not process.restart:
            return
        if process.restore_seconds is not None:
            self.report.restore_seconds.append(process.restore_seconds)
        if process.restart_seconds is None:
            self.report.restarts_killed_early += 1
        else:
            self.report.restart_seconds.append(process.restart_seconds)

    async def restart_database(self, process: JobProcess) -> None:
        number = len(self.report.db_restarts) + 1
        kind = "crash" if number % 2 else "clean"
        outage = self.rng.uniform(1.0, 5.0)
        self.say(f"database restart #{number} ({kind}, {outage:.1f}s down) under pid {process.pid}")
        down_at = time.monotonic()
        up_at = await self.servers.restart_database(kind, outage)
        rode_out = await process.next_checkpoint(RIDE_OUT_TIMEOUT)
        ride_out = time.monotonic() - up_at if rode_out else None
        self.report.db_restarts.append(DbRestart(kind, up_at - down_at, ride_out))
        if ride_out is None:
            self.report.problems.append(f"database restart #{number}: the job completed no checkpoint within "
                                        f"{RIDE_OUT_TIMEOUT:.0f} s after the server was back")
        self.say(f"database back after {up_at - down_at:.1f}s; " + (
            f"the job completed a checkpoint {ride_out:.2f}s later" if ride_out is not None
            else "the job completed no checkpoint"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs per target (default 100)")
    parser.add_argument("--target", choices=("kafka", "mysql", "both"), default="both")
    parser.add_argument("--seed", type=int, help="seeds the input and the kill times (default: random, printed)")
    parser.add_argument("--records", type=int, default=200_000, help="input records (default 200000)")
    parser.add_argument("--keys", type=int, default=1_000, help="distinct keys of the input (default 1000)")
    parser.add_argument("--rate", type=float, default=10_000.0,
                        help="records per second the job is held to, 0 for no limit (default 10000)")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of the job; the kills are spread over them (Kafka target; default 1)")
    parser.add_argument("--kill-delay", type=float, nargs=2, default=(0.5, 5.0), metavar=("MIN", "MAX"),
                        help="seconds from a process start to its kill, uniform (default 0.5 5)")
    parser.add_argument("--checkpoint-interval", type=float, default=0.5)
    parser.add_argument("--db-restarts", type=int, default=0,
                        help="restart the soak's own MariaDB this many times during the MySQL soak")
    parser.add_argument("--at-least-once", action="store_true",
                        help="negative control: the sinks at least once; the soak must then FAIL with duplicates")
    parser.add_argument("--state-backend", choices=("heap", "heap-fork", "rocksdb"), default="heap",
                        help="where the job keeps its counts (rocksdb: incremental checkpoints; heap-fork: "
                        "on the heap, every snapshot pickled by a forked child)")
    parser.add_argument("--stages", type=parse_stages, default=(),
                        help="optional stages of the job, comma-separated: async (a keyed map_async before the "
                        "count), windows (an event-time window count per key beside it)")
    parser.add_argument("--unaligned", action="store_true",
                        help="unaligned checkpoints: barriers overtake the records between tasks, which go into "
                        "the checkpoint as channel state and back into their channels on restore")
    parser.add_argument("--report", type=Path, help="also write the report as JSON to this file")
    parser.add_argument("--workdir", type=Path, help="logs and checkpoints (default: a temporary "
                        "directory, removed when the soak passes)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and args.target != "kafka":
        parser.error("--workers N > 1 runs the Kafka target only: add --target kafka")
    if args.workers > 1 and args.db_restarts:
        parser.error("--db-restarts restarts MariaDB under the MySQL job, which --workers does not run")
    if args.kills < 0 or args.records < 1 or args.keys < 1 or args.parallelism < 1 or args.rate < 0:
        parser.error("--kills must be >= 0; --records, --keys and --parallelism >= 1; --rate >= 0")
    low, high = args.kill_delay
    if not 0 < low <= high:
        parser.error(f"--kill-delay MIN MAX needs 0 < MIN <= MAX, got {low:g} {high:g}")
    if args.db_restarts:
        if args.target == "kafka":
            parser.error("--db-restarts restarts MariaDB under the MySQL job: use --target mysql or both")
        if os.environ.get("MYSQL_URL"):
            parser.error("--db-restarts needs the soak's own MariaDB: unset MYSQL_URL")
        if not 0 <= args.db_restarts <= args.kills:
            parser.error(f"--db-restarts must be between 0 and --kills ({args.kills}), got {args.db_restarts}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    return args


async def soak(args: argparse.Namespace, workdir: Path) -> list[TargetReport]:
    targets = ("kafka", "mysql") if args.target == "both" else (args.target,)
    soak_input = make_input(args.records, partitions=INPUT_PARTITIONS, keys=args.keys, seed=args.seed)
    async with open_servers(need_mysql="mysql" in targets, db_restarts=args.db_restarts > 0,
                            workdir=workdir) as servers:
        started = time.monotonic()
        input_topic = await fill_input(servers.bootstrap, soak_input, f"soak-input-{args.seed}")
        print(f"soak: {soak_input.records:,} input records in topic {input_topic} "
              f"({time.monotonic() - started:.1f}s)", flush=True)
        reports = []
        for target in targets:
            reports.append(await TargetSoak(target, args, servers, soak_input, input_topic, workdir).run())
        return reports


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="soak: %(levelname)s %(name)s: %(message)s")
    print(f"soak: seed {args.seed} (rerun with --seed {args.seed})", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streamflow-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        reports = asyncio.run(soak(args, workdir))
    except SoakError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    passed = all(report.passed for report in reports)
    print_report(reports, args, time.monotonic() - started)
    if args.report is not None:
        write_json(args.report, reports, args, time.monotonic() - started)
    if passed and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs and checkpoints: {workdir}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
