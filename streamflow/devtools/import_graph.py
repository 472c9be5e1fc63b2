"""The import graph of ``streamflow/`` and ``connectors/``, checked against the layering.

The layering is written down once, in ``docs/architecture.md`` (section "Package map and
import rules": one line ``layer <n>  <package> ...`` per layer), and this module reads
it from there. The rules it checks, which ``tests/test_import_graph.py`` runs in the
suite:

1. a package imports only itself and packages of lower layers (so ``core`` imports
   nothing but ``errors`` and ``config``, and nothing below ``connectors`` imports
   ``connectors``);
2. no cycle between packages, and none between modules.

Every import counts: at the top of a module, inside a function, and under
``if TYPE_CHECKING:``. A cycle through type annotations is still one a reader must hold
in mind at once, and mypy follows it; the way out is a protocol declaring what one side
needs (see the ``*Settings`` protocols of the connectors). An import of a package counts
as an import of its ``__init__`` module; importing ``a.b.c`` does not count as
importing ``a`` or ``a.b`` (Python runs them, but everything would depend on
``streamflow/__init__.py`` then).

Packages are the first level below ``streamflow`` (``runtime``, ``state``, ...);
``connectors/`` is the package ``connectors`` (it installs as ``streamflow.connectors``);
the modules at the top (``errors``, ``config``, ``cli``, ``__main__``) count as packages
of their own, and ``streamflow/__init__.py``, the public API, is the package
``streamflow``. Run ``python -m streamflow.devtools.import_graph`` to see the graph.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "find_cycles",
    "layer_violations",
    "module_graph",
    "package_graph",
    "package_of",
    "read_layers",
]

Graph = dict[str, set[str]]

_LAYER_LINE = re.compile(r"^layer\s+(\d+)\s+(.+?)\s*$")
_ROOT = "streamflow"
_CONNECTORS = "streamflow.connectors"


def module_graph(repo: Path) -> Graph:
    """Every module of ``streamflow/`` and ``connectors/`` and the modules of both it imports."""
    files = _module_files(repo)
    graph: Graph = {}
    for name, (path, is_package) in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {
            target
            for imported in _imports(tree, name, is_package)
            if (target := _known(imported, files)) is not None and target != name
        }
    return graph


def package_of(module: str) -> str:
    """The package ``module`` belongs to for the layering (see the module docstring)."""
    if module == _ROOT:
        return _ROOT
    if module == _CONNECTORS or module.startswith(_CONNECTORS + "."):
        return "connectors"
    return module.split(".")[1]


def package_graph(modules: Graph) -> Graph:
    """Which packages import which (a package's own modules left out)."""
    graph: Graph = {package_of(m): set() for m in modules}
    for module, imported in modules.items():
        source = package_of(module)
        graph[source].update(package_of(t) for t in imported if package_of(t) != source)
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def read_layers(architecture: Path) -> dict[str, int]:
    """Package -> layer, from the ``layer <n>  <packages>`` lines of the document."""
    layers: dict[str, int] = {}
    for line in architecture.read_text().splitlines():
        match = _LAYER_LINE.match(line.strip())
        if match:
            for package in match.group(2).split():
                layers[package] = int(match.group(1))
    return layers


def layer_violations(packages: Graph, layers: Mapping[str, int]) -> list[str]:
    """One sentence per import that goes up or sideways, and per package without a layer."""
    problems = [
        f"package {name!r} has no layer: add it to a 'layer <n>' line of docs/architecture.md"
        for name in sorted(packages)
        if name not in layers
    ]
    for source, targets in sorted(packages.items()):
        for target in sorted(targets):
            if source in layers and target in layers and layers[target] >= layers[source]:
                problems.append(
                    f"{source} (layer {layers[source]}) imports {target} (layer {layers[target]}): a package may "
                    "only import packages of lower layers"
                )
    return problems


def importers(modules: Graph, source: str, target: str) -> list[str]:
    """The modules of package ``source`` that import package ``target`` (for messages)."""
    return sorted(
        f"{m} -> {t}"
        for m, imported in modules.items()
        if package_of(m) == source
        for t in imported
        if package_of(t) == target
    )


# -- reading the files ------------------------------------------------------------------


def _module_files(repo: Path) -> dict[str, tuple[Path, bool]]:
    files: dict[str, tuple[Path, bool]] = {}
    for directory, prefix in ((repo / "streamflow", _ROOT), (repo / "connectors", _CONNECTORS)):
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            files[".".join([prefix, *parts])] = (path, is_package)
    return files


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Every name imported anywhere in ``tree``: ``a.b`` for ``import a.b``, ``a.b.c``
    for ``from a.b import c`` (:func:`_known` finds the module: ``a.b.c`` if it is one,
    else ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", node.level, module, is_package)
            yield from (base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)


def _absolute(name: str, level: int, module: str, is_package: bool) -> str:
    if level == 0:
        return name
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def _known(name: str, files: Mapping[str, object]) -> str | None:
    """The module of ours that ``name`` is, or is in (``a.b.C`` -> ``a.b``), if any."""
    while name:
        if name in files:
            return name
        name = name.rpartition(".")[0]
    return None


def _describe(repo: Path, layers: Mapping[str, int]) -> str:
    modules = module_graph(repo)
    packages = package_graph(modules)
    lines = []
    for package in sorted(packages, key=lambda p: (-layers.get(p, -1), p)):
        lines.append(f"layer {layers.get(package, '?')!s:>2}  {package:<13} -> {', '.join(sorted(packages[package]))}")
    problems = layer_violations(packages, layers)
    problems += [f"package cycle: {' <-> '.join(c)}" for c in find_cycles(packages)]
    problems += [f"module cycle: {' <-> '.join(c)}" for c in find_cycles(modules)]
    lines.extend(["", *problems] if problems else ["", "no cycles, every import goes down"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[2]
    text = _describe(repo, read_layers(repo / "docs" / "architecture.md"))
    sys.stdout.write(text + "\n")
    return 1 if not text.endswith("every import goes down") else 0


if __name__ == "__main__":
    sys.exit(main())
