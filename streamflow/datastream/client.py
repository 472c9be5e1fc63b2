"""JobClient: a running job, seen from the program that started it.

Made by ``StreamEnvironment.execute_async``; every method runs on the job's event loop.
It reads the job's metrics (logs a line of them every ``metrics_interval`` seconds while
the job runs, and serves them to Prometheus and the dashboard while it runs when given a
:class:`~streamflow.web.service.JobWebService`), triggers checkpoints and savepoints
through the attempt's coordinator, stops with a savepoint, cancels, and returns the
result.

A worker of a job on several processes is made ready when the job starts, not when it
is built (it takes its lock and registers in the checkpoint root, see
:mod:`streamflow.workers.startup`): its client starts from a :class:`WorkerStart`, its
execution (and its web service, made for it) exists once :meth:`JobClient.started`
returned.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from streamflow.errors import CheckpointError, ConfigError, JobCancelledError
from streamflow.metrics.registry import MetricsRegistry
from streamflow.metrics.snapshot import format_line, job_metrics
from streamflow.runtime.coordinator import CheckpointCoordinator
from streamflow.runtime.executor import Execution, JobResult, JobStatus
from streamflow.savepoint.location import local_path
from streamflow.savepoint.restore import operators_without_uid
from streamflow.workers.startup import WorkerIdentity, WorkerStart

if TYPE_CHECKING:
    from streamflow.web.service import JobWebService

__all__ = ["JobClient"]

log = logging.getLogger("streamflow.job")


class JobClient:
    """A running job: its metrics, checkpoints and savepoints on demand, stop, cancel, and
    the result. Every method is called on the job's event loop."""

    def __init__(
        self,
        execution: Execution | WorkerStart,
        metrics_interval: float | None = None,
        web_service: JobWebService | Callable[[Execution], JobWebService | None] | None = None,
    ) -> None:
        """``web_service``: the job's HTTP endpoints, or for a worker what makes them for
        its execution once it exists."""
        self._worker = execution if isinstance(execution, WorkerStart) else None
        self._execution: Execution | None = execution if isinstance(execution, Execution) else None
        self._job_name = execution.job_name if isinstance(execution, WorkerStart) else execution.settings.job_name
        self._created = asyncio.Event()
        self._web_service_for = web_service if callable(web_service) else None
        self._web_service = None if callable(web_service) else web_service
        self._registry: MetricsRegistry | None = None if self._web_service is None else self._web_service.registry
        self._cancel_requested = False
        self._task = asyncio.get_running_loop().create_task(self._run(metrics_interval), name=f"job:{self._job_name}")

    async def _run(self, metrics_interval: float | None) -> JobResult:
        if self._worker is None:
            assert self._execution is not None
            return await self._run_execution(self._execution, metrics_interval)
        async with self._worker.open() as execution:  # the worker's lock is held while it runs
            return await self._run_execution(execution, metrics_interval)

    async def _run_execution(self, execution: Execution, metrics_interval: float | None) -> JobResult:
        self._execution = execution
        if self._web_service_for is not None:
            self._web_service = self._web_service_for(execution)
            self._registry = None if self._web_service is None else self._web_service.registry
        self._created.set()
        reporter = None
        if metrics_interval:
            reporter = asyncio.create_task(self._report(execution, metrics_interval), name="metrics-reporter")
        try:
            if self._web_service is None:
                result = await execution.run()
            else:
                async with self._web_service:  # served while the job runs, stopped however it ends
                    result = await execution.run()
        finally:
            if reporter is not None:
                reporter.cancel()
        result.metrics = job_metrics(execution)
        return result

    async def _report(self, execution: Execution, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if execution.tasks:
                log.info("%s", format_line(execution))

    @property
    def job_name(self) -> str:
        return self._job_name

    @property
    def worker(self) -> WorkerIdentity | None:
        """Which worker of a job on several processes this is (None for a one-process
        job, or while the worker is starting)."""
        return None if self._worker is None else self._worker.identity

    @property
    def savepoint_dir(self) -> Path | None:
        """Where savepoints go when a trigger or stop names no directory (None: nowhere)."""
        return None if self._execution is None else self._execution.settings.savepoint_dir

    @property
    def status(self) -> JobStatus:
        """created, running, restarting, finished, failed or cancelled (a str enum)."""
        if self._execution is not None:
            return self._execution.status
        if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
            return JobStatus.FAILED  # the worker could not start
        return JobStatus.CREATED

    def metrics(self) -> dict[str, Any]:
        """Per task busy/idle/backpressured time, per channel fill, per operator counts,
        checkpoint history. A worker that is still starting has none yet: only its job
        and status."""
        if self._execution is None:
            return {"job": self.job_name, "status": self.status}
        return job_metrics(self._execution)

    def _started_execution(self, what: str) -> Execution:
        if self._execution is None:
            raise CheckpointError(f"cannot {what}: job {self.job_name!r} is {self.status}; it has not started")
        return self._execution

    @property
    def metrics_registry(self) -> MetricsRegistry:
        """The job's metrics under Flink's names, with per-second rates: what the
        Prometheus endpoint and the dashboard read (``sample()`` reads them now)."""
        if self._registry is None:
            self._registry = MetricsRegistry(self._started_execution("read its metrics"))
        return self._registry

    @property
    def web_url(self) -> str | None:
        """The dashboard's address (``env.set_web_ui``), or None."""
        return None if self._web_service is None else self._web_service.web_url

    @property
    def metrics_url(self) -> str | None:
        """The Prometheus endpoint's address (``env.set_metrics_port``, or the
        dashboard's ``/metrics``), or None."""
        return None if self._web_service is None else self._web_service.metrics_url

    @property
    def done(self) -> bool:
        """True once the job has ended: finished, stopped, failed or cancelled."""
        return self._task.done()

    async def ended(self) -> JobStatus:
        """Wait until the job has ended, however it ended; returns its final status."""
        await asyncio.wait({self._task})
        return self.status

    async def trigger_checkpoint(self) -> int:
        """Take a checkpoint now; returns its id once it is complete (while ``max_concurrent``
        checkpoints are in flight it waits for a slot)."""
        coordinator = self._started_execution("take a checkpoint").coordinator
        if coordinator is None:
            raise ConfigError("the job has not started yet")
        return await coordinator.trigger_checkpoint()

    async def trigger_savepoint(self, directory: str | Path | None = None) -> Path:
        """Take a savepoint now and return its directory once it is complete.

        The savepoint is a checkpoint (barriers through the whole graph; sinks commit
        when it completes) whose files are also published, self-contained, as
        ``<directory>/savepoint-<job>-<n>-<hex>``. The system never deletes it.

        Args:
            directory: where to put it; default: ``env.set_savepoint_dir(...)``.

        Raises:
            ConfigError: no directory given and no default; checkpointing is off.
            CheckpointError: the job is not running, or the savepoint failed (the job
                runs on).
        """
        target = self._savepoint_target(directory)
        return await self._coordinator("take a savepoint").trigger_savepoint(target)

    async def stop_with_savepoint(self, directory: str | Path | None = None) -> Path:
        """Stop the job with a final savepoint; returns its directory.

        Sources read nothing after the savepoint's barrier; when it is complete, sinks
        commit it and every task ends (without end of input: timers and windows stay in
        the savepoint). :meth:`wait` then returns a result whose
        ``stopped_with_savepoint`` is the directory. If the savepoint fails, this raises
        and the job keeps running.
        """
        target = self._savepoint_target(directory)
        return await self._coordinator("stop with a savepoint").trigger_savepoint(target, stop=True)

    def _savepoint_target(self, directory: str | Path | None) -> Path:
        execution = self._started_execution("take a savepoint")
        target = directory if directory is not None else execution.settings.savepoint_dir
        if target is None:
            raise ConfigError(
                f"no savepoint directory for job {self.job_name!r}: pass one, or set a default with "
                "env.set_savepoint_dir(...) (streamflow run --savepoint-dir)"
            )
        without_uid = operators_without_uid(execution.plan)
        if without_uid:
            log.warning(
                "job %r: operators %s hold state but have no uid of their own; their state goes into the "
                "savepoint under auto-generated uids that change when the program changes shape: set .uid(...) "
                "on them before you rely on restoring it",
                self.job_name, ", ".join(repr(op.effective_uid) for op in without_uid),
            )
        return local_path(target, "savepoint directory")

    def _coordinator(self, what: str) -> CheckpointCoordinator:
        execution = self._started_execution(what)
        if execution.status is not JobStatus.RUNNING or execution.coordinator is None:
            raise CheckpointError(
                f"cannot {what}: job {self.job_name!r} is {execution.status}; savepoints are taken while it runs"
            )
        return execution.coordinator

    async def started(self) -> None:
        """Wait until the job passed its start checks and runs its first attempt.

        The checks are those of ``from_savepoint`` (the snapshot exists, verifies and
        fits the job). Returns at once for a job that started earlier, even if it has
        ended since.

        Raises:
            whatever stopped the job before it started (as :meth:`wait` would), e.g.
            ConfigError for a path that holds no savepoint.
        """
        if self._execution is not None and self._execution.has_started:
            return
        started = asyncio.ensure_future(self._wait_started())
        try:
            await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if self._execution is None or not self._execution.has_started:
            await self.wait()  # it ended before starting: raise why

    async def _wait_started(self) -> None:
        await self._created.wait()
        assert self._execution is not None
        await self._execution.wait_started()

    async def wait(self) -> JobResult:
        """The result once the job ends.

        Raises:
            JobFailedError: the restart strategy gave up.
            JobCancelledError: the job was cancelled through :meth:`cancel`.
        """
        try:
            return await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._cancel_requested and self._task.cancelled() and not (current and current.cancelling()):
                raise JobCancelledError(f"job {self.job_name!r} was cancelled", job=self.job_name) from None
            raise

    async def cancel(self) -> None:
        """Cancel the job and wait until every task has stopped. Nothing is committed
        beyond the last completed checkpoint; retained checkpoints are kept or deleted
        as ``CheckpointConfig.retention_on_cancel`` says."""
        self._cancel_requested = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller itself is being cancelled
