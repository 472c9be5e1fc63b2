"""Checks of what is passed where a source or sink is expected.

A wrong object (a reader instead of its source, a plain function as a sink, a writer
without ``write``) would otherwise fail deep inside a running job with an
``AttributeError``, or half work: a state hook on the wrong object is silently never
called. Every check raises a :class:`~streamflow.errors.ConfigError` that names what
was given, the contract (the methods needed) and where it is documented.

When they run: :func:`check_source` and :func:`check_sink` when the pipeline is built
(``env.from_source``, ``sink_to``, ``ErrorPolicy.dead_letter``); they also check the
reader or writer class that ``create_reader`` / ``create_writer`` declares as its return
type. A reader or writer is only known once made, so :func:`check_reader` and
:func:`check_writer` run on each one the runtime makes, before it is opened; a
ConfigError is not retriable, so the job fails at once.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from streamflow.api.connector import SinkWriterBase
from streamflow.errors import ConfigError

__all__ = [
    "READER_METHODS",
    "SINK_DOCS",
    "SOURCE_DOCS",
    "WRITER_METHODS",
    "check_reader",
    "check_sink",
    "check_source",
    "check_writer",
]

SOURCE_DOCS = 'the README section "Write your own source"'
SINK_DOCS = 'the README section "Write your own exactly-once sink"'

# name -> True when the runtime awaits it (must be ``async def``), False when it calls it
READER_METHODS: dict[str, bool] = {
    "open": True,
    "poll": True,
    "snapshot_splits": False,
    "notify_checkpoint_complete": True,
    "close": True,
}
WRITER_METHODS: dict[str, bool] = {
    "open": True,
    "write": True,
    "snapshot": True,
    "notify_checkpoint_complete": True,
    "notify_checkpoint_aborted": True,
    "finish": True,
    "close": True,
}
STATE_HOOKS = ("initialize_state", "snapshot_state")

# Methods a base class only declares (they raise NotImplementedError): inheriting one is
# as good as leaving it out.
_STUBS: dict[str, object] = {"write": SinkWriterBase.write}
_ABSENT = object()

SOURCE_CONTRACT = (
    "a Source is an object with create_reader(ctx: SourceContext) that returns one SourceReader per "
    "subtask, with async open(), async poll(max_records, max_wait) -> SourceBatch | None, "
    "snapshot_splits(checkpoint_id) -> list (a plain def), async notify_checkpoint_complete(checkpoint_id) "
    "and async close() (subclass SourceReaderBase for no-op open, notify_checkpoint_complete and close); "
    "for the simple case, GeneratorSource(fn) runs an async generator fn(ctx, position) that yields "
    "(record, next_position)"
)
SINK_CONTRACT = (
    "a Sink is an object with create_writer(ctx: SinkContext) that returns one SinkWriter per subtask, "
    "with async open(), write(records), snapshot(checkpoint_id) -> list, "
    "notify_checkpoint_complete(checkpoint_id), notify_checkpoint_aborted(checkpoint_id), finish() and "
    "close() (subclass SinkWriterBase and implement write; TwoPhaseCommitSinkWriter for exactly-once); "
    "operator state goes on the writer through initialize_state(ctx) and snapshot_state(ctx)"
)


def _name(value: object) -> str:
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    if inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value):
        return f"the function {getattr(value, '__qualname__', value)!r}"
    text = repr(value)
    return f"{type(value).__qualname__} {text[:80] + '...' if len(text) > 80 else text}"


def _is_plain_function(value: object) -> bool:
    return (
        inspect.isfunction(value)
        or inspect.ismethod(value)
        or inspect.isbuiltin(value)
        or isinstance(value, functools.partial)
    )


def _method_problems(owner: object, methods: dict[str, bool]) -> list[str]:
    """What is wrong with the methods of ``owner`` (an instance or a class), one phrase each."""
    problems = []
    for name, awaited in methods.items():
        method = inspect.getattr_static(owner, name, None)
        if not callable(getattr(owner, name, None)) or method is _STUBS.get(name, _ABSENT):
            problems.append(f"it has no {name}()")
        elif inspect.isfunction(method):  # a plain def (not a proxy's __getattr__): its kind is knowable
            if awaited and not inspect.iscoroutinefunction(method):
                problems.append(f"{name}() must be an async def (the runtime awaits it)")
            elif not awaited and inspect.iscoroutinefunction(method):
                problems.append(f"{name}() must be a plain def, not async (the runtime calls it directly)")
    return problems


def _state_hook_problem(owner: object) -> str | None:
    hooks = [h for h in STATE_HOOKS if callable(getattr(owner, h, None))]
    if len(hooks) == 1:
        other = next(h for h in STATE_HOOKS if h not in hooks)
        return f"it defines {hooks[0]}() but not {other}(): operator state needs both (CheckpointedFunction)"
    return None


def _declared_return(factory: Callable[..., Any]) -> type | None:
    """The class ``factory`` declares it returns, when that resolves to a concrete class."""
    try:
        declared = typing.get_type_hints(factory).get("return")
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not checked
        return None
    if (
        not isinstance(declared, type)
        or declared is Any  # a class itself since Python 3.11
        or declared is object
        or getattr(declared, "_is_protocol", False)
    ):
        return None
    return declared


def _not_an_object(value: object) -> str | None:
    """What is wrong with ``value`` when it is None or a class, as the start of a message."""
    if value is None:
        return "got None"
    if isinstance(value, type):
        return f"got {_name(value)}, not an instance of it: pass {value.__qualname__}(...)"
    return None


def check_source(source: object, where: str = "env.from_source") -> None:
    """Refuse anything that is not a Source (see the module docstring)."""
    problem = _not_an_object(source) or _source_problem(source)
    if problem is not None:
        raise ConfigError(f"{where} needs a Source, but {problem}. {_contract(SOURCE_CONTRACT, SOURCE_DOCS)}")


def _source_problem(source: object) -> str | None:
    if inspect.isasyncgenfunction(source):
        return (
            f"got {_name(source)}, an async generator function: wrap it as GeneratorSource(fn) "
            "(from streamflow.connectors), which stores its position in the checkpoint"
        )
    if not callable(getattr(source, "create_reader", None)):
        if callable(getattr(source, "poll", None)):
            return (
                f"got {_name(source)}, which looks like a SourceReader (it has poll): pass the Source that "
                "makes one reader per subtask instead"
            )
        if callable(getattr(source, "create_writer", None)):
            return f"got {_name(source)}, which is a sink (it has create_writer): write to it with .sink_to(...)"
        return f"got {_name(source)}, which has no create_reader(ctx)"
    reader = _declared_return(source.create_reader)  # type: ignore[attr-defined]
    found = [] if reader is None else _method_problems(reader, READER_METHODS)
    return f"{_name(source)} makes {reader.__qualname__} readers, but {'; '.join(found)}" if reader and found else None


def check_sink(sink: object, where: str = "sink_to") -> None:
    """Refuse anything that is not a Sink, or a Sink whose state hooks would be ignored."""
    problem = _not_an_object(sink) or _sink_problem(sink)
    if problem is not None:
        raise ConfigError(f"{where} needs a Sink, but {problem}. {_contract(SINK_CONTRACT, SINK_DOCS)}")


def _sink_problem(sink: object) -> str | None:
    if not callable(getattr(sink, "create_writer", None)):
        if callable(getattr(sink, "write", None)):
            return (
                f"got {_name(sink)}, which looks like a SinkWriter (it has write): pass the Sink that makes "
                "one writer per subtask instead (an object with create_writer(ctx) returning the writer)"
            )
        if _is_plain_function(sink) or inspect.isasyncgenfunction(sink):
            return (
                f"got {_name(sink)}: a function is not a sink. For a side effect per record, run it in "
                ".map(fn) and end the stream with .sink_to(DiscardingSink()); to write somewhere, write a "
                "SinkWriterBase subclass"
            )
        if callable(getattr(sink, "create_reader", None)):
            return f"got {_name(sink)}, which is a source (it has create_reader): read it with env.from_source(...)"
        return f"got {_name(sink)}, which has no create_writer(ctx)"
    if any(callable(getattr(sink, hook, None)) for hook in STATE_HOOKS):
        return (
            f"{_name(sink)} defines initialize_state/snapshot_state, which are never called on the Sink: it "
            "is shared by all subtasks, and operator state belongs to one. Move them to the writer "
            "create_writer returns"
        )
    writer = _declared_return(sink.create_writer)  # type: ignore[attr-defined]
    found = [] if writer is None else _writer_problems(writer)
    return f"{_name(sink)} makes {writer.__qualname__} writers, but {'; '.join(found)}" if writer and found else None


def check_reader(reader: object, source_uid: str) -> None:
    """Refuse a reader ``create_reader`` made that does not keep the reader contract."""
    _refuse_made("source", source_uid, "create_reader", reader, _method_problems(reader, READER_METHODS))


def check_writer(writer: object, sink_uid: str) -> None:
    """Refuse a writer ``create_writer`` made that does not keep the writer contract."""
    _refuse_made("sink", sink_uid, "create_writer", writer, _writer_problems(writer))


def _writer_problems(owner: object) -> list[str]:
    found = _method_problems(owner, WRITER_METHODS)
    hooks = _state_hook_problem(owner)
    return [*found, hooks] if hooks else found


def _refuse_made(what: str, uid: str, factory: str, made: object, problems: list[str]) -> None:
    if problems:
        contract, docs = (SOURCE_CONTRACT, SOURCE_DOCS) if what == "source" else (SINK_CONTRACT, SINK_DOCS)
        raise ConfigError(
            f"{what} {uid!r}: {factory} returned {_name(made)}, but {'; '.join(problems)}. "
            + _contract(contract, docs),
            operator=uid,
        )


def _contract(contract: str, docs: str) -> str:
    return f"The contract: {contract}. See {docs}."
