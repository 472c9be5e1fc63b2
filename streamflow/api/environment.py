"""StreamEnvironment: where a pipeline is declared, configured and executed."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from streamflow.api.stream import DataStream
from streamflow.config import CheckpointConfig, CheckpointingMode, RestartStrategy, seconds
from streamflow.errors import CheckpointError, ConfigError, JobCancelledError
from streamflow.graph.builder import GraphBuilder
from streamflow.graph.plan import PhysicalPlan, build_plan
from streamflow.graph.spec import JobGraph, OperatorKind
from streamflow.partitioning.keygroups import validate_parallelism
from streamflow.runtime.clock import Clock, SystemClock
from streamflow.runtime.coordinator import CheckpointCoordinator
from streamflow.runtime.executor import Execution, ExecutionSettings, JobResult
from streamflow.savepoint.restore import RestoreSettings, operators_without_uid
from streamflow.web.endpoint import HttpEndpoint

if TYPE_CHECKING:
    from streamflow.metrics.registry import MetricsRegistry
    from streamflow.web.service import JobWebService

log = logging.getLogger("streamflow.job")


class StreamEnvironment:
    """Declares a job and runs it.

    Args:
        parallelism: default number of parallel subtasks per operator.
        max_parallelism: number of key groups; the most any operator can be rescaled to.

    Building touches nothing outside the process; ``execute`` runs the job on the
    running event loop and returns when it has finished (bounded input) or failed.
    """

    def __init__(self, parallelism: int = 1, max_parallelism: int = 128) -> None:
        validate_parallelism(parallelism, max_parallelism)
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self._graph = GraphBuilder()
        self._checkpoint: CheckpointConfig | None = None
        self._checkpoint_dir: Path | None = None
        self._restart = RestartStrategy.fixed_delay(attempts=3, delay=1.0)
        self._state_backend: Any = None
        self._clock: Clock = SystemClock()
        self._channel_capacity = 8
        self._source_batch_size = 1000
        self._source_poll_wait = 0.05
        self._metrics_interval: float | None = None
        self._chaining = True
        self._savepoint_dir: Path | None = None
        self._metrics_endpoint: HttpEndpoint | None = None
        self._web_endpoint: HttpEndpoint | None = None

    # -- configuration ----------------------------------------------------------------

    def enable_checkpointing(
        self,
        interval: float | timedelta | CheckpointConfig,
        mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE,
        *,
        directory: str | Path | None = None,
        **options: Any,
    ) -> StreamEnvironment:
        """Checkpoint every ``interval`` seconds into ``directory``.

        ``options`` are further CheckpointConfig fields (timeout, min_pause,
        max_concurrent, tolerable_failures, retained, retention_on_cancel). Without a
        directory, checkpoints go to ``./streamflow-checkpoints/<job name>``.
        """
        if isinstance(interval, CheckpointConfig):
            if options:
                raise ConfigError("pass either a CheckpointConfig or interval plus options, not both")
            self._checkpoint = interval
        else:
            try:
                self._checkpoint = CheckpointConfig(interval=seconds(interval, "interval"), mode=mode, **options)
            except TypeError as exc:
                raise ConfigError(f"enable_checkpointing: {exc}; see CheckpointConfig for the fields") from exc
        if directory is not None:
            self._checkpoint_dir = Path(directory)
        return self

    def set_checkpoint_dir(self, directory: str | Path) -> StreamEnvironment:
        self._checkpoint_dir = Path(directory)
        return self

    def set_savepoint_dir(self, directory: str | Path) -> StreamEnvironment:
        """Where savepoints go when a trigger or stop names no directory."""
        self._savepoint_dir = Path(directory)
        return self

    def set_restart_strategy(self, strategy: RestartStrategy) -> StreamEnvironment:
        if not isinstance(strategy, RestartStrategy):
            raise ConfigError(f"set_restart_strategy needs a RestartStrategy, got {strategy!r}")
        self._restart = strategy
        return self

    def set_state_backend(self, backend: Any) -> StreamEnvironment:
        if not hasattr(backend, "create_keyed_backend"):
            raise ConfigError(f"set_state_backend needs a StateBackend, got {backend!r}")
        self._state_backend = backend
        return self

    def set_clock(self, clock: Clock) -> StreamEnvironment:
        """Processing time source for TTL, timers and checkpoint timing (tests)."""
        self._clock = clock
        return self

    def set_channel_capacity(self, batches: int) -> StreamEnvironment:
        """How many batches a channel holds before its writer blocks (backpressure)."""
        if not isinstance(batches, int) or batches < 1:
            raise ConfigError(f"channel capacity must be a positive number of batches, got {batches!r}")
        self._channel_capacity = batches
        return self

    def set_source_batch_size(self, records: int) -> StreamEnvironment:
        if not isinstance(records, int) or records < 1:
            raise ConfigError(f"source batch size must be a positive number of records, got {records!r}")
        self._source_batch_size = records
        return self

    def set_metrics_interval(self, interval: float | timedelta | None) -> StreamEnvironment:
        """Log a metrics line (throughput, backpressure, checkpoints) every ``interval`` s."""
        self._metrics_interval = None if interval is None else seconds(interval, "metrics interval")
        return self

    def set_metrics_port(self, port: int, host: str = "127.0.0.1") -> StreamEnvironment:
        """Serve the job's metrics to Prometheus at ``http://host:port/metrics`` while it
        runs (``port`` 0: a free one; ``JobClient.metrics_url`` tells which). Metrics are
        read when scraped; nothing is sampled between scrapes."""
        self._metrics_endpoint = HttpEndpoint(port, host)
        return self

    def set_web_ui(self, port: int, host: str = "127.0.0.1") -> StreamEnvironment:
        """Serve the job's dashboard at ``http://host:port/`` while it runs (``port`` 0: a
        free one; ``JobClient.web_url`` tells which): the job graph coloured by busy and
        backpressured time, checkpoints per subtask, live charts. It also serves
        ``/metrics``. The metrics are sampled every second for its charts."""
        self._web_endpoint = HttpEndpoint(port, host)
        return self

    def disable_operator_chaining(self) -> StreamEnvironment:
        """Run every operator in its own task: slower, but every hop has a visible channel."""
        self._chaining = False
        return self

    @property
    def checkpoint_config(self) -> CheckpointConfig | None:
        return self._checkpoint

    # -- sources ----------------------------------------------------------------------

    def from_source(self, source: Any, name: str | None = None) -> DataStream:
        """A stream read from ``source`` (anything with ``create_reader``)."""
        if not hasattr(source, "create_reader"):
            raise ConfigError(f"from_source needs a Source (an object with create_reader), got {source!r}")
        node_id = self._graph.add(OperatorKind.SOURCE, name or type(source).__name__, source)
        return DataStream(self, (node_id,))

    def from_collection(self, items: Sequence[Any], name: str = "collection") -> DataStream:
        """A bounded stream of ``items`` (replayable: its position is checkpointed)."""
        from streamflow.connectors.collection import CollectionSource

        return self.from_source(CollectionSource(list(items)), name=name)

    # -- the graph --------------------------------------------------------------------

    def job_graph(self) -> JobGraph:
        return self._graph.freeze(lambda spec: spec.parallelism or self.parallelism)

    def plan(self) -> PhysicalPlan:
        """The physical plan: validated, chained. Raises on an invalid pipeline."""
        return build_plan(self.job_graph(), self.parallelism, self.max_parallelism, self._chaining)

    # -- running ----------------------------------------------------------------------

    def _settings(self, job_name: str, restore_from: RestoreSettings | None = None) -> ExecutionSettings:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", job_name):
            raise ConfigError(f"job name {job_name!r} may hold only letters, digits, '_', '.', '-'")
        directory = self._checkpoint_dir
        if self._checkpoint is not None and directory is None:
            directory = Path("streamflow-checkpoints") / job_name
        backend = self._state_backend
        if backend is None:
            from streamflow.state import HashMapStateBackend

            backend = HashMapStateBackend()
        return ExecutionSettings(
            job_name=job_name,
            checkpoint=self._checkpoint,
            checkpoint_dir=directory,
            restart=self._restart,
            state_backend=backend,
            clock=self._clock,
            channel_capacity=self._channel_capacity,
            source_batch_size=self._source_batch_size,
            source_poll_wait=self._source_poll_wait,
            metrics_interval=self._metrics_interval,
            restore_from=restore_from,
            savepoint_dir=self._savepoint_dir,
        )

    def execute_async(
        self,
        job_name: str = "job",
        *,
        from_savepoint: str | Path | None = None,
        allow_non_restored_state: bool = False,
    ) -> JobClient:
        """Start the job on the running loop; returns a client to watch, savepoint, stop
        or cancel it. ``from_savepoint`` and ``allow_non_restored_state``: see
        :meth:`execute`."""
        restore = None
        if from_savepoint is not None:
            restore = RestoreSettings(path=Path(from_savepoint), allow_non_restored_state=allow_non_restored_state)
        elif allow_non_restored_state:
            raise ConfigError("allow_non_restored_state only applies with from_savepoint=...; pass both or neither")
        execution = Execution(self.plan(), self._settings(job_name, restore))
        service = None
        if self._metrics_endpoint is not None or self._web_endpoint is not None:
            from streamflow.web.service import JobWebService  # aiohttp: only for jobs that serve

            service = JobWebService(execution, metrics=self._metrics_endpoint, web=self._web_endpoint)
            service.bind()  # a port in use fails here, before the job starts
        return JobClient(execution, service)

    async def execute(
        self,
        job_name: str = "job",
        *,
        from_savepoint: str | Path | None = None,
        allow_non_restored_state: bool = False,
    ) -> JobResult:
        """Run the job to its end; raises JobFailedError when the restart strategy gives up.

        Args:
            from_savepoint: start from this savepoint directory, checkpoint directory
                (``chk-<n>``) or job checkpoint directory (its latest checkpoint) instead
                of the job's own latest checkpoint. State is matched to operators by uid.
            allow_non_restored_state: drop, with a WARNING, state of uids this job lacks;
                by default such state makes the job refuse to start
                (:class:`~streamflow.savepoint.restore.NonRestoredStateError`).
        """
        client = self.execute_async(
            job_name, from_savepoint=from_savepoint, allow_non_restored_state=allow_non_restored_state
        )
        return await client.wait()


class JobClient:
    """A running job: its metrics, checkpoints and savepoints on demand, stop, cancel, and
    the result. Every method is called on the job's event loop."""

    def __init__(self, execution: Execution, web_service: JobWebService | None = None) -> None:
        self._execution = execution
        self._web_service = web_service
        self._registry: MetricsRegistry | None = None if web_service is None else web_service.registry
        self._cancel_requested = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"job:{execution.settings.job_name}")

    async def _run(self) -> JobResult:
        if self._web_service is None:
            return await self._execution.run()
        async with self._web_service:  # served while the job runs, stopped however it ends
            return await self._execution.run()

    @property
    def job_name(self) -> str:
        return self._execution.settings.job_name

    @property
    def status(self) -> str:
        """created, running, restarting, finished, failed or cancelled."""
        return self._execution.status

    def metrics(self) -> dict[str, Any]:
        """Per task busy/idle/backpressured time, per channel fill, per operator counts,
        checkpoint history."""
        return self._execution.metrics()

    @property
    def metrics_registry(self) -> MetricsRegistry:
        """The job's metrics under Flink's names, with per-second rates: what the
        Prometheus endpoint and the dashboard read (``sample()`` reads them now)."""
        if self._registry is None:
            from streamflow.metrics.registry import MetricsRegistry

            self._registry = MetricsRegistry(self._execution)
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

    async def ended(self) -> str:
        """Wait until the job has ended, however it ended; returns its final status."""
        await asyncio.wait({self._task})
        return self.status

    async def trigger_checkpoint(self) -> int:
        """Take a checkpoint now; returns its id once it is complete."""
        coordinator = self._execution.coordinator
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
        target = directory if directory is not None else self._execution.settings.savepoint_dir
        if target is None:
            raise ConfigError(
                f"no savepoint directory for job {self.job_name!r}: pass one, or set a default with "
                "env.set_savepoint_dir(...) (streamflow run --savepoint-dir)"
            )
        without_uid = operators_without_uid(self._execution.plan)
        if without_uid:
            log.warning(
                "job %r: operators %s hold state but have no uid of their own; their state goes into the "
                "savepoint under auto-generated uids that change when the program changes shape: set .uid(...) "
                "on them before you rely on restoring it",
                self.job_name, ", ".join(repr(op.effective_uid) for op in without_uid),
            )
        return Path(target).expanduser()

    def _coordinator(self, what: str) -> CheckpointCoordinator:
        execution = self._execution
        if execution.status != "running" or execution.coordinator is None:
            raise CheckpointError(
                f"cannot {what}: job {self.job_name!r} is {execution.status}; savepoints are taken while it runs"
            )
        return execution.coordinator

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
