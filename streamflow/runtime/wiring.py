"""One attempt's physical wiring: channels, tasks and the coordinator, made from the plan.

For every attempt, in order:

1. one bounded channel per edge, upstream subtask and downstream subtask (a forward
   edge connects subtask i to subtask i only), bounded as the downstream operator says
   (``channel_capacity(...)``) or else as the job does;
2. per chain and subtask: the record writers of its outgoing edges (a dead-letter or
   side-output edge belongs to the operator that feeds it, wherever it sits in the
   chain), its operators, each with its context (and a keyed state backend when keyed),
   and the input gate over its channels;
3. a :class:`~streamflow.runtime.task.Task` (its input channels refilled with the
   records an unaligned checkpoint held in flight, before any task runs), or a
   :class:`~streamflow.runtime.source_task.SourceTask` when the chain starts with a
   source (its reader is made when the task opens, from the restored splits);
4. the checkpoint coordinator, attached to every task's mailbox.

A worker of a job on several processes (``settings.layout``) wires its own subtasks
only, but hands sources, sinks and operators their GLOBAL subtask index and parallelism
(and keyed backends the key groups of their global subtask), so that whatever splits
work by subtask (partition ownership, transactional ids, restored state) splits it over
every worker's subtasks. Task names, acks, state files and the coordinator stay local.

Nothing here runs: the executor starts the tasks and the coordinator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Coroutine

from streamflow.api.connector import SourceContext, SourceReader
from streamflow.api.connector_checks import check_reader
from streamflow.checkpoint.storage import CheckpointStorage
from streamflow.config import CheckpointingMode
from streamflow.core.services import JobServices
from streamflow.graph.plan import ChainSpec, PhysicalPlan
from streamflow.graph.spec import OperatorKind, OperatorSpec, Partitioning
from streamflow.runtime.channel import Channel, InputGate
from streamflow.runtime.channel_state import restore_channel_state
from streamflow.runtime.checkpoint_stats import CheckpointStats
from streamflow.runtime.coordinator import CheckpointCoordinator
from streamflow.runtime.operators import make_operator
from streamflow.runtime.operators.contexts import OperatorContext
from streamflow.runtime.partitioners import RecordWriter
from streamflow.runtime.settings import ExecutionSettings
from streamflow.runtime.source_task import SourceTask
from streamflow.runtime.task import Task
from streamflow.savepoint.restore import Restored

__all__ = ["Attempt", "wire_attempt"]

Spawn = Callable[[Coroutine[Any, Any, None]], Any]


@dataclass(frozen=True, slots=True)
class Attempt:
    """The parts of one attempt, ready to run."""

    tasks: list[Task]
    channels: list[Channel]
    coordinator: CheckpointCoordinator


def wire_attempt(
    plan: PhysicalPlan,
    settings: ExecutionSettings,
    *,
    run_id: str,
    services: JobServices,
    storage: CheckpointStorage | None,
    stats: CheckpointStats,
    restored: Restored | None,
    start_id: int,
    spawn: Spawn,
) -> Attempt:
    """Steps 1-4 of the module docstring.

    Args:
        run_id: the job run's id (the same for all its attempts).
        services: the job run's own objects, handed to every part of it.
        storage: where checkpoints go (None without checkpointing).
        stats: the run's checkpoint statistics, kept across attempts.
        restored: the restored snapshots per operator uid (None on a fresh start).
        start_id: the highest checkpoint id so far; the next checkpoint is one more.
        spawn: starts a task's background state write (the executor waits for them).
    """
    wiring = _Wiring(plan, settings, run_id, services, storage, restored, spawn)
    checkpoint = settings.checkpoint
    coordinator = CheckpointCoordinator(
        job_name=settings.job_name,
        config=checkpoint,
        storage=storage,
        clock=settings.clock,
        start_id=start_id,
        parallelism={op.effective_uid: chain.parallelism for chain in plan.chains for op in chain.operators},
        max_parallelism=plan.max_parallelism,
        stats=stats,
        services=services,
    )
    tasks = [wiring.task(chain, subtask, coordinator) for chain in plan.chains for subtask in range(chain.parallelism)]
    coordinator.attach(
        [task.gate for task in tasks], [task.gate for task in tasks if isinstance(task, SourceTask)], timed=tasks
    )
    return Attempt(tasks, wiring.channels, coordinator)


def plan_node_name(chain: ChainSpec, node_id: int) -> str:
    """The name of operator ``node_id`` of ``chain``."""
    for op in chain.operators:
        if op.node_id == node_id:
            return op.name
    raise KeyError(node_id)


class _Wiring:
    """The channels of one attempt, and the tasks made over them."""

    def __init__(
        self,
        plan: PhysicalPlan,
        settings: ExecutionSettings,
        run_id: str,
        services: JobServices,
        storage: CheckpointStorage | None,
        restored: Restored | None,
        spawn: Spawn,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.run_id = run_id
        self.services = services
        self.storage = storage
        self.restored = restored
        self.spawn = spawn
        checkpoint = settings.checkpoint
        self.mode = checkpoint.mode if checkpoint is not None else CheckpointingMode.EXACTLY_ONCE
        self.unaligned = checkpoint is not None and checkpoint.unaligned
        self.aligned_timeout = checkpoint.aligned_timeout if checkpoint is not None else None
        self.channels: list[Channel] = []
        # (edge index, upstream subtask) -> downstream subtask -> channel
        self._outgoing: dict[tuple[int, int], dict[int, Channel]] = {}
        # (chain id, subtask) -> the gate's channels, and which input of the head each feeds
        self._incoming: dict[tuple[int, int], list[Channel]] = {}
        self._input_of: dict[tuple[int, int], list[int]] = {}
        self._make_channels()

    def _make_channels(self) -> None:
        plan, settings = self.plan, self.settings
        for index, edge in enumerate(plan.edges):
            up_chain, down_chain = plan.chain_of(edge.upstream), plan.chain_of(edge.downstream)
            bound = next(op.input_capacity for op in down_chain.operators if op.node_id == edge.downstream)
            capacity = bound.batches if bound is not None else settings.channel_capacity
            records = bound.records if bound is not None else settings.channel_records
            for i in range(plan.parallelism[edge.upstream]):
                targets = [i] if edge.partitioning is Partitioning.FORWARD else range(plan.parallelism[edge.downstream])
                for j in targets:
                    if edge.dead_letter:
                        name = f"{up_chain.name}[{i}] -dead letters-> sink[{j}]"
                    elif edge.side_output is not None:
                        up_name = plan_node_name(up_chain, edge.upstream)
                        name = f"{up_name}[{i}] -{edge.side_output}-> {down_chain.head.name}[{j}]"
                    else:
                        name = f"{up_chain.tail.name}[{i}] -> {down_chain.head.name}[{j}]"
                    channel = Channel(name, capacity, records)
                    self._outgoing.setdefault((index, i), {})[j] = channel
                    self._incoming.setdefault((down_chain.chain_id, j), []).append(channel)
                    self._input_of.setdefault((down_chain.chain_id, j), []).append(edge.input_index)
                    self.channels.append(channel)

    def task(self, chain: ChainSpec, subtask: int, coordinator: CheckpointCoordinator) -> Task:
        plan, settings = self.plan, self.settings
        members = {op.effective_uid: op for op in chain.operators}
        uid_of = {op.node_id: uid for uid, op in members.items()}
        outputs: list[RecordWriter] = []
        side_outputs: dict[str, RecordWriter] = {}
        tagged_outputs: dict[str, dict[str, list[RecordWriter]]] = {}
        for index, edge in enumerate(plan.edges):
            if edge.upstream not in uid_of:
                continue
            targets = self._outgoing[(index, subtask)]
            writer = RecordWriter(
                [targets[j] for j in sorted(targets)], edge.partitioning, edge.key_selector, plan.max_parallelism
            )
            if edge.dead_letter:
                side_outputs[uid_of[edge.upstream]] = writer
            elif edge.side_output is not None:
                tagged_outputs.setdefault(uid_of[edge.upstream], {}).setdefault(edge.side_output, []).append(writer)
            else:
                outputs.append(writer)
        common: dict[str, Any] = dict(
            name=f"{chain.head.effective_uid}[{subtask}]",
            subtask=subtask,
            operators=[
                make_operator(spec, self._context(spec, chain, subtask))
                for spec in chain.operators
                if spec.kind is not OperatorKind.SOURCE
            ],
            gate=InputGate(self._incoming.get((chain.chain_id, subtask), [])),
            outputs=outputs,
            side_outputs=side_outputs,
            tagged_outputs=tagged_outputs,
            mode=self.mode,
            coordinator=coordinator,
            storage=self.storage,
            clock=settings.clock,
            spawn=self.spawn,
            restored=self.restored,
            services=self.services,
            channel_inputs=self._input_of.get((chain.chain_id, subtask)),
            unaligned=self.unaligned,
            aligned_timeout=self.aligned_timeout,
        )
        head = chain.head
        if head.kind is not OperatorKind.SOURCE:
            task = Task(**common)
            snapshots = self.restored.get(head.effective_uid) if self.restored is not None else None
            if snapshots:  # in-flight records of an unaligned checkpoint go back first
                task.restored_in_flight = restore_channel_state(
                    head.effective_uid, subtask, snapshots, task.gate.channels, parallelism=chain.parallelism
                )
            return task
        layout = settings.layout
        return SourceTask(
            source_uid=head.effective_uid,
            reader_factory=self._reader_factory(head, chain, subtask),
            parallelism=layout.global_parallelism(chain.parallelism),
            global_subtask=layout.global_subtask(subtask, chain.parallelism),
            batch_size=settings.source_batch_size,
            poll_wait=settings.source_poll_wait,
            error_policy=head.error_policy,
            watermark_strategy=head.watermark_strategy,
            **common,
        )

    def _reader_factory(
        self, head: OperatorSpec, chain: ChainSpec, subtask: int
    ) -> Callable[[list[Any] | None, list[Any] | None], SourceReader]:
        settings, source, uid = self.settings, head.function, head.effective_uid
        layout = settings.layout

        def make_reader(splits: list[Any] | None, all_splits: list[Any] | None) -> SourceReader:
            reader: SourceReader = source.create_reader(
                SourceContext(
                    job_name=settings.job_name,
                    run_id=self.run_id,
                    operator_uid=uid,
                    subtask_index=layout.global_subtask(subtask, chain.parallelism),
                    parallelism=layout.global_parallelism(chain.parallelism),
                    restored_splits=splits,
                    all_restored_splits=all_splits,
                    clock=settings.clock,
                    services=self.services,
                )
            )
            check_reader(reader, uid)  # before open: a reader that breaks the contract fails the job at once
            return reader

        return make_reader

    def _context(self, spec: OperatorSpec, chain: ChainSpec, subtask: int) -> OperatorContext:
        """An operator's context: global subtask index and parallelism (see the layout)."""
        settings, max_parallelism, layout = self.settings, self.plan.max_parallelism, self.settings.layout
        global_subtask = layout.global_subtask(subtask, chain.parallelism)
        key_groups = layout.key_groups(max_parallelism, subtask, chain.parallelism)
        backend = None
        if spec.has_keyed_state:
            backend = settings.state_backend.create_keyed_backend(
                operator_uid=spec.effective_uid,
                subtask_index=global_subtask,
                max_parallelism=max_parallelism,
                key_group_range=key_groups,
                clock=settings.clock,
            )
        checkpoint = settings.checkpoint
        return OperatorContext(
            job_name=settings.job_name,
            run_id=self.run_id,
            spec=spec,
            subtask_index=global_subtask,
            parallelism=layout.global_parallelism(chain.parallelism),
            max_parallelism=max_parallelism,
            clock=settings.clock,
            keyed_backend=backend,
            checkpointing=checkpoint is not None,
            checkpoint_interval=checkpoint.interval if checkpoint is not None else None,
            services=self.services,
            checkpoint_directory=self.storage.directory if self.storage is not None else None,
            key_groups=key_groups,
        )
