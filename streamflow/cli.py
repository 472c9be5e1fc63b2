"""The ``streamflow`` command line.

``streamflow run module:function`` imports ``function``, calls it with a configured
:class:`StreamEnvironment` to declare the pipeline, and executes the job::

    streamflow run examples.wordcount:build --parallelism 2 \\
        --checkpoint-dir /tmp/chk --checkpoint-interval 1

``function(env)`` may be sync or async; it adds sources, transformations and sinks to
``env`` (and may configure it further). A process started again with the same
checkpoint directory resumes from the latest complete checkpoint; ``--from-savepoint``
starts from a savepoint (or a ``chk-<n>`` directory) instead. ``--state-backend rocksdb``
keeps keyed state in RocksDB (``--state-dir``, ``--rocksdb-memory``) with incremental
checkpoints, for state larger than memory; ``--fork-snapshots-from`` sets from how many
keys a heap subtask's snapshot is pickled by a forked child. Savepoint paths may be
given as ``file://`` URIs. A job that cannot start (its savepoint is missing or does not
fit) ends with an error and is never registered.

``python -m streamflow`` is the same command. ``--loop uvloop`` (or
``STREAMFLOW_LOOP=uvloop``) runs the job on uvloop instead of asyncio's event loop (see
:mod:`streamflow.runtime.eventloop`).

One job on several worker processes (README "Scale out")::

    streamflow run mod:build --workers 3 --worker-index 1 --exchange-bootstrap HOST:PORT ...

runs worker 1 of 3 (any machine; on Kubernetes the StatefulSet ordinal is the index);
without ``--worker-index``, ``--workers N`` starts N local worker processes and
supervises them (:mod:`streamflow.workers.supervisor`). ``list``, ``status``, ``stop``,
``savepoint`` and ``cancel`` address every worker of such a job at once; ``stop`` and
``savepoint`` take a savepoint set, from which any number of workers can start
(``--from-savepoint SET``).

While it runs, the job is registered (see :mod:`streamflow.control`) and the other
commands reach it by job id or name::

    streamflow list                          running jobs
    streamflow status JOB                    state, checkpoints, backpressure per task
    streamflow status JOB --web              the address of its dashboard (--web-port)
    streamflow savepoint JOB [DIR]           take a savepoint, print its directory
    streamflow stop JOB [--savepoint DIR]    final savepoint, sinks commit, job ends
    streamflow cancel JOB                    end now; nothing beyond the last checkpoint
    streamflow inspect PATH                  what a savepoint or checkpoint holds

Exit codes: 0 success (for ``run``: finished or stopped with a savepoint), 1 the job or
command failed, 2 bad arguments or configuration, 3 ``run``: the job was cancelled
(``streamflow cancel`` or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from streamflow.config import CheckpointingMode
from streamflow.connectors.kafka.exchange import KafkaExchange
from streamflow.control import ControlServer, JobEntry, JobRegistry, JobUnreachableError, send_command
from streamflow.control.views import format_jobs, format_status
from streamflow.control.workers import take_savepoint_set
from streamflow.datastream.environment import StreamEnvironment
from streamflow.devtools.commands import add_dev_commands, run_dev
from streamflow.errors import ConfigError, JobCancelledError, StreamflowError
from streamflow.lab.command import add_lab_command
from streamflow.runtime.eventloop import LOOP_VARIABLE, LOOPS, run as run_on_loop
from streamflow.savepoint.describe import describe_snapshot, format_description
from streamflow.savepoint.location import local_path
from streamflow.state import EmbeddedRocksDBStateBackend, HashMapStateBackend, StateBackend
from streamflow.state.heap import FORK_SNAPSHOTS_FROM
from streamflow.workers.supervisor import Supervisor

log = logging.getLogger("streamflow.cli")

EXIT_CANCELLED = 3


def load_builder(target: str) -> Callable[[StreamEnvironment], Any]:
    """Import ``module:function``; the current directory is importable, as with ``python -m``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected module:function, got {target!r} (e.g. examples.wordcount:build)")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r}: {exc}; run from the directory that holds it") from exc
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ConfigError(f"{module_name!r} has no callable {attr!r}")
    return builder  # type: ignore[no-any-return]


async def run_job(args: argparse.Namespace) -> int:
    if args.workers is not None and args.worker_index is None:
        return await supervise(args)
    env = StreamEnvironment(parallelism=args.parallelism, max_parallelism=args.max_parallelism)
    if args.workers is not None:
        exchange = None
        if args.exchange_bootstrap is not None:
            exchange = KafkaExchange(
                args.exchange_bootstrap, partitions=args.exchange_partitions,
                replication_factor=args.exchange_replication,
            )
        env.set_workers(args.workers, args.worker_index, exchange=exchange)
    elif args.worker_index is not None:
        raise ConfigError("--worker-index needs --workers N (the job's number of workers)")
    if args.checkpoint_interval is not None:
        env.enable_checkpointing(
            args.checkpoint_interval,
            CheckpointingMode.AT_LEAST_ONCE if args.at_least_once else CheckpointingMode.EXACTLY_ONCE,
            directory=args.checkpoint_dir,
            unaligned=args.unaligned,
            aligned_timeout=args.aligned_timeout,
        )
    elif args.unaligned or args.aligned_timeout is not None:
        raise ConfigError("--unaligned and --aligned-timeout need checkpoints: add --checkpoint-interval SECONDS")
    elif args.checkpoint_dir is not None:
        env.set_checkpoint_dir(args.checkpoint_dir)
    if args.savepoint_dir is not None:
        env.set_savepoint_dir(args.savepoint_dir)
    env.set_metrics_interval(args.metrics_interval)
    if args.metrics_port is not None:
        env.set_metrics_port(args.metrics_port, args.metrics_host)
    if args.web_port is not None:
        env.set_web_ui(args.web_port, args.web_host)
    env.set_state_backend(state_backend(args))
    result = load_builder(args.target)(env)
    if inspect.isawaitable(result):
        await result
    job_name = args.job_name or args.target.partition(":")[0].rsplit(".", 1)[-1]
    client = env.execute_async(
        job_name, from_savepoint=args.from_savepoint, allow_non_restored_state=args.allow_non_restored_state,
        allow_checkpoint_rollback=args.allow_rollback,
    )
    server = None
    if not args.no_control:
        server = ControlServer(client)
        try:
            await server.start()
        except OSError as exc:
            log.warning("job %r runs without a control socket (list/status/stop cannot reach it): %s", job_name, exc)
            server = None
    summary: dict[str, Any] = {"job": job_name, "job_id": server.entry.job_id if server and server.entry else None}
    cancelling: set[asyncio.Task[None]] = set()

    def on_sigterm() -> None:
        # `kill PID` cancels like `streamflow cancel`: tasks stop, the entry is removed.
        log.warning("SIGTERM: cancelling job %r", job_name)
        cancelling.add(asyncio.ensure_future(client.cancel()))

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError):  # no signal handlers on this platform or thread
        pass
    try:
        job = await client.wait()
    except JobCancelledError:
        print(json.dumps({**summary, "status": "cancelled"}))
        return EXIT_CANCELLED
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if server is not None:
            await server.close()
    summary.update(
        status="stopped" if job.stopped_with_savepoint is not None else "finished",
        savepoint=None if job.stopped_with_savepoint is None else str(job.stopped_with_savepoint),
        attempts=job.attempts,
        restored_from=job.restored_from,
        checkpoints_completed=job.checkpoints_completed,
        seconds=round(job.duration, 3),
    )
    print(json.dumps(summary))
    return 0


async def supervise(args: argparse.Namespace) -> int:
    """``--workers N`` without ``--worker-index``: N local worker processes, each this
    command with its index, supervised (signals forwarded, a crashed one restarted)."""
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    command = [sys.executable, "-m", "streamflow", *args.argv]
    supervisor = Supervisor([[*command, *_ports_of_worker(args, i), "--worker-index", str(i)] for i in range(args.workers)])
    log.info("starting %d workers of %s", args.workers, args.target)
    return await supervisor.run()


def _ports_of_worker(args: argparse.Namespace, index: int) -> list[str]:
    """Local workers cannot share a port: worker i serves its dashboard and metrics on
    the given port + i (0 stays 0: each picks a free one). Given after the command's own
    options, these win."""
    ports: list[str] = []
    for option, port in (("--web-port", args.web_port), ("--metrics-port", args.metrics_port)):
        if port:
            ports += [option, str(port + index)]
    return ports


def state_backend(args: argparse.Namespace) -> StateBackend:
    """The backend ``--state-backend`` names, with ``--state-dir`` and
    ``--rocksdb-memory`` (refused for the heap backend, which has neither) or
    ``--fork-snapshots-from`` (refused for RocksDB, whose snapshots never fork).

    Raises:
        ConfigError: a setting that does not fit the backend, or a size that does not parse.
    """
    if args.state_backend == "heap":
        given = [flag for flag, value in (("--state-dir", args.state_dir), ("--rocksdb-memory", args.rocksdb_memory))
                 if value is not None]  # fmt: skip
        if given:
            raise ConfigError(
                f"{' and '.join(given)} configure the RocksDB state backend; add --state-backend rocksdb, "
                "or leave them out to keep state in memory"
            )
        if args.fork_snapshots_from is None:
            return HashMapStateBackend()
        return HashMapStateBackend(fork_snapshots_from=fork_threshold(args.fork_snapshots_from))
    if args.fork_snapshots_from is not None:
        raise ConfigError(
            "--fork-snapshots-from configures the heap state backend's snapshots; RocksDB checkpoints never "
            "fork (they copy the database's files): leave it out, or use --state-backend heap"
        )
    budget = 256 << 20 if args.rocksdb_memory is None else parse_size(args.rocksdb_memory, "--rocksdb-memory")
    directory = args.state_dir
    if directory is not None and args.worker_index is not None:
        # local workers given one --state-dir keep their databases apart, each in its own folder
        directory = directory / f"worker-{args.worker_index}"
    return EmbeddedRocksDBStateBackend(directory, memory_budget=budget)


def fork_threshold(text: str) -> int | None:
    """``--fork-snapshots-from``: a number of keys, or ``never`` (None: always pickle in the task).

    Raises:
        ConfigError: anything else.
    """
    if text.strip().lower() == "never":
        return None
    try:
        keys = int(text)
    except ValueError:
        keys = -1
    if keys < 0:
        raise ConfigError(f"--fork-snapshots-from must be a number of keys >= 0 or 'never', got {text!r}")
    return keys


_SIZE = re.compile(r"\s*([0-9]+)\s*([kmg]?)(i?b)?\s*", re.IGNORECASE)


def parse_size(text: str, what: str) -> int:
    """``"512M"``, ``"1GiB"``, ``"268435456"``: a number of bytes (units are binary).

    Raises:
        ConfigError: naming ``what`` and the value.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ConfigError(f"{what} must be a size such as 512M or 1G (bytes, binary units), got {text!r}")
    return int(match.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[match.group(2).lower()]


# -- commands that talk to a running job ---------------------------------------------------


async def _send_to(registry: JobRegistry, entry: JobEntry, command: str, timeout: float, **arguments: Any) -> Any:
    try:
        return await send_command(entry, command, timeout=timeout, **arguments)
    except JobUnreachableError:
        registry.unregister(entry)  # stale: the process is gone (or its pid was reused)
        raise


async def _to_every_worker(
    registry: JobRegistry, entries: list[JobEntry], command: str, timeout: float
) -> list[Any]:
    """``command`` to every worker at once; a worker's failure is its answer."""
    return await asyncio.gather(
        *(_send_to(registry, entry, command, timeout) for entry in entries), return_exceptions=True
    )


async def list_jobs(args: argparse.Namespace) -> int:
    registry = JobRegistry()
    jobs = []
    for entry in registry.entries():
        try:
            jobs.append(await send_command(entry, "ping", timeout=args.timeout))
        except JobUnreachableError:
            registry.unregister(entry)
    print(json.dumps(jobs, indent=2) if args.json else format_jobs(jobs))
    return 0


async def job_status(args: argparse.Namespace) -> int:
    registry = JobRegistry()
    entries = registry.resolve_job(args.job)
    if args.web:
        served = [e for e in entries if e.web_url is not None]
        if not served:
            raise ConfigError(
                f"job {entries[0].job_id} serves no dashboard; start it with `streamflow run ... --web-port PORT` "
                "(0 picks a free port)",
                job=entries[0].job_id,
            )
        print("\n".join(e.web_url for e in served if e.web_url is not None))  # a job on several workers: one each
        return 0
    answers = await _to_every_worker(registry, entries, "status", args.timeout)
    if args.json:
        print(json.dumps(answers[0] if entries[0].worker is None else answers, indent=2, default=str))
    else:
        print("\n\n".join(
            format_status(a) if not isinstance(a, BaseException) else f"{e.job_id}: {type(a).__name__}: {a}"
            for e, a in zip(entries, answers)
        ))
    failed = [a for a in answers if isinstance(a, BaseException)]
    if failed and entries[0].worker is None:
        raise failed[0]
    return 1 if failed else 0


async def savepoint(args: argparse.Namespace) -> int:
    directory = None if args.directory is None else _target(args.directory)
    return await _savepoint_command(args, "savepoint", directory)


async def stop(args: argparse.Namespace) -> int:
    directory = None if args.savepoint is None else _target(args.savepoint)
    return await _savepoint_command(args, "stop", directory)


async def _savepoint_command(args: argparse.Namespace, command: str, directory: str | None) -> int:
    """One savepoint (a job on one process), or a savepoint set of every worker."""
    registry = JobRegistry()
    entries = registry.resolve_job(args.job)
    if entries[0].worker is None:
        result = await _send_to(registry, entries[0], command, args.timeout, directory=directory)
        print(result["path"])
        return 0
    if directory is None:
        first = await _send_to(registry, entries[0], "ping", args.timeout)
        if not first.get("savepoint_dir"):
            raise ConfigError(
                f"no savepoint directory for job {entries[0].name!r}: pass one (--savepoint DIR, or the "
                "directory argument of savepoint), or start the workers with --savepoint-dir"
            )
        directory = str(first["savepoint_dir"])

    async def send(entry: JobEntry, name: str, arguments: dict[str, Any]) -> Any:
        return await _send_to(registry, entry, name, args.timeout, **arguments)

    outcome = await take_savepoint_set(entries, command, Path(directory), send)
    if outcome.manifest is None:
        print(json.dumps(outcome.to_dict(), indent=2), file=sys.stderr)
        print(
            f"streamflow: the savepoint set {str(outcome.directory)!r} is incomplete: "
            + "; ".join(f"worker {i}: {e}" for i, e in sorted(outcome.failures.items())),
            file=sys.stderr,
        )
        return 1
    print(outcome.directory)
    return 0


def _target(directory: str) -> str:
    """A savepoint directory for the job process, which may run in another directory."""
    return str(local_path(directory, "savepoint directory").resolve())


async def cancel(args: argparse.Namespace) -> int:
    registry = JobRegistry()
    entries = registry.resolve_job(args.job)
    answers = await _to_every_worker(registry, entries, "cancel", args.timeout)
    for entry, answer in zip(entries, answers):
        what = answer["status"] if not isinstance(answer, BaseException) else f"{type(answer).__name__}: {answer}"
        print(f"job {args.job if entry.worker is None else entry.job_id}: {what}")
    failed = [a for a in answers if isinstance(a, BaseException)]
    if failed and entries[0].worker is None:
        raise failed[0]
    return 1 if failed else 0


async def inspect_snapshot(args: argparse.Namespace) -> int:
    description = await describe_snapshot(args.path)
    print(json.dumps(description, indent=2, default=str) if args.json else format_description(description))
    return 0


# -- arguments -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="streamflow", description="Run streamflow jobs and control running ones.")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline declared by module:function(env)")
    run.set_defaults(handler=run_job)
    run.add_argument("target", help="module:function that declares the pipeline on the env it is given")
    run.add_argument("--parallelism", "-p", type=int, default=1, help="default operator parallelism")
    run.add_argument("--max-parallelism", type=int, default=128, help="number of key groups")
    run.add_argument("--checkpoint-dir", type=Path, default=None, help="where checkpoints are kept")
    run.add_argument(
        "--checkpoint-interval", type=float, default=None, help="seconds between checkpoints (off if not given)"
    )
    run.add_argument("--at-least-once", action="store_true", help="do not align barriers")
    run.add_argument(
        "--unaligned", action="store_true",
        help="unaligned checkpoints: barriers overtake queued records, which are stored with the checkpoint",
    )
    run.add_argument(
        "--aligned-timeout", type=float, default=None, metavar="SECONDS",
        help="with --unaligned: start each checkpoint aligned, switch to unaligned after this many seconds",
    )
    run.add_argument("--job-name", default=None, help="job name (default: the module's last name)")
    run.add_argument("--metrics-interval", type=float, default=10.0, help="seconds between metrics log lines")
    run.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, logged)",
    )
    run.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST", help="address of --metrics-port")
    run.add_argument(
        "--web-port", type=int, default=None, metavar="PORT",
        help="serve the dashboard at http://HOST:PORT/ (0: a free port; `streamflow status JOB --web` shows it)",
    )
    run.add_argument("--web-host", default="127.0.0.1", metavar="HOST", help="address of --web-port")
    run.add_argument(
        "--from-savepoint", "-s", default=None, metavar="PATH",
        help="start from a savepoint, a checkpoint chk-<n>, or a job's checkpoint directory (its latest); "
        "a path or a file:// URI",
    )
    run.add_argument(
        "--allow-non-restored-state", "-n", action="store_true",
        help="drop state of operator uids this job does not have, instead of refusing to start",
    )
    run.add_argument(
        "--allow-rollback", action="store_true",
        help="if the latest completed checkpoint is damaged, restore the previous one even with exactly-once "
             "sinks (what they committed since is written again)",
    )
    run.add_argument("--savepoint-dir", type=Path, default=None, help="default directory of savepoints")
    run.add_argument(
        "--state-backend", choices=("heap", "rocksdb"), default="heap",
        help="where keyed state lives: in memory (heap), or in embedded RocksDB databases with incremental "
        "checkpoints, for state larger than memory",
    )
    run.add_argument(
        "--state-dir", type=Path, default=None,
        help="RocksDB: the local directory of the databases (default: a folder in the system's temp directory)",
    )
    run.add_argument(
        "--rocksdb-memory", default=None, metavar="SIZE",
        help="RocksDB: memory for the block cache and write buffers of all keyed state of the job (default 256M)",
    )
    run.add_argument(
        "--fork-snapshots-from", default=None, metavar="KEYS",
        help="heap: from this many keys in a keyed subtask, checkpoints pickle its state in a forked child "
        f"process instead of stalling the task (default {FORK_SNAPSHOTS_FROM}; 0 always forks; 'never' never does)",
    )
    run.add_argument("--no-control", action="store_true", help="do not register the job or open its control socket")
    run.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="run the job on N worker processes; without --worker-index, start N local ones and supervise them",
    )
    run.add_argument("--worker-index", type=int, default=None, metavar="I", help="run worker I (0..N-1) of --workers N")
    run.add_argument(
        "--exchange-bootstrap", default=None, metavar="HOST:PORT",
        help="the Kafka cluster of the exchange topics between workers (needed for key_by, rebalance, broadcast)",
    )
    run.add_argument(
        "--exchange-partitions", type=int, default=16,
        help="partitions of every exchange topic: the most workers the job can ever run on (fixed for its life)",
    )
    run.add_argument(
        "--exchange-replication", type=int, default=None,
        help="replication factor of exchange topics the job creates (default: the brokers' default)",
    )
    run.add_argument("--log-level", default="INFO")
    run.add_argument(
        "--loop", choices=LOOPS, default=None,
        help=f"event loop: asyncio or uvloop (pip install 'streamflow[uvloop]'); default ${LOOP_VARIABLE}, "
             "else asyncio",
    )

    def control(name: str, help: str, timeout: float = 10.0) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--timeout", type=float, default=timeout, help="seconds to wait for the job's answer")
        sub.add_argument("--log-level", default="WARNING")
        return sub

    listing = control("list", "list the running jobs")
    listing.set_defaults(handler=list_jobs)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    status = control("status", "state, checkpoint history and backpressure of a running job")
    status.set_defaults(handler=job_status)
    status.add_argument("job", help="job id, unique id prefix, or job name")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--web", action="store_true", help="print the address of the job's dashboard only")
    take = control("savepoint", "take a savepoint of a running job and print its directory", timeout=300.0)
    take.set_defaults(handler=savepoint)
    take.add_argument("job", help="job id, unique id prefix, or job name")
    take.add_argument("directory", nargs="?", default=None, help="target directory (default: the job's --savepoint-dir)")
    halt = control("stop", "stop a running job with a final savepoint; print its directory", timeout=300.0)
    halt.set_defaults(handler=stop)
    halt.add_argument("job", help="job id, unique id prefix, or job name")
    halt.add_argument("--savepoint", metavar="DIR", default=None, help="target directory (default: --savepoint-dir)")
    end = control("cancel", "cancel a running job (nothing is committed beyond its last checkpoint)", timeout=60.0)
    end.set_defaults(handler=cancel)
    end.add_argument("job", help="job id, unique id prefix, or job name")
    look = commands.add_parser("inspect", help="show what a savepoint or checkpoint holds")
    look.set_defaults(handler=inspect_snapshot)
    look.add_argument(
        "path", help="a savepoint directory, a checkpoint chk-<n>, or a job's checkpoint directory (or its file:// URI)"
    )
    look.add_argument("--json", action="store_true", help="machine-readable output")
    look.add_argument("--log-level", default="WARNING")
    add_lab_command(commands)
    add_dev_commands(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    args.argv = arguments  # a supervisor starts its workers with the same arguments
    if args.command == "dev":
        return run_dev(args)
    worker = getattr(args, "worker_index", None)
    where = "" if worker is None else f" worker-{worker}"
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s")
    try:
        # The job runs on the event loop it was given; the other commands on asyncio's.
        loop = args.loop if args.command == "run" else "asyncio"
        return int(run_on_loop(args.handler(args), loop=loop))
    except StreamflowError as exc:
        print(f"streamflow: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
