"""A worker's start: what worker i of N does once, before its first attempt.

At build time (:class:`WorkerStart` made by ``StreamEnvironment.execute_async``), the
configuration is checked, so a job that cannot run on N workers is refused before
anything starts, with what to change: more than one worker without checkpointing, or
without an exchange for a graph that has edges to cut, more workers than exchange
partitions, or a source that cannot be split.

Then, when the job starts (:meth:`WorkerStart.open`), in order:

1. the worker takes its lock in the checkpoint root (two processes given the same
   index: the second is refused);
2. it reads the savepoint set it starts from, if it was given one;
3. it registers in the root's ``workers.json``: the first worker writes it, every
   other is compared with it (another job, another number of workers, another graph:
   refused); it gives the job's generation and whether its graph is cut at exchanges;
4. its graph is cut at the exchanges (:func:`~.rewrite.rewrite_for_workers`) and planned,
   and the exchange topics are created or checked (one with another partition count is
   refused here, before anything is read; an unreachable cluster is left to the first
   attempt and the restart strategy);
5. from a savepoint set, it plans which old snapshots it reads
   (:func:`~streamflow.savepoint.sets.plan_worker_restore`); from a single savepoint,
   the usual restore applies (every old subtask's state is dealt over the job's global
   subtasks, so each worker takes its share);
6. its checkpoints go to ``<root>/worker-<i>/``; the lock is held until the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streamflow.api.exchange import ExchangeFactory
from streamflow.errors import ConfigError, ConnectorError
from streamflow.graph.plan import PhysicalPlan, build_plan
from streamflow.graph.spec import JobGraph
from streamflow.partitioning.workers import WorkerLayout, check_exchange_partitions
from streamflow.runtime.executor import Execution
from streamflow.runtime.settings import ExecutionSettings
from streamflow.savepoint.restore import RestoreSettings
from streamflow.savepoint.set_restore import SetRestoreSettings
from streamflow.savepoint.sets import SET_MANIFEST_FILE, SetLayout, plan_worker_restore, read_set_manifest, restore_needs
from streamflow.workers.fingerprint import graph_fingerprint, graph_outline
from streamflow.workers.manifest import WorkerLock, WorkerManifest, register_worker, worker_directory
from streamflow.workers.rewrite import (
    broadcast_reader_uids,
    check_sources_split,
    exchange_specs,
    exchanged_edges,
    rewrite_for_workers,
)

__all__ = ["WorkerConfig", "WorkerIdentity", "WorkerStart"]

log = logging.getLogger("streamflow.workers")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """Which worker of how many this process runs, and the job's exchanges.

    Attributes:
        workers: N, the job's number of worker processes.
        index: this worker's index, 0..N-1 (the StatefulSet ordinal on Kubernetes).
        exchange: makes the exchange topics between workers (e.g.
            ``streamflow.connectors.kafka.KafkaExchange``); needed when N > 1 and the
            graph has an edge that redistributes records (key_by, rebalance, broadcast).
    """

    workers: int
    index: int
    exchange: ExchangeFactory | None = None

    def __post_init__(self) -> None:
        WorkerLayout(workers=self.workers, index=self.index)  # checks both, with what to change
        exchange = self.exchange
        if exchange is not None and not (callable(getattr(exchange, "sink", None))
                                         and callable(getattr(exchange, "source", None))):
            raise ConfigError(
                f"the workers' exchange must make exchange sinks and sources (an ExchangeFactory such as "
                f"KafkaExchange), got {exchange!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerIdentity:
    """What a running worker says about itself to ``streamflow list/status/stop``: enough
    for the command line to group the workers of a job and to write the manifest of a
    savepoint set they take."""

    job_name: str
    workers: int
    index: int
    generation: str
    exchange_partitions: int
    max_parallelism: int
    fingerprint: str
    exchanged: bool
    parallelism: dict[str, int]  # each stateful operator uid's local parallelism

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_name": self.job_name, "workers": self.workers, "index": self.index, "generation": self.generation,
            "exchange_partitions": self.exchange_partitions, "max_parallelism": self.max_parallelism,
            "fingerprint": self.fingerprint, "exchanged": self.exchanged, "parallelism": dict(self.parallelism),
        }


class WorkerStart:
    """Worker ``config.index`` of a job, ready to start (see the module docstring).

    Args:
        graph: the job's graph as the program declared it (every worker declares the same).
        config: which worker, of how many, and the exchanges.
        settings: the execution settings of the job; ``checkpoint_dir`` is the root
            shared by the workers, ``restore_from`` must be None (see ``restore``).
        default_parallelism, max_parallelism, chaining: as for ``build_plan``.
        restore: a savepoint set, a single savepoint or a checkpoint to start from.
        allow_non_restored_state: drop state of uids the job lacks instead of refusing.

    Raises:
        ConfigError: the job cannot run as configured (the message says what to change).
    """

    def __init__(
        self,
        *,
        graph: JobGraph,
        config: WorkerConfig,
        settings: ExecutionSettings,
        default_parallelism: int,
        max_parallelism: int,
        chaining: bool,
        restore: Path | None = None,
        allow_non_restored_state: bool = False,
    ) -> None:
        self.job_name = settings.job_name
        self.config = config
        self.identity: WorkerIdentity | None = None  # known once registered
        self._graph = graph
        self._settings = settings
        self._default_parallelism = default_parallelism
        self._max_parallelism = max_parallelism
        self._chaining = chaining
        self._restore = restore
        self._allow_non_restored_state = allow_non_restored_state
        me = f"worker {config.index} of {config.workers} of job {self.job_name!r}"
        if settings.checkpoint is None or settings.checkpoint_dir is None:
            if config.workers > 1:
                raise ConfigError(
                    f"{me}: a job on several workers needs checkpointing: the exchanges between workers commit "
                    "with each worker's checkpoints, and each worker recovers alone from its own. Enable it: "
                    "env.enable_checkpointing(interval) (streamflow run --checkpoint-interval SECONDS)"
                )
            raise ConfigError(
                f"{me}: workers keep their checkpoints under a shared root; enable checkpointing with a "
                "directory (env.enable_checkpointing(interval, directory=...), --checkpoint-dir)"
            )
        self.root: Path = settings.checkpoint_dir
        check_sources_split(graph, config.workers)
        cut = exchanged_edges(graph)
        if config.workers > 1 and cut:
            self._require_exchange(f"its {len(cut)} edge(s) that redistribute records (key_by, rebalance, broadcast)")
        if config.exchange is not None:
            check_exchange_partitions(config.exchange.partitions, max_parallelism, config.workers)
        self._outline = graph_outline(graph, default_parallelism=default_parallelism, max_parallelism=max_parallelism)

    def _require_exchange(self, why: str) -> ExchangeFactory:
        exchange = self.config.exchange
        if exchange is None:
            raise ConfigError(
                f"worker {self.config.index} of {self.config.workers} of job {self.job_name!r} needs an exchange for "
                f"{why}: give one, env.set_workers(N, i, exchange=KafkaExchange('host:port')) "
                "(streamflow run --exchange-bootstrap host:port)"
            )
        return exchange

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Execution]:
        """Steps 1-6 of the module docstring; the worker's execution, run while open."""
        config = self.config
        lock = WorkerLock(self.root, config.index)
        await asyncio.to_thread(lock.acquire)
        try:
            yield await self._prepare()
        finally:
            await asyncio.to_thread(lock.release)

    async def _prepare(self) -> Execution:
        config = self.config
        restore = self._restore
        set_manifest = None
        if restore is not None:
            set_manifest = await asyncio.to_thread(read_set_manifest, restore)
            if set_manifest is None and await asyncio.to_thread(_looks_like_a_set, restore):
                raise ConfigError(
                    f"{str(restore)!r} holds worker savepoints but no {SET_MANIFEST_FILE}: the savepoint set is "
                    "incomplete (a worker's stop failed, see the stop command's report). Restart the workers from "
                    "their checkpoints, or take a new set",
                    path=str(restore),
                )
        exchange = config.exchange
        exchanged = config.workers > 1 and bool(exchanged_edges(self._graph))
        if set_manifest is not None and set_manifest.exchanged:
            exchanged = True
        proposal = WorkerManifest(
            job_name=self.job_name, workers=config.workers,
            exchange_partitions=exchange.partitions if exchange is not None else 0,
            max_parallelism=self._max_parallelism, fingerprint=graph_fingerprint(self._outline),
            outline=tuple(self._outline), exchanged=exchanged,
        )
        manifest = await asyncio.to_thread(register_worker, self.root, proposal, index=config.index)
        if manifest.exchanged != exchanged:
            if not manifest.exchanged:
                raise ConfigError(
                    f"worker {config.index} of job {self.job_name!r}: the checkpoint root {str(self.root)!r} holds a "
                    "deployment whose workers read no exchange topics, but the savepoint set to restore was taken "
                    "by workers that did: start the new workers with a new checkpoint root (--checkpoint-dir)",
                    path=str(self.root),
                )
            exchanged = True  # restarted without --from-savepoint: the deployment keeps its exchanges
        layout = WorkerLayout(
            workers=config.workers, index=config.index,
            exchange_partitions=self._exchange_partitions() if exchanged else None,
        )
        graph = self._graph
        if exchanged:
            exchanges = self._require_exchange("the exchange topics its deployment reads")
            graph = rewrite_for_workers(
                graph, layout=layout, job_name=self.job_name, default_parallelism=self._default_parallelism,
                max_parallelism=self._max_parallelism, exchanges=exchanges,
                generation=manifest.generation, keep_exchanges=True,
            )
            specs = exchange_specs(
                self._graph, layout=layout, job_name=self.job_name, default_parallelism=self._default_parallelism,
                max_parallelism=self._max_parallelism, partitions=exchanges.partitions,
                generation=manifest.generation,
            )
            where = f"worker {config.index} of job {self.job_name!r}"
            try:
                await exchanges.prepare(specs, where)
            except ConnectorError as exc:
                log.warning("%s: the exchange topics cannot be checked now (%s); its first attempt will", where, exc)
        plan = build_plan(graph, self._default_parallelism, self._max_parallelism, self._chaining)
        parallelism = _stateful_parallelism(graph, plan)
        self.identity = WorkerIdentity(
            job_name=self.job_name, workers=config.workers, index=config.index, generation=manifest.generation,
            exchange_partitions=manifest.exchange_partitions, max_parallelism=self._max_parallelism,
            fingerprint=manifest.fingerprint, exchanged=exchanged, parallelism=parallelism,
        )
        restore_from: RestoreSettings | SetRestoreSettings | None = None
        if set_manifest is not None and restore is not None:
            new = SetLayout(
                workers=config.workers, exchange_partitions=layout.exchange_partitions or 0,
                max_parallelism=self._max_parallelism, parallelism=parallelism, exchanged=exchanged,
            )
            broadcast_readers = broadcast_reader_uids(self._graph) if exchanged else set()
            worker_plan = plan_worker_restore(
                set_manifest.layout, new, config.index, restore_needs(graph, broadcast_readers)
            )
            restore_from = SetRestoreSettings(
                directory=restore, manifest=set_manifest, plan=worker_plan,
                allow_non_restored_state=self._allow_non_restored_state,
            )
        elif restore is not None:
            restore_from = RestoreSettings(path=restore, allow_non_restored_state=self._allow_non_restored_state)
        settings = replace(
            self._settings, checkpoint_dir=worker_directory(self.root, config.index), layout=layout,
            restore_from=restore_from,
        )
        return Execution(plan, settings)

    def _exchange_partitions(self) -> int:
        partitions = self._require_exchange("the exchange topics its deployment reads").partitions
        check_exchange_partitions(partitions, self._max_parallelism, self.config.workers)
        return partitions


def _stateful_parallelism(graph: JobGraph, plan: PhysicalPlan) -> dict[str, int]:
    """Each stateful operator uid of ``graph`` and its (local) parallelism."""
    return {node.effective_uid: plan.parallelism[node.node_id] for node in graph.nodes if node.holds_state}


def _looks_like_a_set(directory: Path) -> bool:
    return directory.is_dir() and any(child.name.startswith("worker-") for child in directory.iterdir())
