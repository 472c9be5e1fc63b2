"""State that cannot be serialized declines the checkpoint, in a running job: the
checkpoint never completes, the task logs why (operator, subtask, state, type) and, past
``tolerable_failures``, the job fails with that reason instead of crashing elsewhere or
going on silently."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from streamflow import JobFailedError, KeyedProcessFunction, RestartStrategy, StreamEnvironment
from streamflow.connectors import CollectionSource, CollectSink
from streamflow.errors import TooManyCheckpointFailuresError
from streamflow.state import JsonSerializer, ValueStateDescriptor


async def slow(record: Any) -> Any:
    await asyncio.sleep(0.002)  # periodic checkpoints fall while records flow
    return record


class Keep(KeyedProcessFunction):
    """Keeps one value per key; the record ``bad`` is stored as given."""

    def __init__(self, descriptor: ValueStateDescriptor[Any]) -> None:
        self.descriptor = descriptor

    def open(self, ctx: Any) -> None:
        self.state = ctx.get_state(self.descriptor)

    def process_element(self, record: Any, ctx: Any, out: Any) -> None:
        key, value = record
        self.state.update(value() if callable(value) else value)
        out.collect(key)


def job(tmp_path: Path, descriptor: ValueStateDescriptor[Any], bad: Any) -> StreamEnvironment:
    records = [(f"k{i % 3}", i) for i in range(60)] + [("culprit", bad)] + [(f"k{i % 3}", i) for i in range(400)]
    env = StreamEnvironment(parallelism=2)
    env.enable_checkpointing(0.02, directory=tmp_path / "chk")
    env.set_restart_strategy(RestartStrategy.none())
    (
        env.from_source(CollectionSource(records, batch_size=5), name="in").uid("in")
        .map(slow).uid("slow")
        .key_by(lambda r: r[0])
        .process(Keep(descriptor)).uid("keep")
        .sink_to(CollectSink(f"serialization::{tmp_path.name}")).uid("out")
    )  # fmt: skip
    return env


@pytest.mark.parametrize(
    ("descriptor", "bad", "message"),
    [
        (ValueStateDescriptor[Any]("v"), lambda: (lambda x: x),
         r"operator 'keep' \(subtask \d\): keyed state 'v' \(key 'culprit'\) holds a value of type function that "
         r"cannot be pickled"),
        (ValueStateDescriptor[Any]("doc", serializer=JsonSerializer()), (1, 2),
         r"operator 'keep' \(subtask \d\): keyed state 'doc' \(key 'culprit'\) cannot be written to the snapshot by "
         r"its serializer 'json' \(a value of type tuple\): value is a tuple"),
    ],
    ids=["lambda", "json-tuple"],
)
async def test_unserializable_state_declines_the_checkpoint_and_fails_the_job_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, descriptor: Any, bad: Any, message: str
) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(JobFailedError) as caught:
        await job(tmp_path, descriptor, bad).execute("unserializable")
    CollectSink.clear(f"serialization::{tmp_path.name}")
    failure = caught.value.__cause__
    assert isinstance(failure, TooManyCheckpointFailuresError), repr(failure)
    assert "more than tolerable_failures=0" in str(failure)
    assert re.search(message, str(failure)), str(failure)
    declines = [r for r in caplog.records if r.levelno == logging.ERROR and "declines checkpoint" in r.getMessage()]
    assert declines and re.search(message, declines[0].getMessage())
    assert not (tmp_path / "chk" / f"chk-{failure.checkpoint_id}" / "_metadata").exists()  # never completed
