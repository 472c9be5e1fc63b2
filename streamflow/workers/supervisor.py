"""Running the workers of one job as local processes: ``streamflow run ... --workers N``
without ``--worker-index`` uses every core of one machine this way.

The supervisor starts one process per worker (the same command plus its index), and:

- forwards SIGTERM and SIGINT to every worker (each runs in its own session, so a
  Ctrl-C in the terminal reaches the workers once, through the supervisor), then waits
  for all of them;
- restarts a worker process that died by a signal or crashed (a negative return code,
  or 128 and above, as a shell reports a kill), alone, after a delay from its own
  :class:`~streamflow.config.RestartTracker` (exponential by default): its checkpoints
  restore it while the other workers keep running. A failure *inside* a worker is the
  worker's own restart strategy's business; the supervisor only sees the process end
  when that strategy gave up;
- treats any other non-zero exit as final: 1 (the job failed), 2 (bad configuration)
  and 3 (cancelled) end the job, so the other workers get SIGTERM;
- exits with the workers' combined status: 0 when every worker ended with 0 (finished,
  or stopped with a savepoint), else the first final failure's code, else 3 if the job
  was cancelled or interrupted.

Workers are not killed when the supervisor itself is killed with SIGKILL (nothing can
be run then); a worker started again while an orphan still runs is refused by the
orphan's worker lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from streamflow.config import RestartStrategy, RestartTracker

__all__ = ["EXIT_CANCELLED", "Supervisor", "WorkerProcess"]

log = logging.getLogger("streamflow.workers")

EXIT_CANCELLED = 3
_FORWARDED = (signal.SIGTERM, signal.SIGINT)
_KILL_AFTER = 30.0  # seconds a worker may take to stop after the forwarded signal


@dataclass(slots=True)
class WorkerProcess:
    """One worker's process and what happened to it so far."""

    index: int
    command: Sequence[str]
    tracker: RestartTracker
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class Supervisor:
    """Starts ``commands[i]`` as worker i and watches them; see the module docstring."""

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        *,
        restart: RestartStrategy | None = None,
        env: Mapping[str, str] | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        if not commands:
            raise ValueError("a supervisor needs at least one worker command")
        strategy = restart if restart is not None else RestartStrategy.exponential_delay()
        self.workers = [
            WorkerProcess(index, list(command), RestartTracker(strategy, random)) for index, command in enumerate(commands)
        ]
        self._env = dict(env) if env is not None else None
        self._stopping: asyncio.Event | None = None
        self._signal: int | None = None
        self._final: list[int] = []  # codes of workers that ended the job, in order

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run every worker to its end; the combined exit status."""
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        installed = []
        if handle_signals:
            for sig in _FORWARDED:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.shutdown, sig)
                    installed.append(sig)
        try:
            async with asyncio.TaskGroup() as group:
                for worker in self.workers:
                    await self._spawn(worker)
                    group.create_task(self._watch(worker), name=f"worker-{worker.index}")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self._kill_leftovers()
        return self._status()

    def shutdown(self, sig: int = signal.SIGTERM) -> None:
        """Forward ``sig`` to every running worker and restart none from now on (what a
        SIGTERM or SIGINT to the supervisor does)."""
        if self._signal is None:
            self._signal = sig
            log.warning("supervisor: %s, stopping %d workers", signal.Signals(sig).name, len(self.workers))
        self._stop_all(sig)

    def _stop_all(self, sig: int) -> None:
        if self._stopping is not None:
            self._stopping.set()
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    # -- internals ----------------------------------------------------------------------

    async def _spawn(self, worker: WorkerProcess) -> None:
        worker.process = await asyncio.create_subprocess_exec(
            *worker.command, env=self._env, start_new_session=True
        )
        worker.tracker.attempt_started(time.monotonic())
        log.info("supervisor: worker %d started (pid %d)", worker.index, worker.process.pid)

    async def _watch(self, worker: WorkerProcess) -> None:
        assert self._stopping is not None
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            worker.exit_codes.append(code)
            if code == 0:
                log.info("supervisor: worker %d ended (exit 0)", worker.index)
                return
            if self._stopping.is_set():  # stopped by a signal, or because another worker ended the job
                log.info("supervisor: worker %d stopped (ended with %s)", worker.index, _describe(code))
                return
            delay = worker.tracker.on_failure(time.monotonic()) if _crashed(code) else None
            if delay is None:
                why = "its restart strategy gave up" if _crashed(code) else "the job cannot go on without it"
                log.error(
                    "supervisor: worker %d (pid %s) ended with %s; %s: stopping the other workers",
                    worker.index, worker.pid, _describe(code), why,
                )
                self._final.append(code if 0 < code < 128 else 1)
                self._stop_all(signal.SIGTERM)
                return
            log.warning(
                "supervisor: worker %d (pid %s) ended with %s; restarting it alone in %.2f s (it restores from its "
                "checkpoints; the other workers keep running)",
                worker.index, worker.pid, _describe(code), delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            worker.restarts += 1
            await self._spawn(worker)

    async def _kill_leftovers(self) -> None:
        """After a cancelled or failed run: no worker outlives the supervisor's ``run``."""
        running = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        if not running:
            return
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        try:
            async with asyncio.timeout(_KILL_AFTER):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.gather(*(p.wait() for p in running))

    def _status(self) -> int:
        failures = [code for code in self._final if code != EXIT_CANCELLED]
        if failures:
            return failures[0]
        if self._final:
            return EXIT_CANCELLED
        if all(w.exit_codes[-1:] == [0] for w in self.workers):
            return 0  # e.g. every worker stopped with a savepoint
        return EXIT_CANCELLED  # interrupted by a signal


def _crashed(code: int) -> bool:
    """Killed by a signal (negative) or an exit code a shell gives a killed process."""
    return code < 0 or code >= 128


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"
