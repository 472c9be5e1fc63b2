"""What is refused where a source or sink is expected, and what the error says.

Every refusal is a ConfigError that names what was given, the contract (the methods
needed) and the README section that documents it; objects are checked when the pipeline
is built, readers and writers (known only once made) before they are opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from streamflow import ErrorPolicy, JobFailedError, RestartStrategy, StreamEnvironment
from streamflow.api.connector_checks import check_sink, check_source
from streamflow.connectors import (
    CollectionSource,
    CollectSink,
    DiscardingSink,
    ExactlyOnceFileSink,
    ExactlyOnceSqliteSink,
    FileSource,
    GeneratorSource,
    KafkaSink,
    KafkaSource,
    PrintSink,
    SinkContext,
    SinkWriterBase,
    SocketTextSource,
    SourceBatch,
    SourceContext,
    SourceReaderBase,
)
from streamflow.connectors.mysql import MySqlOffsetsSink, MySqlSink
from streamflow.errors import ConfigError

SOURCE_DOCS = 'See the README section "Write your own source".'
SINK_DOCS = 'See the README section "Write your own exactly-once sink".'


async def numbers(ctx: Any, position: Any) -> AsyncIterator[tuple[int, int]]:
    yield 1, 1


class GoodReader(SourceReaderBase):
    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        return None

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return []


class GoodSource:
    def create_reader(self, ctx: SourceContext) -> GoodReader:
        return GoodReader()


class GoodWriter(SinkWriterBase):
    async def write(self, records: list[Any]) -> None:
        return None


class GoodSink:
    def create_writer(self, ctx: SinkContext) -> GoodWriter:
        return GoodWriter()


def test_every_built_in_connector_keeps_the_contract(tmp_path: Path) -> None:
    sources = [
        CollectionSource([1]), FileSource(tmp_path / "f"), GeneratorSource(numbers), SocketTextSource(),
        KafkaSource("127.0.0.1:9092", topics="t"), GoodSource(),
    ]
    row = {"table": "t", "row_fn": lambda r: (r,)}
    sinks = [
        PrintSink(), CollectSink("x"), DiscardingSink(), ExactlyOnceFileSink(tmp_path / "out"),
        ExactlyOnceSqliteSink(str(tmp_path / "db"), statement="INSERT INTO t VALUES (?)", **row),
        KafkaSink("127.0.0.1:9092", "t"),
        MySqlSink("mysql://u:p@h:1/db", statement="INSERT INTO t VALUES (%s)", **row),
        MySqlOffsetsSink("mysql://u:p@h:1/db", statement="INSERT INTO t VALUES (%s)", **row),
        GoodSink(),
    ]
    for source in sources:
        check_source(source)
    for sink in sinks:
        check_sink(sink)


# -- sources ---------------------------------------------------------------------------------


class NoPollReader(SourceReaderBase):
    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return []


class SyncPollReader(GoodReader):
    def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:  # type: ignore[override]
        return None


class AsyncSnapshotReader(GoodReader):
    async def snapshot_splits(self, checkpoint_id: int) -> list[Any]:  # type: ignore[override]
        return []


def source_making(reader_class: type) -> Any:
    class Made:
        def create_reader(self, ctx: SourceContext) -> Any:
            return reader_class()

    Made.create_reader.__annotations__["return"] = reader_class
    return Made()


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (None, "got None"),
        (GoodSource, "got the class GoodSource, not an instance of it: pass GoodSource(...)"),
        (GoodReader(), "looks like a SourceReader (it has poll): pass the Source"),
        (GoodSink(), "which is a sink (it has create_writer): write to it with .sink_to(...)"),
        (numbers, "an async generator function: wrap it as GeneratorSource(fn)"),
        ([1, 2, 3], "which has no create_reader(ctx)"),
        (source_making(NoPollReader), "makes NoPollReader readers, but it has no poll()"),
        (source_making(SyncPollReader), "poll() must be an async def (the runtime awaits it)"),
        (source_making(AsyncSnapshotReader), "snapshot_splits() must be a plain def, not async"),
    ],
    ids=["none", "class", "reader", "sink", "async-generator", "list", "no-poll", "sync-poll", "async-snapshot"],
)
def test_from_source_refuses_what_is_not_a_source_and_says_the_contract(given: Any, says: str) -> None:
    env = StreamEnvironment()
    with pytest.raises(ConfigError) as refused:
        env.from_source(given)
    message = str(refused.value)
    assert message.startswith("env.from_source needs a Source, but ")
    assert says in message
    assert "create_reader(ctx: SourceContext)" in message and "async poll(max_records, max_wait)" in message
    assert message.endswith(SOURCE_DOCS)


# -- sinks -----------------------------------------------------------------------------------


class NoWriteWriter(SinkWriterBase):
    """Inherits SinkWriterBase.write, which only raises: as good as no write."""


class HalfStateWriter(GoodWriter):
    def snapshot_state(self, ctx: Any) -> None:
        return None


class SinkWithStateHooks(GoodSink):
    def initialize_state(self, ctx: Any) -> None:
        return None

    def snapshot_state(self, ctx: Any) -> None:
        return None


def sink_making(writer_class: type) -> Any:
    class Made:
        def create_writer(self, ctx: SinkContext) -> Any:
            return writer_class()

    Made.create_writer.__annotations__["return"] = writer_class
    return Made()


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (None, "got None"),
        (GoodSink, "got the class GoodSink, not an instance of it: pass GoodSink(...)"),
        (GoodWriter(), "looks like a SinkWriter (it has write): pass the Sink that makes one writer per subtask"),
        (print, "got the function 'print': a function is not a sink. For a side effect per record, run it in "
                ".map(fn) and end the stream with .sink_to(DiscardingSink())"),
        (lambda r: None, "a function is not a sink"),
        (CollectionSource([1]), "which is a source (it has create_reader): read it with env.from_source(...)"),
        (SinkWithStateHooks(), "defines initialize_state/snapshot_state, which are never called on the Sink"),
        (sink_making(NoWriteWriter), "makes NoWriteWriter writers, but it has no write()"),
        (sink_making(HalfStateWriter), "it defines snapshot_state() but not initialize_state()"),
    ],
    ids=["none", "class", "writer", "print", "lambda", "source", "hooks-on-sink", "no-write", "half-state"],
)
def test_sink_to_refuses_what_is_not_a_sink_and_says_the_contract(given: Any, says: str) -> None:
    stream = StreamEnvironment().from_collection([1])
    with pytest.raises(ConfigError) as refused:
        stream.sink_to(given)
    message = str(refused.value)
    assert message.startswith("sink_to needs a Sink, but ")
    assert says in message
    assert "create_writer(ctx: SinkContext)" in message and "TwoPhaseCommitSinkWriter" in message
    assert message.endswith(SINK_DOCS)


def test_a_dead_letter_sink_is_checked_the_same_way() -> None:
    with pytest.raises(ConfigError, match=r"^ErrorPolicy.dead_letter needs a Sink, but got the function 'print'"):
        ErrorPolicy.dead_letter(print)


# -- readers and writers, known only once made -----------------------------------------------


class UnannotatedSource:
    """Gives no return type, so only the reader it makes can be checked."""

    def create_reader(self, ctx):  # type: ignore[no-untyped-def]
        return NoPollReader()


class UnannotatedSink:
    def create_writer(self, ctx):  # type: ignore[no-untyped-def]
        return HalfStateWriter()


def failing_job(source: Any, sink: Any) -> StreamEnvironment:
    env = StreamEnvironment()
    env.set_restart_strategy(RestartStrategy.fixed_delay(attempts=3, delay=0))
    env.from_source(source).uid("src").sink_to(sink).uid("out")
    return env


async def test_a_made_reader_without_poll_fails_the_job_at_once_naming_the_source() -> None:
    with pytest.raises(JobFailedError) as failed:
        await failing_job(UnannotatedSource(), DiscardingSink()).execute("bad-reader")
    cause = failed.value.__cause__
    assert isinstance(cause, ConfigError) and cause.operator == "src"
    assert str(cause).startswith("source 'src': create_reader returned NoPollReader ")
    assert "but it has no poll()" in str(cause) and str(cause).endswith(SOURCE_DOCS)
    assert failed.value.attempt == 1  # not retried: the same code would fail again


async def test_a_made_writer_with_half_the_state_hooks_fails_the_job_at_once_naming_the_sink() -> None:
    with pytest.raises(JobFailedError) as failed:
        await failing_job(CollectionSource([1]), UnannotatedSink()).execute("bad-writer")
    cause = failed.value.__cause__
    assert isinstance(cause, ConfigError) and cause.operator == "out"
    assert "it defines snapshot_state() but not initialize_state()" in str(cause)
    assert str(cause).endswith(SINK_DOCS)
    assert failed.value.attempt == 1
