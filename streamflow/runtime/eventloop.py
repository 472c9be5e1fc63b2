"""Which asyncio event loop a job runs on: asyncio's own (the default) or uvloop.

uvloop (libuv underneath, optional: ``pip install 'streamflow[uvloop]'``) makes the
loop's own work cheaper: socket reads and writes, callbacks, timers. Records travel in
batches, so that work is small next to the Python run per record: Kafka -> map -> Kafka
gained 0 to 7 % on it, in-memory pipelines 1 to 3 % (``bench/RESULTS.md``). Nothing in
streamflow depends on the choice.

Three ways to choose, the first that is given wins:

1. ``streamflow.run(main(), loop="uvloop")`` from Python, in place of ``asyncio.run``;
2. ``streamflow run ... --loop uvloop`` on the command line;
3. the environment variable ``STREAMFLOW_LOOP=uvloop`` (both of the above read it when
   they are not told).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from streamflow.errors import ConfigError

__all__ = ["LOOPS", "LOOP_VARIABLE", "loop_factory", "run"]

LOOP_VARIABLE = "STREAMFLOW_LOOP"
"""The environment variable naming the event loop when no ``loop`` argument does."""

LOOPS = ("asyncio", "uvloop")

T = TypeVar("T")


def loop_factory(loop: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of event loop ``loop`` (else ``$STREAMFLOW_LOOP``, else ``"asyncio"``);
    ``None`` stands for asyncio's default loop. ConfigError for an unknown name, or for
    ``"uvloop"`` when uvloop is not installed."""
    name = loop if loop is not None else os.environ.get(LOOP_VARIABLE, "") or "asyncio"
    where = "loop" if loop is not None else f"${LOOP_VARIABLE}"
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ConfigError(f"{where}={name!r} is not an event loop streamflow runs on; use one of {list(LOOPS)}",
                          value=name)
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        raise ConfigError(
            f"{where}='uvloop' needs the uvloop package, which is not installed here ({exc}); install it with "
            "pip install 'streamflow[uvloop]', or run on asyncio's loop (loop='asyncio')",
            value=name,
        ) from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """Run ``main`` to completion on event loop ``loop`` (``"asyncio"`` or ``"uvloop"``;
    default ``$STREAMFLOW_LOOP``, else asyncio's) and return its result: ``asyncio.run``
    with a choice of loop. A bad choice raises ConfigError before ``main`` starts (and
    ``main`` is closed, never awaited)."""
    try:
        factory = loop_factory(loop)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
