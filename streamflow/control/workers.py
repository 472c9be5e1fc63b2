"""A job on several worker processes, addressed as one by the command line.

``streamflow stop JOB`` (and ``streamflow savepoint JOB``) of such a job takes a
savepoint *set*, one command for all workers:

1. every worker of the deployment must be running (registered on this machine): a set
   needs one savepoint per worker, so a job with a worker down is refused before any
   worker is stopped;
2. a new set directory ``<dir>/savepoint-set-<job>-<hex>/`` is made, and every worker is
   asked at once for its savepoint into ``<set>/worker-<i>/`` (``stop``: each stops
   after its own savepoint, its sinks having committed it);
3. once every worker answered with its savepoint, the set's manifest is written
   (:func:`~streamflow.savepoint.sets.write_set_manifest`, atomically): the set is
   complete. If any worker failed, no manifest is written and the outcome names each
   failure; a worker that did stop has ended, and is started again from its own
   checkpoints.

Each worker checkpoints on its own, so their savepoints have their own checkpoint ids;
together they are one consistent state, because what crossed between workers and was
not read yet is committed in the exchange topics, after the readers' saved offsets.

``cancel`` and ``status`` go to every worker; their answers are listed per worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamflow.control.registry import JobEntry
from streamflow.errors import ConfigError
from streamflow.savepoint.sets import SavepointSetManifest, set_directory_name, write_set_manifest

__all__ = ["SetOutcome", "check_complete", "take_savepoint_set"]

Send = Callable[[JobEntry, str, dict[str, Any]], Awaitable[Any]]


@dataclass(slots=True)
class SetOutcome:
    """What one savepoint-set command did: each worker's savepoint or failure, and the
    manifest (None when the set is incomplete)."""

    directory: Path
    savepoints: dict[int, str] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    manifest: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "set": str(self.directory),
            "complete": self.manifest is not None,
            "savepoints": {str(i): p for i, p in sorted(self.savepoints.items())},
            "failures": {str(i): e for i, e in sorted(self.failures.items())},
        }


def check_complete(entries: Sequence[JobEntry]) -> int:
    """The worker count N of ``entries`` (one deployment's registered workers); raises
    ConfigError unless exactly one live entry per index 0..N-1 is there."""
    refs = [e.worker for e in entries]
    if not refs or any(r is None for r in refs):
        raise ConfigError("a savepoint set is taken of the workers of a job on several processes")
    workers = {r.workers for r in refs if r is not None}
    if len(workers) != 1:
        raise ConfigError(f"the registered workers disagree on their number ({sorted(workers)})")
    count = workers.pop()
    indices = sorted(r.index for r in refs if r is not None)
    missing = sorted(set(range(count)) - set(indices))
    if missing or len(indices) != count:
        name = entries[0].name
        raise ConfigError(
            f"job {name!r} runs on {count} workers, but worker(s) {missing or 'some'} are not registered on this "
            f"machine (running: {', '.join(e.job_id for e in entries)}): a savepoint set needs every worker. Wait "
            "until a restarting worker is back (streamflow list), or run the command where the workers run; "
            "nothing was stopped",
            job=name,
        )
    return count


async def take_savepoint_set(
    entries: Sequence[JobEntry], command: str, directory: Path, send: Send
) -> SetOutcome:
    """Steps 1-3 of the module docstring; ``command`` is ``"stop"`` or ``"savepoint"``,
    ``directory`` where the set goes (an absolute path the workers can reach), ``send``
    sends one command with its arguments to one worker and returns its result.

    Raises:
        ConfigError: not every worker is registered (nothing was asked of any).
    """
    check_complete(entries)
    job_name = entries[0].name
    target = directory / set_directory_name(job_name)
    await asyncio.to_thread(target.mkdir, parents=True)
    outcome = SetOutcome(target)
    ordered = sorted(entries, key=lambda e: e.worker.index if e.worker is not None else 0)
    replies = await asyncio.gather(
        *(send(entry, command, {"directory": str(target / f"worker-{i}")}) for i, entry in enumerate(ordered)),
        return_exceptions=True,
    )
    identities: list[dict[str, Any]] = []
    for index, reply in enumerate(replies):
        if isinstance(reply, BaseException):
            outcome.failures[index] = f"{type(reply).__name__}: {reply}"
            continue
        outcome.savepoints[index] = str(Path(reply["path"]).relative_to(target))
        identities.append(reply["worker"])
    if outcome.failures:
        return outcome
    first = identities[0]
    if any(i["generation"] != first["generation"] for i in identities):
        outcome.failures[-1] = "the workers answered from different deployments; the set is not written"
        return outcome
    manifest = SavepointSetManifest(
        job_name=job_name, workers=first["workers"], exchange_partitions=first["exchange_partitions"],
        max_parallelism=first["max_parallelism"], fingerprint=first["fingerprint"], generation=first["generation"],
        savepoints=tuple(outcome.savepoints[i] for i in range(len(ordered))),
        parallelism=dict(first["parallelism"]), exchanged=first["exchanged"],
    )
    outcome.manifest = await asyncio.to_thread(write_set_manifest, target, manifest)
    return outcome
