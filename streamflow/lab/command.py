"""``streamflow lab SCENARIO [options]``: the lab on the command line.

Options left out take the scenario's defaults (``streamflow lab --list`` shows the
scenarios); ``--checkpoints both`` (the default) runs aligned, then unaligned, with the
same options, so the report puts them side by side.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from streamflow.errors import ConfigError
from streamflow.lab.run import MODES, run_lab
from streamflow.lab.scenarios import SCENARIOS, LabOptions

__all__ = ["add_lab_command", "run_lab_command"]

_HELP = {
    "duration": "seconds each checkpointing mode runs",
    "rate": "records per second the source offers, over all subtasks",
    "parallelism": "parallelism of every operator",
    "interval": "checkpoint interval, seconds",
    "aligned_timeout": "unaligned runs: start aligned, overtake after this many seconds",
    "keys": "distinct keys",
    "record_cost": "seconds per record at the keyed stage",
    "sink_cost": "seconds per record at the sink",
    "call_latency": "seconds per async call (async-capacity)",
    "async_capacity": "async calls in flight per subtask (async-capacity)",
    "channel_capacity": "batches per channel",
    "source_batch": "records per source batch",
    "sample_interval": "seconds between metric samples (and progress lines)",
}


def add_lab_command(commands: Any) -> None:
    """Add ``lab`` to the CLI's subcommands."""
    lab = commands.add_parser("lab", help="run a backpressure experiment and write CSV, plots and a report")
    lab.set_defaults(handler=run_lab_command)
    lab.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS), help="the experiment (--list: all)")
    lab.add_argument("--list", action="store_true", help="list the scenarios and their defaults")
    lab.add_argument(
        "--checkpoints", choices=(*MODES, "both"), default="both", help="checkpointing mode(s) to run"
    )
    lab.add_argument("--out", type=Path, default=None, help="output folder (default: lab-SCENARIO)")
    lab.add_argument("--log-level", default="WARNING")
    for option in fields(LabOptions):
        kind = int if option.type in ("int", int) else float
        lab.add_argument(f"--{option.name.replace('_', '-')}", type=kind, default=None, help=_HELP[option.name])


async def run_lab_command(args: argparse.Namespace) -> int:
    if args.list or args.scenario is None:
        for name, scenario in sorted(SCENARIOS.items()):
            defaults = ", ".join(f"{k}={v}" for k, v in scenario.defaults.items())
            print(f"{name:18} {scenario.summary} [{defaults}]")
        return 0
    try:
        import matplotlib  # noqa: F401 - checked before a run of minutes, not after
    except ImportError:
        raise ConfigError("streamflow lab draws its plots with matplotlib: pip install 'streamflow[lab]'") from None
    scenario = SCENARIOS[args.scenario]
    options = scenario.options(**{f.name: getattr(args, f.name) for f in fields(LabOptions)})
    modes = MODES if args.checkpoints == "both" else (args.checkpoints,)
    out = args.out or Path(f"lab-{scenario.name}")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    await run_lab(scenario, options, modes, out, progress)
    print(out / "report.md")
    return 0
