"""PrintSink and CollectSink driven through the SinkWriter protocol directly."""

from __future__ import annotations

import pytest

from streamflow.api.connector import SinkContext
from streamflow.connectors import CollectSink, PrintSink
from streamflow.errors import ConfigError


def ctx(subtask: int = 0, parallelism: int = 1) -> SinkContext:
    return SinkContext(job_name="j", operator_uid="dbg", subtask_index=subtask,
                       parallelism=parallelism, checkpointing=True)


async def test_print_sink_prints_with_prefix_and_subtask(capsys: pytest.CaptureFixture[str]) -> None:
    single = PrintSink(prefix="> ").create_writer(ctx())
    await single.open()
    await single.write(["a", 1])
    assert await single.snapshot(1) == []
    parallel = PrintSink().create_writer(ctx(subtask=1, parallelism=2))
    await parallel.write([{"k": 2}])
    await parallel.finish()
    await single.close()
    assert capsys.readouterr().out == "> a\n> 1\n2> {'k': 2}\n"


async def test_collect_sink_collects_per_name_across_subtasks() -> None:
    CollectSink.clear("t")
    writers = [CollectSink("t").create_writer(ctx(i, 2)) for i in range(2)]
    await writers[0].write([1, 2])
    await writers[1].write([3])
    assert await writers[0].snapshot(1) == []
    assert CollectSink.results("t") == [1, 2, 3]
    assert CollectSink.results("other") == []
    CollectSink.clear("t")
    assert CollectSink.results("t") == []
    await writers[0].write([4])  # a writer keeps working after a clear
    assert CollectSink.results("t") == [4]
    CollectSink.clear("t")


def test_collect_sink_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="non-empty str name"):
        CollectSink("")
