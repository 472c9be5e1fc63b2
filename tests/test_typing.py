"""``mypy --strict`` passes over ``streamflow/`` and ``connectors/`` (as the installed
package ``streamflow.connectors``), so README's test command, and CI with it, keeps the
public API typed."""

from __future__ import annotations

import re
from pathlib import Path

from streamflow.devtools.typecheck import checkout, typecheck


def test_mypy_strict_passes_over_streamflow_and_connectors() -> None:
    done = typecheck()
    assert done.returncode == 0, done.stdout
    found = re.search(r"Success: no issues found in (\d+) source files", done.stdout)
    assert found is not None, done.stdout
    repo = checkout()
    sources = [*(repo / "streamflow").rglob("*.py"), *(repo / "connectors").rglob("*.py")]
    assert int(found.group(1)) == len(sources)  # every module of both trees was checked


USER_PROGRAM = '''
from streamflow import JobStatus, KeyedProcessFunction, RuntimeContext, StreamEnvironment, UserFunctionError
from streamflow.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from streamflow.windowing import TumblingEventTimeWindows


async def parse(line: str) -> int:
    return int(line)


class Count(KeyedProcessFunction):
    def open(self, ctx: RuntimeContext) -> None:
        reveal_type(ctx.get_state(ValueStateDescriptor("n", default=0)))
        reveal_type(ctx.get_state(ListStateDescriptor[str]("seen")))
        reveal_type(ctx.get_state(MapStateDescriptor[str, float]("totals")))


def build(env: StreamEnvironment) -> None:
    lines = env.from_collection(["1", "2"])
    reveal_type(lines)
    numbers = lines.map(parse)
    reveal_type(numbers)
    reveal_type(numbers.filter(lambda n: n > 1).map(float))
    reveal_type(lines.flat_map(str.split))
    keyed = numbers.key_by(lambda n: n % 2)
    reveal_type(keyed.reduce(lambda a, b: a + b).uid("sum"))
    reveal_type(keyed.process(Count()))
    reveal_type(keyed.window(TumblingEventTimeWindows.of(60.0)))
    reveal_type(keyed.window(TumblingEventTimeWindows.of(60.0)).reduce(lambda a, b: a + b))
    env.from_source(42)
    numbers.sink_to(print)


def fields(error: UserFunctionError, status: JobStatus) -> None:
    reveal_type(error.position)
    reveal_type(status.upper())
'''


def test_the_public_api_is_typed_for_users(tmp_path: Path) -> None:
    """What a user's type checker sees: element types through map, flat_map, filter,
    key_by and reduce; state handles typed by their descriptor; sources and sinks
    checked against the Source and Sink protocols; error fields declared."""
    program = tmp_path / "user_program.py"
    program.write_text(USER_PROGRAM)
    done = typecheck(files=[str(program)])
    revealed = [
        t.replace("builtins.", "")  # older mypy versions name builtins in full
        for t in re.findall(r'user_program\.py:\d+: note: Revealed type is "([^"]+)"', done.stdout)
    ]
    assert revealed == [
        "streamflow.state.keyed.ValueState[int]",
        "streamflow.state.keyed.ListState[str]",
        "streamflow.state.keyed.MapState[str, float]",
        "streamflow.datastream.stream.DataStream[str]",
        "streamflow.datastream.stream.DataStream[int]",
        "streamflow.datastream.stream.DataStream[float]",
        "streamflow.datastream.stream.DataStream[str]",
        "streamflow.datastream.stream.DataStream[int]",
        "streamflow.datastream.stream.DataStream[Any]",
        "streamflow.datastream.windowed.WindowedStream[int, streamflow.datastream.stream.DataStream[Any]]",
        "streamflow.datastream.stream.DataStream[Any]",
        "str | None",
        "str",
    ], done.stdout
    errors = re.findall(r"user_program\.py:\d+: error: (.+)", done.stdout)
    assert len(errors) == 2, done.stdout
    assert '"from_source" of "StreamEnvironment" has incompatible type "int"; expected "Source"' in errors[0]
    assert '"sink_to" of "DataStream" has incompatible type' in errors[1] and 'expected "Sink"' in errors[1]
