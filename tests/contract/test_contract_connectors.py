"""The public connector contract kit (streamflow.testing.connectors) run against every
built-in replayable source and exactly-once sink, and the README's custom source and
sink examples: Kafka against the real broker, MySQL XA against the real MariaDB.

The kit itself must catch a broken connector: a source that replays its last record, a
sink that shows records before the commit, and one that forgets to abort leftovers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from streamflow.api.connector import SinkContext, SourceContext
from streamflow.connectors import (
    CollectionSource,
    DeliveryGuarantee,
    ExactlyOnceFileSink,
    ExactlyOnceSqliteSink,
    FileSource,
    GeneratorSource,
    KafkaSink,
    KafkaSource,
    read_committed_lines,
)
from streamflow.connectors.collection import CollectionReader
from streamflow.connectors.mysql import MySqlSink
from streamflow.testing.connectors import ContractViolation, check_exactly_once_sink, check_replayable_source
from streamflow.testing.kafka import create_topic, produce, read_committed, unique_topic
from streamflow.testing.mysql import execute, query

REPO = Path(__file__).resolve().parents[2]
LINES = [f"line-{i:03d}" for i in range(60)]


def example(name: str) -> ModuleType:
    """One of the README's examples, imported from examples/ as a module."""
    loaded = sys.modules.get(f"example_{name}")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- replayable sources -------------------------------------------------------------------


async def test_the_collection_source_keeps_the_contract() -> None:
    await check_replayable_source(lambda: CollectionSource(list(range(100)), batch_size=6))


async def test_the_file_source_keeps_the_contract(tmp_path: Path) -> None:
    paths = []
    for n in range(3):
        path = tmp_path / f"part-{n}.txt"
        path.write_text("".join(f"{line}-{n}\n" for line in LINES[: 20 + 10 * n]))
        paths.append(path)
    await check_replayable_source(lambda: FileSource(paths, batch_size=5))


async def numbered(ctx: Any, position: int | None) -> Any:
    """A generator source of 30 records per split, resumed at the next number."""
    for i in range(position or 0, 30):
        yield f"{ctx.split}-{i}", i + 1


async def test_the_generator_source_keeps_the_contract() -> None:
    await check_replayable_source(lambda: GeneratorSource(numbered, splits=["a", "b", "c"]))


async def test_the_custom_source_example_keeps_the_contract() -> None:
    custom = example("custom_source")
    await check_replayable_source(
        lambda: GeneratorSource(custom.read_feed, splits=list(custom.PAGES)), batch_size=40
    )


async def test_the_kafka_source_keeps_the_contract(kafka_bootstrap: str) -> None:
    topic = unique_topic("contract-src")
    await create_topic(kafka_bootstrap, topic, partitions=5)
    for partition in range(5):
        await produce(kafka_bootstrap, topic, [f"{partition}:{i}".encode() for i in range(15)], partition=partition)
    await check_replayable_source(
        lambda: KafkaSource(kafka_bootstrap, topics=topic, bounded=True, value_deserializer="str"), batch_size=4
    )


# -- exactly-once sinks -----------------------------------------------------------------------


async def test_the_exactly_once_file_sink_keeps_the_contract(tmp_path: Path) -> None:
    directories = iter(tmp_path / f"out-{n}" for n in range(10))

    async def read(sink: Any) -> list[str]:
        return read_committed_lines(sink.directory) if Path(sink.directory).exists() else []

    await check_exactly_once_sink(lambda: ExactlyOnceFileSink(next(directories)), read, records=LINES)


async def test_the_exactly_once_sqlite_sink_keeps_the_contract(tmp_path: Path) -> None:
    databases = iter(tmp_path / f"out-{n}.db" for n in range(10))

    def make() -> ExactlyOnceSqliteSink:
        return ExactlyOnceSqliteSink(
            next(databases), table="lines", create_sql="CREATE TABLE IF NOT EXISTS lines(line TEXT NOT NULL)",
            statement="INSERT INTO lines(line) VALUES (?)", row_fn=lambda line: (line,),
        )

    async def read(sink: Any) -> list[str]:
        def select() -> list[str]:
            if not Path(sink.db_path).exists():
                return []
            with sqlite3.connect(sink.db_path) as db:
                exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'lines'").fetchone()
                return [row[0] for row in db.execute("SELECT line FROM lines")] if exists else []

        return await asyncio.to_thread(select)

    await check_exactly_once_sink(make, read, records=LINES)


async def test_the_kafka_exactly_once_sink_keeps_the_contract(kafka_bootstrap: str) -> None:
    topics = [unique_topic("contract-sink") for _ in range(3)]  # one per step of the check
    for topic in topics:
        await create_topic(kafka_bootstrap, topic, partitions=2)
    made = iter(topics)

    def make() -> KafkaSink:
        topic = next(made)
        return KafkaSink(
            kafka_bootstrap, topic, delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE,
            transactional_id_prefix=topic, value_serializer="str",
        )

    async def read(sink: Any) -> list[str]:
        return [record.value.decode() for record in await read_committed(kafka_bootstrap, sink.topic)]

    await check_exactly_once_sink(make, read, records=LINES[:24])


async def test_the_mysql_xa_sink_keeps_the_contract(mysql_url: str) -> None:
    def make() -> MySqlSink:
        table = f"contract_{secrets.token_hex(3)}"
        execute(mysql_url, f"CREATE TABLE {table} (line VARCHAR(32) NOT NULL) ENGINE=InnoDB")
        return MySqlSink(
            mysql_url, table=table, statement=f"INSERT INTO {table} (line) VALUES (%s)",
            row_fn=lambda line: (line,), delivery_guarantee=DeliveryGuarantee.EXACTLY_ONCE, batch_size=7,
        )

    async def read(sink: Any) -> list[str]:
        return [row[0] for row in query(mysql_url, f"SELECT line FROM {sink.table}")]

    await check_exactly_once_sink(make, read, records=LINES[:30])


async def test_the_custom_two_phase_commit_sink_example_keeps_the_contract(tmp_path: Path) -> None:
    custom = example("custom_2pc_sink")
    directories = iter(tmp_path / f"out-{n}" for n in range(10))

    def make() -> Any:
        directory = next(directories)
        directory.mkdir()
        return custom.JsonLinesSink(directory)

    async def read(sink: Any) -> list[Any]:
        return list(custom.read_committed(sink.directory))

    records = [{"order": i, "amount": i * 3} for i in range(20)]
    await check_exactly_once_sink(make, read, records=records)


# -- the kit catches what it promises to catch ---------------------------------------------------


class ReplayingSource:
    """A CollectionSource whose snapshots store the position of the LAST record read."""

    def __init__(self) -> None:
        self.inner = CollectionSource(list(range(40)), batch_size=5)

    def create_reader(self, ctx: SourceContext) -> CollectionReader:
        reader = self.inner.create_reader(ctx)
        snapshot = reader.snapshot_splits

        def off_by_one(checkpoint_id: int) -> list[Any]:
            return [{**s, "next": max(0, s["next"] - 1)} for s in snapshot(checkpoint_id)]

        reader.snapshot_splits = off_by_one  # type: ignore[method-assign]
        return reader


async def test_the_kit_catches_a_source_that_replays_its_last_record() -> None:
    with pytest.raises(ContractViolation, match=r"step 2 \(resume\).*read twice"):
        await check_replayable_source(ReplayingSource)


class EagerSink:
    """Writes straight through: visible before any commit (not exactly-once)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def create_writer(self, ctx: SinkContext) -> Any:
        from streamflow.api.connector import SinkWriterBase

        rows = self.rows

        class Writer(SinkWriterBase):
            async def write(self, records: list[Any]) -> None:
                rows.extend(records)

        return Writer()


async def read_rows(sink: Any) -> list[Any]:
    return list(sink.rows)


async def test_the_kit_catches_a_sink_that_shows_records_before_the_commit() -> None:
    with pytest.raises(ContractViolation, match=r"step 1: records written, not yet pre-committed: 2 visible"):
        await check_exactly_once_sink(EagerSink, read_rows, records=[1, 2, 3, 4])


async def test_the_kit_catches_a_sink_that_commits_leftovers_instead_of_aborting_them(tmp_path: Path) -> None:
    custom = example("custom_2pc_sink")

    class CommitsLeftovers(custom.JsonLinesSink):  # type: ignore[misc, name-defined]
        """Publishes every staged file it finds at start-up, prepared for a completed
        checkpoint or not: the classic mistake of recovering by committing everything."""

        def create_writer(self, ctx: SinkContext) -> Any:
            writer = super().create_writer(ctx)

            async def publish_lingering() -> None:
                for path in writer.staging.iterdir():
                    os.replace(path, writer.directory / path.name)

            writer.abort_lingering = publish_lingering
            return writer

    directories = iter(tmp_path / f"out-{n}" for n in range(10))

    def make() -> Any:
        directory = next(directories)
        directory.mkdir()
        return CommitsLeftovers(directory)

    async def read(sink: Any) -> list[Any]:
        return list(custom.read_committed(sink.directory))

    with pytest.raises(ContractViolation, match=r"step 3: .* visible but not \(or not yet\) committed"):
        await check_exactly_once_sink(make, read, records=list(range(8)))
