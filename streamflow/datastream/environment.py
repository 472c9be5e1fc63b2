"""StreamEnvironment: where a pipeline is declared, configured and executed."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TypeVar

from streamflow.api.collection import CollectionSource
from streamflow.api.connector import Source
from streamflow.api.connector_checks import check_source
from streamflow.api.exchange import ExchangeFactory
from streamflow.config import ChannelCapacity, CheckpointConfig, CheckpointingMode, RestartStrategy, seconds
from streamflow.core.clock import Clock, SystemClock
from streamflow.core.faults import FaultInjector
from streamflow.datastream.client import JobClient
from streamflow.datastream.stream import DataStream
from streamflow.errors import ConfigError
from streamflow.eventtime.strategy import WatermarkStrategy
from streamflow.graph.builder import GraphBuilder
from streamflow.graph.plan import PhysicalPlan, build_plan
from streamflow.graph.spec import JobGraph, OperatorKind
from streamflow.partitioning.keygroups import validate_parallelism
from streamflow.runtime.executor import Execution, JobResult
from streamflow.runtime.settings import ExecutionSettings
from streamflow.savepoint.location import local_path
from streamflow.savepoint.restore import RestoreSettings
from streamflow.state.backend import StateBackend
from streamflow.web.endpoint import HttpEndpoint
from streamflow.workers.startup import WorkerConfig, WorkerStart

if TYPE_CHECKING:
    from streamflow.web.service import JobWebService

T = TypeVar("T")


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
        self._restart = RestartStrategy.exponential_delay()
        self._state_backend: StateBackend | None = None
        self._clock: Clock = SystemClock()
        self._channel_capacity = ChannelCapacity(8)
        self._source_batch_size = 1000
        self._source_poll_wait = 0.05
        self._metrics_interval: float | None = None
        self._chaining = True
        self._savepoint_dir: Path | None = None
        self._faults: FaultInjector | None = None
        self._workers: WorkerConfig | None = None
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
        """How a failed attempt is retried. Default: ``RestartStrategy.exponential_delay()``
        (1 s growing x1.5 to 60 s, no attempt limit), which rides out an outage of a
        broker or database."""
        if not isinstance(strategy, RestartStrategy):
            raise ConfigError(f"set_restart_strategy needs a RestartStrategy, got {strategy!r}")
        self._restart = strategy
        return self

    def set_state_backend(self, backend: StateBackend) -> StreamEnvironment:
        """The state backend every keyed operator of the job keeps its state in
        (default: the in-memory ``HashMapStateBackend``)."""
        if not callable(getattr(backend, "create_keyed_backend", None)):
            raise ConfigError(f"set_state_backend needs a StateBackend, got {backend!r}")
        self._state_backend = backend
        return self

    def set_clock(self, clock: Clock) -> StreamEnvironment:
        """Processing time source for TTL, timers and checkpoint timing (tests)."""
        self._clock = clock
        return self

    def set_fault_injector(self, faults: FaultInjector) -> StreamEnvironment:
        """Crash points and failing state writes armed for this job's runs, to test
        recovery (see :mod:`streamflow.core.faults`). Without one, a run is armed as the
        ``STREAMFLOW_CRASH`` environment variable says (and not at all without it)."""
        if not isinstance(faults, FaultInjector):
            raise ConfigError(f"set_fault_injector needs a FaultInjector, got {faults!r}")
        self._faults = faults
        return self

    def set_channel_capacity(self, batches: int, *, records: int | None = None) -> StreamEnvironment:
        """How many batches (and, with ``records``, at most how many records) a channel
        holds before its writer blocks (backpressure); ``DataStream.channel_capacity``
        sets it for the channels into one operator."""
        self._channel_capacity = ChannelCapacity(batches, records)
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

    def set_workers(self, workers: int, index: int, *, exchange: ExchangeFactory | None = None) -> StreamEnvironment:
        """Run this process as worker ``index`` (0..workers-1) of a job on ``workers``
        worker processes (on one machine or many), each running the same program.

        Every edge that redistributes records (key_by, rebalance, broadcast) then goes
        through an exchange topic that ``exchange`` makes (e.g.
        ``KafkaExchange("host:port")``); each worker checkpoints on its own, into
        ``<checkpoint dir>/worker-<index>/``, and recovers alone. With ``workers=1`` the
        job runs as one worker of one: its checkpoints and savepoints take the workers'
        layout, so a savepoint of it can start more workers. Checked when the job is
        built: several workers need checkpointing, and an exchange when the graph has
        edges to cut; at most ``exchange.partitions`` workers.
        """
        self._workers = WorkerConfig(workers=workers, index=index, exchange=exchange)
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

    @property
    def workers(self) -> WorkerConfig | None:
        """Which worker of how many this process runs (see :meth:`set_workers`); None for
        a job on one process. ``streamflow run --workers N`` sets it before the program's
        build function runs."""
        return self._workers

    # -- sources ----------------------------------------------------------------------

    def from_source(
        self, source: Source, name: str | None = None, *, watermark_strategy: WatermarkStrategy | None = None
    ) -> DataStream[Any]:
        """A stream read from ``source``: a Source, whose ``create_reader(ctx)`` makes one
        SourceReader per subtask (see :mod:`streamflow.api.connector`); anything else is
        refused with a ConfigError saying what the contract is.

        ``watermark_strategy`` gives the records timestamps and the stream watermarks,
        one watermark generator per split (a Kafka partition, a file), as Flink does. A
        source may bring its own (``KafkaSource(watermark_strategy=...)``); this one
        takes precedence. Without a timestamp assigner the records keep the timestamps
        the source gave them (a Kafka record's timestamp).
        """
        check_source(source)
        strategy = watermark_strategy if watermark_strategy is not None else getattr(source, "watermark_strategy", None)
        if strategy is not None and not isinstance(strategy, WatermarkStrategy):
            raise ConfigError(
                f"from_source watermark_strategy must be a WatermarkStrategy, got {strategy!r}; e.g. "
                "WatermarkStrategy.for_bounded_out_of_orderness(5.0)"
            )
        node_id = self._graph.add(OperatorKind.SOURCE, name or type(source).__name__, source)
        if strategy is not None:
            self._graph.update(node_id, watermark_strategy=strategy)
        return DataStream(self._graph, (node_id,))

    def from_collection(self, items: Sequence[T], name: str = "collection") -> DataStream[T]:
        """A bounded stream of ``items`` (replayable: its position is checkpointed)."""
        return self.from_source(CollectionSource(list(items)), name=name)

    # -- the graph --------------------------------------------------------------------

    def job_graph(self) -> JobGraph:
        return self._graph.freeze(lambda spec: spec.parallelism or self.parallelism)

    def plan(self) -> PhysicalPlan:
        """The physical plan: validated, chained. Raises on an invalid pipeline."""
        return build_plan(self.job_graph(), self.parallelism, self.max_parallelism, self._chaining)

    # -- running ----------------------------------------------------------------------

    def _settings(
        self, job_name: str, restore_from: RestoreSettings | None = None, allow_checkpoint_rollback: bool = False
    ) -> ExecutionSettings:
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
            channel_capacity=self._channel_capacity.batches,
            channel_records=self._channel_capacity.records,
            source_batch_size=self._source_batch_size,
            source_poll_wait=self._source_poll_wait,
            restore_from=restore_from,
            savepoint_dir=self._savepoint_dir,
            allow_checkpoint_rollback=allow_checkpoint_rollback,
            faults=self._faults,
        )

    def execute_async(
        self,
        job_name: str = "job",
        *,
        from_savepoint: str | Path | None = None,
        allow_non_restored_state: bool = False,
        allow_checkpoint_rollback: bool = False,
        workers: int | None = None,
        worker_index: int | None = None,
    ) -> JobClient:
        """Start the job on the running loop; returns a client to watch, savepoint, stop
        or cancel it. The keyword arguments: see :meth:`execute`."""
        if workers is not None or worker_index is not None:
            if workers is None or worker_index is None:
                raise ConfigError("pass workers=N and worker_index=i together (or call env.set_workers(N, i))")
            self.set_workers(workers, worker_index, exchange=self._workers.exchange if self._workers else None)
        if self._workers is not None:
            return self._execute_worker(
                job_name, self._workers, from_savepoint, allow_non_restored_state, allow_checkpoint_rollback
            )
        restore = None
        if from_savepoint is not None:
            restore = RestoreSettings(
                path=local_path(from_savepoint, "savepoint path"), allow_non_restored_state=allow_non_restored_state
            )
        elif allow_non_restored_state:
            raise ConfigError("allow_non_restored_state only applies with from_savepoint=...; pass both or neither")
        if not isinstance(allow_checkpoint_rollback, bool):
            raise ConfigError(f"allow_checkpoint_rollback must be True or False, got {allow_checkpoint_rollback!r}")
        execution = Execution(self.plan(), self._settings(job_name, restore, allow_checkpoint_rollback))
        return JobClient(execution, self._metrics_interval, self._web_service(execution))

    def _web_service(self, execution: Execution) -> JobWebService | None:
        """The job's HTTP endpoints, their sockets bound now: a port in use fails the
        start here, before the job runs. None when the job serves neither."""
        if self._metrics_endpoint is None and self._web_endpoint is None:
            return None
        from streamflow.web.service import JobWebService  # aiohttp: only for jobs that serve

        service = JobWebService(execution, metrics=self._metrics_endpoint, web=self._web_endpoint)
        service.bind()
        return service

    def _execute_worker(
        self,
        job_name: str,
        config: WorkerConfig,
        from_savepoint: str | Path | None,
        allow_non_restored_state: bool,
        allow_checkpoint_rollback: bool,
    ) -> JobClient:
        if allow_non_restored_state and from_savepoint is None:
            raise ConfigError("allow_non_restored_state only applies with from_savepoint=...; pass both or neither")
        self.plan()  # the program's graph is checked as for one process
        start = WorkerStart(
            graph=self.job_graph(),
            config=config,
            settings=self._settings(job_name, None, allow_checkpoint_rollback),
            default_parallelism=self.parallelism,
            max_parallelism=self.max_parallelism,
            chaining=self._chaining,
            restore=None if from_savepoint is None else local_path(from_savepoint, "savepoint path"),
            allow_non_restored_state=allow_non_restored_state,
        )
        # Its web service is made for the worker's execution, which exists once it started.
        return JobClient(start, self._metrics_interval, self._web_service)

    async def execute(
        self,
        job_name: str = "job",
        *,
        from_savepoint: str | Path | None = None,
        allow_non_restored_state: bool = False,
        allow_checkpoint_rollback: bool = False,
        workers: int | None = None,
        worker_index: int | None = None,
    ) -> JobResult:
        """Run the job to its end; raises JobFailedError when the restart strategy gives up.

        Args:
            from_savepoint: start from this savepoint directory, checkpoint directory
                (``chk-<n>``) or job checkpoint directory (its latest checkpoint) instead
                of the job's own latest checkpoint; a path or a ``file://`` URI. State
                is matched to operators by uid.
            allow_non_restored_state: drop, with a WARNING, state of uids this job lacks;
                by default such state makes the job refuse to start
                (:class:`~streamflow.savepoint.restore.NonRestoredStateError`).
            allow_checkpoint_rollback: when the latest completed checkpoint is damaged,
                restore the previous intact one even though the job has an exactly-once
                sink: what that sink committed for the damaged checkpoint is written
                again (duplicates, logged at ERROR). By default such a job refuses to
                start (:class:`~streamflow.checkpoint.rollback.CheckpointRollbackError`,
                not retried). Skipping a checkpoint that never completed, or any
                checkpoint of a job without exactly-once sinks, needs no permission.
            workers, worker_index: run as worker ``worker_index`` of ``workers``, as
                :meth:`set_workers` says (with the exchange given there). A worker may
                start from a savepoint set (``from_savepoint``: the set's directory)
                that any number of workers took.
        """
        client = self.execute_async(
            job_name, from_savepoint=from_savepoint, allow_non_restored_state=allow_non_restored_state,
            allow_checkpoint_rollback=allow_checkpoint_rollback, workers=workers, worker_index=worker_index,
        )
        return await client.wait()
