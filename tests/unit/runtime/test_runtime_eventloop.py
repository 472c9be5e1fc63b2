"""The choice of event loop (``streamflow.runtime.eventloop``): asyncio's or uvloop, from
an argument, ``--loop`` or ``$STREAMFLOW_LOOP``, and clear errors for a bad choice. Jobs
run here on uvloop from Python and from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import streamflow
from streamflow import StreamEnvironment
from streamflow.connectors import CollectionSource
from streamflow.connectors.debug import CollectSink
from streamflow.errors import ConfigError
from streamflow.runtime.eventloop import LOOP_VARIABLE, loop_factory

if sys.platform == "win32":  # pragma: no cover - uvloop has no Windows build
    pytest.skip("uvloop does not run on Windows", allow_module_level=True)

import uvloop  # noqa: E402  (the test extra installs it everywhere else)


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_default_is_asyncios_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    assert loop_factory() is None
    assert streamflow.run(loop_module()).startswith("asyncio")


def test_uvloop_by_argument_or_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert streamflow.run(loop_module(), loop="uvloop") == "uvloop"
    monkeypatch.setenv(LOOP_VARIABLE, "uvloop")
    assert streamflow.run(loop_module()) == "uvloop"
    assert streamflow.run(loop_module(), loop="asyncio").startswith("asyncio")  # the argument wins


def test_an_unknown_loop_is_a_config_error_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"loop='trio' is not an event loop streamflow runs on; use one of "
                                          r"\['asyncio', 'uvloop'\]"):
        loop_factory("trio")
    monkeypatch.setenv(LOOP_VARIABLE, "tokio")
    with pytest.raises(ConfigError, match=r"\$STREAMFLOW_LOOP='tokio' is not an event loop"):
        loop_factory()


def test_uvloop_missing_says_which_extra_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    main = loop_module()
    with pytest.raises(ConfigError, match=r"loop='uvloop' needs the uvloop package.*pip install "
                                          r"'streamflow\[uvloop\]'"):
        streamflow.run(main, loop="uvloop")
    assert main.cr_frame is None  # closed, not left to warn that it was never awaited


def test_a_job_runs_on_uvloop() -> None:
    out = "eventloop::a-job-runs-on-uvloop"
    CollectSink.clear(out)
    seen: list[str] = []

    def tag(word: str) -> str:
        seen.append(type(asyncio.get_running_loop()).__module__)
        return word.upper()

    async def job() -> None:
        env = StreamEnvironment(parallelism=2)
        env.from_source(CollectionSource(["a", "b", "c"]), name="words").map(tag).sink_to(CollectSink(out))
        await env.execute("on-uvloop")

    streamflow.run(job(), loop="uvloop")
    assert sorted(CollectSink.results(out)) == ["A", "B", "C"]
    assert set(seen) == {"uvloop"}
    CollectSink.clear(out)


BUILD = (
    "import asyncio\n"
    "from streamflow.connectors import CollectionSource, PrintSink\n"
    "def build(env):\n"
    "    loop = type(asyncio.get_running_loop()).__module__\n"
    "    env.from_source(CollectionSource([loop]), name='loop').sink_to(PrintSink())\n"
)


@pytest.mark.parametrize(("flag", "variable", "expected"), [
    (["--loop", "uvloop"], None, "uvloop"),
    ([], "uvloop", "uvloop"),
    (["--loop", "asyncio"], "uvloop", "asyncio"),
])
def test_streamflow_run_takes_the_loop_from_the_flag_or_the_environment(
    tmp_path: Path, flag: list[str], variable: str | None, expected: str
) -> None:
    (tmp_path / "loopjob.py").write_text(BUILD)
    env = {**os.environ, "STREAMFLOW_HOME": str(tmp_path / "home")}
    env.pop(LOOP_VARIABLE, None)
    if variable is not None:
        env[LOOP_VARIABLE] = variable
    done = subprocess.run([sys.executable, "-m", "streamflow", "run", "loopjob:build", "--no-control", *flag],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed, summary = done.stdout.strip().splitlines()[-2:]
    assert printed.startswith(expected)
    assert json.loads(summary)["status"] == "finished"


def test_streamflow_run_refuses_an_unknown_loop_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "loopjob.py").write_text(BUILD)
    env = {**os.environ, "STREAMFLOW_HOME": str(tmp_path / "home"), LOOP_VARIABLE: "tokio"}
    done = subprocess.run([sys.executable, "-m", "streamflow", "run", "loopjob:build", "--no-control"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "streamflow: $STREAMFLOW_LOOP='tokio' is not an event loop streamflow runs on" in done.stderr
