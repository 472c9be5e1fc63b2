"""Writes ``savepoint/``: run ONCE with the code before exact state types, not in tests.

    git archive 66b5d21 | tar -x -C /tmp/old && python3 -m venv /tmp/old/.venv
    /tmp/old/.venv/bin/pip install -e /tmp/old
    /tmp/old/.venv/bin/python tests/integration/legacy_state/make_savepoint.py

It runs ``legacy_job`` at parallelism 2 until every event went through, stops it with a
savepoint and moves that savepoint here (orjson-encoded, format-1 state files).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from legacy_job import EVENTS, build  # noqa: E402

from streamflow import StreamEnvironment  # noqa: E402
from streamflow.connectors import CollectSink  # noqa: E402


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        env = StreamEnvironment(parallelism=2)
        env.enable_checkpointing(60.0, directory=Path(scratch) / "chk")
        build(env, CollectSink("legacy"), endless=True)
        client = env.execute_async("legacy")
        while sum(1 for r in CollectSink.results("legacy") if r[0] == "event") < len(EVENTS):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # every rule reached both subtasks long ago; be sure
        path = await client.stop_with_savepoint(Path(scratch) / "savepoints")
        await client.wait()
        target = HERE / "savepoint"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(path, target)
        print(f"wrote {target}: {sorted(p.name for p in target.iterdir())}")


if __name__ == "__main__":
    asyncio.run(main())
