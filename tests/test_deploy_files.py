"""The deployment files of docker/ for a job on several workers are valid YAML and run
the right command: the command line accepts it, the worker count agrees with the
replicas, and each Kubernetes pod gets its ordinal as worker index. (No Docker engine or
cluster runs here: this is what can be checked without one.)"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from streamflow.cli import parser

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def run_args(command: list[str]) -> Any:
    assert command[:2] == ["streamflow", "run"], command
    return parser().parse_args(command[1:])


def test_the_compose_file_runs_three_supervised_workers_with_an_exchange() -> None:
    compose = yaml.safe_load((DOCKER / "compose.workers.yaml").read_text())
    service = compose["services"]["workers"]
    args = run_args([str(part) for part in service["command"]])
    assert args.workers == 3 and args.worker_index is None  # the supervisor starts all three
    assert args.exchange_bootstrap == service["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert args.checkpoint_interval is not None and args.checkpoint_dir is not None
    mounted = {volume.split(":")[1] for volume in service["volumes"]}
    assert any(str(args.checkpoint_dir).startswith(path) for path in mounted)
    assert set(compose["volumes"]) >= {volume.split(":")[0] for volume in service["volumes"]}


def test_the_statefulset_gives_each_pod_its_ordinal_as_worker_index() -> None:
    documents = list(yaml.safe_load_all((DOCKER / "kubernetes" / "streamflow-workers.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in documents}
    assert set(kinds) == {"PersistentVolumeClaim", "Service", "StatefulSet"}
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]  # one root for all pods
    stateful = kinds["StatefulSet"]
    replicas = stateful["spec"]["replicas"]
    container = stateful["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    script = container["args"][0]
    assert script.startswith("exec streamflow run ")
    for ordinal in range(replicas):
        pod = f"{stateful['metadata']['name']}-{ordinal}"
        shown = subprocess.run(  # the shell expands the index as the pod's does
            ["/bin/sh", "-c", "printf '%s\\n' " + script.removeprefix("exec ")],
            env={"POD_NAME": pod}, capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        args = run_args(shown)
        assert (args.workers, args.worker_index) == (replicas, ordinal)
        assert args.exchange_bootstrap and args.checkpoint_interval is not None
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    volumes = stateful["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == claim
