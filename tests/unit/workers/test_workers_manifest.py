"""What the workers of a job agree on: the root manifest, the graph fingerprint, the lock."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from streamflow import StreamEnvironment
from streamflow.connectors import CollectSink
from streamflow.errors import ConfigError
from streamflow.workers.fingerprint import graph_fingerprint, graph_outline
from streamflow.workers.manifest import MANIFEST_FILE, WorkerLock, WorkerManifest, register_worker


def outline(parallelism: int = 2, count_uid: str = "count") -> list[str]:
    env = StreamEnvironment(parallelism=parallelism, max_parallelism=128)
    (
        env.from_collection([1, 2]).uid("src")
        .key_by(lambda x: x).reduce(lambda a, b: a + b).uid(count_uid)
        .sink_to(CollectSink("manifest-unit")).uid("out")
    )
    return graph_outline(env.job_graph(), default_parallelism=parallelism, max_parallelism=128)


def manifest(**changes: object) -> WorkerManifest:
    lines = outline()
    base = WorkerManifest(job_name="orders", workers=3, exchange_partitions=8, max_parallelism=128,
                          fingerprint=graph_fingerprint(lines), outline=tuple(lines))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_same_program_gives_the_same_fingerprint_in_every_process() -> None:
    assert graph_fingerprint(outline()) == graph_fingerprint(outline())
    code = (
        "from streamflow import StreamEnvironment\n"
        "from streamflow.connectors import CollectSink\n"
        "from streamflow.workers.fingerprint import graph_fingerprint, graph_outline\n"
        "env = StreamEnvironment(parallelism=2, max_parallelism=128)\n"
        "(env.from_collection([1, 2]).uid('src').key_by(lambda x: x).reduce(lambda a, b: a + b).uid('count')"
        ".sink_to(CollectSink('manifest-unit')).uid('out'))\n"
        "print(graph_fingerprint(graph_outline(env.job_graph(), default_parallelism=2, max_parallelism=128)))\n"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == graph_fingerprint(outline())
    assert graph_fingerprint(outline(parallelism=3)) != graph_fingerprint(outline())
    assert graph_fingerprint(outline(count_uid="total")) != graph_fingerprint(outline())


def test_the_first_worker_writes_the_manifest_and_the_others_adopt_it(tmp_path: Path) -> None:
    first = register_worker(tmp_path, manifest(), index=0)
    assert (tmp_path / MANIFEST_FILE).exists()
    second = register_worker(tmp_path, manifest(), index=1)  # its own generation is not used
    assert second == first and second.generation == first.generation
    assert WorkerManifest.from_json((tmp_path / MANIFEST_FILE).read_bytes(), tmp_path) == first


def test_workers_starting_together_agree_on_one_manifest(tmp_path: Path) -> None:
    results: list[WorkerManifest] = []
    barrier = threading.Barrier(8)

    def start(index: int) -> None:
        barrier.wait()
        results.append(register_worker(tmp_path, manifest(), index=index))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({m.generation for m in results}) == 1 and len(results) == 8
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE]  # no temporary file left


@pytest.mark.parametrize(
    "change, message",
    [
        ({"job_name": "billing"}, r"belongs to job 'orders'.*--checkpoint-dir"),
        ({"workers": 2}, r"workers 2, the job with 3.*start every worker with --workers 3.*savepoint"),
        ({"exchange_partitions": 4}, r"exchange partitions 4, the job with 8.*fixed for the job's life"),
        ({"max_parallelism": 256}, r"--max-parallelism 128"),
    ],
)
def test_a_worker_that_disagrees_is_told_what_to_change(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    register_worker(tmp_path, manifest(), index=0)
    with pytest.raises(ConfigError, match=message):
        register_worker(tmp_path, manifest(**change), index=1)


def test_a_changed_graph_is_refused_with_the_first_difference(tmp_path: Path) -> None:
    register_worker(tmp_path, manifest(), index=0)
    lines = outline(parallelism=3)
    changed = manifest(fingerprint=graph_fingerprint(lines), outline=tuple(lines))
    with pytest.raises(ConfigError, match=r"another job graph.*line 2.*parallelism 2.*parallelism 3.*same program"):
        register_worker(tmp_path, changed, index=2)


def test_an_unreadable_manifest_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text('{"format_version": 9}')
    with pytest.raises(ConfigError, match="format_version 9"):
        register_worker(tmp_path, manifest(), index=0)


def test_two_processes_with_one_worker_index_are_refused(tmp_path: Path) -> None:
    lock = WorkerLock(tmp_path, 1)
    lock.acquire()
    try:
        with pytest.raises(ConfigError, match=r"worker 1 is already running \(pid \d+ on host .*--worker-index 1"):
            WorkerLock(tmp_path, 1).acquire()
        code = (
            "import sys\nfrom pathlib import Path\nfrom streamflow.workers.manifest import WorkerLock\n"
            "from streamflow.errors import ConfigError\n"
            "try:\n    WorkerLock(Path(sys.argv[1]), 1).acquire()\nexcept ConfigError as e:\n"
            "    print(e); sys.exit(5)\n"
        )
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert other.returncode == 5 and "already running" in other.stdout
        with WorkerLock(tmp_path, 2) as other_index:  # another index is free
            assert other_index.held
    finally:
        lock.release()
    again = WorkerLock(tmp_path, 1)
    again.acquire()
    assert again.held
    again.release()


def test_a_lock_goes_with_a_killed_process(tmp_path: Path) -> None:
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom streamflow.workers.manifest import WorkerLock\n"
        "WorkerLock(Path(sys.argv[1]), 0).acquire()\nprint('locked', flush=True)\nos.kill(os.getpid(), 9)\n"
    )
    holder = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert holder.returncode == -9 and "locked" in holder.stdout
    lock = WorkerLock(tmp_path, 0)
    lock.acquire()
    lock.release()
