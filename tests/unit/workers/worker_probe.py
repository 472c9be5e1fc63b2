"""A trivial worker program for the supervisor tests.

    python worker_probe.py DIR --worker-index I

Appends a line to ``DIR/started-I`` at every start (signal handlers already set), then
does what ``PROBE_PLAN`` (``"0:exit0,1:kill-once,..."``) says for its index; ``fail``
and ``kill-always`` first wait until all ``PROBE_WORKERS`` workers have started once:

- ``exit0``: exit 0;
- ``fail``: exit 1;
- ``kill-once``: the first time, kill itself with SIGKILL; after that exit 0;
- ``kill-always``: kill itself with SIGKILL;
- ``wait``: wait for SIGTERM or SIGINT, write ``DIR/signal-I`` with its name, exit 3.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    directory = Path(sys.argv[1])
    index = int(sys.argv[sys.argv.index("--worker-index") + 1])
    plan = dict(item.split(":") for item in os.environ["PROBE_PLAN"].split(","))
    action = plan.get(str(index), "exit0")
    if action == "wait":
        def stop(signum: int, frame: object) -> None:
            (directory / f"signal-{index}").write_text(signal.Signals(signum).name)
            os._exit(3)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    started = directory / f"started-{index}"
    with open(started, "a") as out:
        out.write(f"{os.getpid()}\n")
    first = started.read_text().count("\n") == 1
    if action in ("fail", "kill-always"):
        deadline = time.monotonic() + 20
        while not all((directory / f"started-{i}").exists() for i in range(int(os.environ["PROBE_WORKERS"]))):
            if time.monotonic() > deadline:
                return 5
            time.sleep(0.01)
    if action == "fail":
        return 1
    if action == "kill-always" or (action == "kill-once" and first):
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "wait":
        time.sleep(60)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
