"""Channel state of unaligned checkpoints: the in-flight elements a barrier overtook.

With unaligned checkpoints a task snapshots on the first barrier n. Every element that
reaches it afterwards on a channel whose barrier n has not come yet was sent before
barrier n upstream, so it is in no upstream snapshot and in no snapshot of this task:
it is checkpoint n's *channel state*, stored with the task's head operator and put back
into the same channel, ahead of any new element, on restore. That is the elements a
barrier overtook in the queue (taken out of the middle of the queue) and the elements
read from a channel before its barrier arrived.

Stored form (the ``channel_state`` part of the head operator's snapshot): one entry per
input channel of the task, in the gate's order::

    [{"channel": "parse[0] -> count[1]", "elements": [b"P...", ...]}, ...]

Each element is stored whole, encoded by the checkpoint serializer (exact pickle): a
batch with whatever fields it carries (positions, keys, key groups, timestamps) and any
control element but barriers and end of input (a restored upstream sends its end of
input again). Watermark elements keep their place among the records; each task's own
watermark starts from nothing after a restore and is derived again from what it reads.

In-flight elements belong to one channel between two fixed subtasks, so they cannot
follow a rescale: a restore whose channels differ refuses with a
:class:`~streamflow.errors.StateError` that says how to rescale (an aligned savepoint).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streamflow.checkpoint.serde import decode, encode
from streamflow.core.elements import Barrier, EndOfInput
from streamflow.errors import StateError
from streamflow.runtime.channel import Channel

__all__ = ["InFlightRecorder", "restore_channel_state"]


class InFlightRecorder:
    """Collects checkpoint ``checkpoint_id``'s channel state in one task.

    ``open_channels`` are the gate indexes whose barrier has not arrived at the
    trigger; each closes when its barrier comes, and the state is complete when all
    are closed. Elements are encoded as they are recorded: an operator may change a
    record in place afterwards, and the checkpoint must hold it as it arrived.
    """

    __slots__ = ("checkpoint_id", "_names", "_elements", "_open", "_done", "persisted_bytes", "records")

    def __init__(self, checkpoint_id: int, channel_names: Sequence[str], open_channels: set[int]) -> None:
        self.checkpoint_id = checkpoint_id
        self._names = list(channel_names)
        self._elements: list[list[bytes]] = [[] for _ in channel_names]
        self._open = set(open_channels)
        self._done: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.persisted_bytes = 0
        self.records = 0
        if not self._open:
            self._complete()

    def is_open(self, index: int) -> bool:
        return index in self._open

    def note(self, index: int, element: Any) -> None:
        """An element read from channel ``index``; recorded while that channel is open."""
        if index in self._open:
            self._record(index, element)

    def overtaken(self, index: int, ahead: list[Any]) -> None:
        """Barrier n came on channel ``index`` with ``ahead`` queued before it: those are
        recorded (they stay queued and are read after the snapshot) and the channel
        closes."""
        if index in self._open:
            for element in ahead:
                self._record(index, element)
            self._open.discard(index)
            if not self._open:
                self._complete()

    def _record(self, index: int, element: Any) -> None:
        kind = type(element)
        if kind is Barrier or kind is EndOfInput:
            return
        data = encode(element)
        self._elements[index].append(data)
        self.persisted_bytes += len(data)
        self.records += len(element) if hasattr(element, "records") else 0

    def _complete(self) -> None:
        if not self._done.done():
            self._done.set_result(
                [{"channel": name, "elements": elements} for name, elements in zip(self._names, self._elements)]
            )

    def cancel(self) -> None:
        """The checkpoint was aborted or abandoned, or the task ends: nobody waits any more."""
        if not self._done.done():
            self._done.cancel()

    def given_up(self) -> bool:
        """True once :meth:`cancel` was called before the state was complete."""
        return self._done.cancelled()

    async def result(self) -> list[dict[str, Any]]:
        """The stored form, once every open channel delivered its barrier.

        Raises:
            asyncio.CancelledError: :meth:`cancel` was called first.
        """
        return await asyncio.shield(self._done)


def restore_channel_state(
    uid: str, subtask: int, snapshots: Sequence[Any], channels: Sequence[Channel], *, parallelism: int
) -> int:
    """Put subtask ``subtask``'s restored in-flight elements back into ``channels`` (the
    task's gate, in order), before anything else is in them; returns how many.

    ``snapshots`` are the head operator's restored snapshots per old subtask.

    Raises:
        StateError: the checkpoint holds in-flight elements for other channels than
            this job has (the job was rescaled or its graph changed).
    """
    held = [(i, s.channel_state) for i, s in enumerate(snapshots) if _has_elements(s.channel_state)]
    if not held:
        return 0
    mine = snapshots[subtask].channel_state if subtask < len(snapshots) else None
    names = [c.name for c in channels]
    stored_names = [entry["channel"] for entry in mine] if mine else None
    if len(snapshots) != parallelism or (mine and stored_names != names):
        old = f"parallelism {len(snapshots)}"
        raise StateError(
            f"operator {uid!r} was checkpointed unaligned at {old} with records in flight in its input channels "
            f"(subtask {held[0][0]}: {held[0][1][0]['channel'] if held[0][1] else '?'} ...), but this job gives it "
            f"parallelism {parallelism} and other input channels; in-flight records cannot be moved to other "
            "channels. To rescale, restore with the old parallelism and take a savepoint (savepoints are always "
            "aligned: `streamflow savepoint JOB` or stop with a savepoint), then start the rescaled job from that "
            "savepoint",
            operator=uid,
            subtask=subtask,
        )
    count = 0
    if mine:
        for channel, entry in zip(channels, mine):
            for data in entry["elements"]:
                channel.put_now(decode(data))
                count += 1
    return count


def _has_elements(channel_state: Any) -> bool:
    return bool(channel_state) and any(entry["elements"] for entry in channel_state)
