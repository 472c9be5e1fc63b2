"""The ``streamflow`` command line.

``streamflow run module:function`` imports ``function``, calls it with a configured
:class:`StreamEnvironment` to declare the pipeline, and executes the job::

    streamflow run examples.wordcount:build --parallelism 2 \\
        --checkpoint-dir /tmp/chk --checkpoint-interval 1

``function(env)`` may be sync or async; it adds sources, transformations and sinks to
``env`` (and may configure it further). A process started again with the same
checkpoint directory resumes from the latest complete checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from streamflow.api.environment import StreamEnvironment
from streamflow.config import CheckpointingMode
from streamflow.devtools.commands import add_dev_commands, run_dev
from streamflow.errors import ConfigError, StreamflowError


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
    env = StreamEnvironment(parallelism=args.parallelism, max_parallelism=args.max_parallelism)
    if args.checkpoint_interval is not None:
        env.enable_checkpointing(
            args.checkpoint_interval,
            CheckpointingMode.AT_LEAST_ONCE if args.at_least_once else CheckpointingMode.EXACTLY_ONCE,
            directory=args.checkpoint_dir,
        )
    elif args.checkpoint_dir is not None:
        env.set_checkpoint_dir(args.checkpoint_dir)
    env.set_metrics_interval(args.metrics_interval)
    result = load_builder(args.target)(env)
    if inspect.isawaitable(result):
        await result
    job_name = args.job_name or args.target.partition(":")[0].rsplit(".", 1)[-1]
    job = await env.execute(job_name)
    summary = {
        "job": job.job_name,
        "attempts": job.attempts,
        "restored_from": job.restored_from,
        "checkpoints_completed": job.checkpoints_completed,
        "seconds": round(job.duration, 3),
    }
    print(json.dumps(summary))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="streamflow", description="Run streamflow jobs.")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline declared by module:function(env)")
    run.add_argument("target", help="module:function that declares the pipeline on the env it is given")
    run.add_argument("--parallelism", "-p", type=int, default=1, help="default operator parallelism")
    run.add_argument("--max-parallelism", type=int, default=128, help="number of key groups")
    run.add_argument("--checkpoint-dir", type=Path, default=None, help="where checkpoints are kept")
    run.add_argument(
        "--checkpoint-interval", type=float, default=None, help="seconds between checkpoints (off if not given)"
    )
    run.add_argument("--at-least-once", action="store_true", help="do not align barriers")
    run.add_argument("--job-name", default=None, help="job name (default: the module's last name)")
    run.add_argument("--metrics-interval", type=float, default=10.0, help="seconds between metrics log lines")
    run.add_argument("--log-level", default="INFO")
    add_dev_commands(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "dev":
        return run_dev(args)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run_job(args))
    except StreamflowError as exc:
        print(f"streamflow: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
