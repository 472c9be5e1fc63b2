"""What an operator does with a record its function cannot process."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from streamflow.api.connector_checks import check_sink
from streamflow.errors import ConfigError


class ErrorAction(enum.Enum):
    FAIL = "fail"
    SKIP = "skip"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorPolicy:
    """Per-operator handling of exceptions raised by the user function for a record.

    ``fail()`` (the default): the job attempt fails with an error naming the operator,
    subtask and the record's source position, and the restart strategy decides.
    ``skip()``: the record is dropped, logged and counted in ``records_skipped``.
    ``dead_letter(sink)``: the record goes, with the error and its position, to ``sink``
    as a dict ``{"operator", "subtask", "position", "error", "record"}`` and is counted
    in ``records_dead_lettered``. Only exceptions of the types in ``on`` are handled;
    others fail the attempt.
    """

    action: ErrorAction
    on: tuple[type[BaseException], ...] = (Exception,)
    sink: Any = None

    @classmethod
    def fail(cls) -> ErrorPolicy:
        return cls(action=ErrorAction.FAIL)

    @classmethod
    def skip(cls, on: tuple[type[BaseException], ...] = (Exception,)) -> ErrorPolicy:
        return cls(action=ErrorAction.SKIP, on=on)

    @classmethod
    def dead_letter(cls, sink: Any, on: tuple[type[BaseException], ...] = (Exception,)) -> ErrorPolicy:
        check_sink(sink, "ErrorPolicy.dead_letter")
        return cls(action=ErrorAction.DEAD_LETTER, on=on, sink=sink)

    def __post_init__(self) -> None:
        if not self.on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.on):
            raise ConfigError(f"ErrorPolicy 'on' must be a tuple of exception types, got {self.on!r}")


FAIL = ErrorPolicy.fail()
