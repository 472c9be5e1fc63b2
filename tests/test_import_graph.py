"""The import rules of docs/architecture.md hold: every import goes down a layer, no cycle
between packages or modules, the core imports no connector. Every import counts, also
inside functions and under ``if TYPE_CHECKING:`` (see streamflow.devtools.import_graph)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from streamflow.devtools.import_graph import (
    find_cycles,
    importers,
    layer_violations,
    module_graph,
    package_graph,
    read_layers,
)
from streamflow.devtools.typecheck import checkout

REPO = checkout()
MODULES = module_graph(REPO)
PACKAGES = package_graph(MODULES)
LAYERS = read_layers(REPO / "docs" / "architecture.md")
VIOLATION = re.compile(r"(\S+) \(layer \d+\) imports (\S+) \(layer")  # layer_violations' sentence


def test_the_layers_are_written_down_and_every_package_has_one() -> None:
    assert LAYERS["errors"] == 0 and LAYERS["core"] < LAYERS["state"] < LAYERS["runtime"] < LAYERS["datastream"]
    assert set(PACKAGES) <= set(LAYERS), sorted(set(PACKAGES) - set(LAYERS))


def test_every_import_goes_down_a_layer() -> None:
    problems = layer_violations(PACKAGES, LAYERS)
    details = [
        f"{problem}\n    " + "\n    ".join(importers(MODULES, *found.groups()))
        if (found := VIOLATION.match(problem))
        else problem
        for problem in problems
    ]
    assert not problems, "\n".join(details)


def test_no_package_cycle() -> None:
    assert find_cycles(PACKAGES) == []


def test_no_module_cycle() -> None:
    assert find_cycles(MODULES) == []


def test_the_core_imports_nothing_of_streamflow_but_errors_and_config() -> None:
    assert PACKAGES["core"] <= {"errors", "config"}


def test_nothing_below_the_tools_imports_connectors() -> None:
    users = sorted(p for p, imported in PACKAGES.items() if "connectors" in imported)
    # The public test kit runs the built-in connectors' contract; the command line turns
    # --exchange-bootstrap into the built-in Kafka exchange between a job's workers.
    assert users == ["cli", "testing"], users


def test_the_checker_sees_type_only_and_function_level_imports_and_cycles(tmp_path: Path) -> None:
    """The rules are only as good as the graph: a cycle hidden under TYPE_CHECKING or in a
    function, and an upward import, must be found."""
    files = {
        "streamflow/__init__.py": "",
        "streamflow/errors.py": "",
        "streamflow/core/__init__.py": "",
        "streamflow/core/a.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from streamflow.core.b import B
        """,
        "streamflow/core/b.py": """
            def make():
                from streamflow.core import a
                from streamflow.runtime.task import Task
        """,
        "streamflow/runtime/__init__.py": "",
        "streamflow/runtime/task.py": "from streamflow.core.a import *\nfrom ..errors import StreamflowError\n",
        "connectors/__init__.py": "from streamflow.core.b import make\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    modules = module_graph(tmp_path)
    assert modules["streamflow.runtime.task"] == {"streamflow.core.a", "streamflow.errors"}  # relative import too
    assert modules["streamflow.connectors"] == {"streamflow.core.b"}
    assert find_cycles(modules) == [["streamflow.core.a", "streamflow.core.b", "streamflow.runtime.task"]]
    packages = package_graph(modules)
    assert find_cycles(packages) == [["core", "runtime"]]
    layers = {"errors": 0, "core": 1, "runtime": 2, "connectors": 2}
    assert layer_violations(packages, layers) == [
        "package 'streamflow' has no layer: add it to a 'layer <n>' line of docs/architecture.md",
        "core (layer 1) imports runtime (layer 2): a package may only import packages of lower layers",
    ]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layered_package_exists(name: str) -> None:
    """A package renamed or removed must leave the document too."""
    assert name in PACKAGES, f"docs/architecture.md names {name!r}, which streamflow/ does not have"
