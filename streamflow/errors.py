"""The error types streamflow raises.

Every error derives from :class:`StreamflowError`. Errors carry structured fields
(operator uid, subtask, checkpoint id, source position) next to a message that says what
failed, shows the offending value with ``!r`` and says what to do. They stay picklable:
``__reduce__`` rebuilds them from their message and fields.

Each class declares the fields its raisers pass, with ``None`` as the default for an
error raised without one, so a type checker knows ``error.operator`` and code reading it
never meets an AttributeError. Fields not declared are still set (and kept in
``fields``).
"""

from __future__ import annotations

from typing import Any


class StreamflowError(Exception):
    """Root of every error streamflow raises.

    ``retriable`` tells a restart loop whether trying the job attempt again can help.
    """

    retriable: bool = False
    message: str
    fields: dict[str, Any]

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for name, value in fields.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[StreamflowError], message: str, fields: dict[str, Any]) -> StreamflowError:
    return cls(message, **fields)


class ConfigError(StreamflowError):
    """A configuration value or a pipeline definition is invalid; raised at build time.

    Fields, where known: ``value`` (the refused value), ``operator`` (uid), ``path``.
    """

    value: Any = None
    operator: str | None = None
    path: str | None = None


class GraphError(ConfigError):
    """The job graph is inconsistent (duplicate uid, missing uid, dangling stream)."""


class StateError(StreamflowError):
    """State was used wrongly (no current key, wrong scope) or cannot be restored.

    Fields, where known: ``operator`` (uid), ``subtask``, ``state`` (its name),
    ``split`` (a restored source split) and ``path`` (the snapshot).
    """

    operator: str | None = None
    subtask: int | None = None
    state: str | None = None
    split: str | None = None
    path: str | None = None


class StateSerializationError(StateError):
    """A value in state cannot be written into a snapshot: it does not pickle (a lambda,
    a socket, a lock), or the state's serializer refused it (JsonSerializer and a tuple).

    Raised while a checkpoint's snapshot is taken; the task declines that checkpoint
    (nothing is written, the job fails only past ``tolerable_failures``). Fields, as far
    as known where it is raised: ``operator``, ``subtask``, ``state``, ``value_type``
    (the offending value's type) and ``path`` (where inside the stored value).
    """

    value_type: str | None = None

    def in_operator(self, operator: str, subtask: int) -> StateSerializationError:
        """This error naming ``operator`` and ``subtask`` (itself if it names one already):
        operator state does not know its operator, the task that snapshots it does."""
        if self.fields.get("operator") is not None:
            return self
        return type(self)(
            f"operator {operator!r} (subtask {subtask}): {self.message}",
            **{**self.fields, "operator": operator, "subtask": subtask},
        )


class CheckpointError(StreamflowError):
    """A checkpoint could not be taken, stored or read.

    Fields, where known: ``checkpoint_id``, ``file`` and ``path`` (what was read or
    written).
    """

    retriable = True
    checkpoint_id: int | None = None
    file: str | None = None
    path: str | None = None


class CheckpointCorruptedError(CheckpointError):
    """A checkpoint file is missing or its checksum does not match."""


class CheckpointAbortedError(CheckpointError):
    """A checkpoint was aborted (timeout, a task declined, a newer one overtook it)."""


class TooManyCheckpointFailuresError(CheckpointError):
    """More consecutive checkpoints failed than ``tolerable_failures`` allows."""


class UserFunctionError(StreamflowError):
    """A user function raised while processing a record.

    Fields: ``operator`` (uid), ``subtask``, ``position`` (the record's source position,
    as text, e.g. ``"src[0] orders.txt @ 12"``, or ``None``) and ``record``
    (its ``repr``, shortened).
    """

    retriable = True
    operator: str | None = None
    subtask: int | None = None
    position: str | None = None
    record: str | None = None


class TimestampError(UserFunctionError):
    """A record got no event timestamp: the WatermarkStrategy's timestamp assigner
    raised, or returned something that is not a finite number of seconds (or the record
    has no timestamp of its own and there is no assigner), and the error policy of the
    source or operator that assigns timestamps is ``fail``. Fields as
    :class:`UserFunctionError`."""


class DeserializationError(UserFunctionError):
    """A source read a record whose bytes its deserializer rejected, and the source's
    error policy is ``fail``. Fields as :class:`UserFunctionError`: ``operator`` is the
    source uid, ``position`` the record's place (e.g. ``topic-partition @ offset``)."""


class ConnectorError(StreamflowError):
    """A source or sink failed talking to the outside world.

    Fields, where known: ``operator`` (uid), ``subtask``, ``checkpoint_id``, and where
    in the outside world (``path``, ``topic``, ``position``, ``record``, ...).
    """

    retriable = True
    operator: str | None = None
    subtask: int | None = None
    checkpoint_id: int | None = None
    path: str | None = None
    position: Any = None
    record: Any = None


class DataLossError(ConnectorError):
    """Data that a completed checkpoint promised can no longer be committed.

    Never retried: restarting cannot bring the data back, and continuing silently would
    break the exactly-once contract.
    """

    retriable = False


class JobFailedError(StreamflowError):
    """The job failed and the restart strategy gave up; ``__cause__`` is the last failure.

    Fields: ``job`` (its name) and ``attempt`` (the attempt that failed last).
    """

    job: str | None = None
    attempt: int | None = None


class JobCancelledError(StreamflowError):
    """The job was cancelled before it finished. Field: ``job`` (its name)."""

    job: str | None = None
