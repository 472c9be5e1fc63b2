"""``mypy --strict`` over ``streamflow/`` and ``connectors/``, as the one package users import.

``connectors/`` is installed as ``streamflow.connectors`` (a setuptools package-dir
mapping), and mypy cannot follow that mapping: run on the checkout it sees no
``streamflow.connectors`` at all. So this builds the package as an installation lays it
out, in a temporary directory of symbolic links (``streamflow/<entry>`` to each entry
of the checkout's ``streamflow/``, ``streamflow/connectors`` to ``connectors/``), and
runs ``mypy -p streamflow`` there with the project's configuration (``pyproject.toml``).
Reported paths are the checkout's. ``tests/test_typing.py`` runs it in the test suite::

    python -m streamflow.devtools.typecheck [more mypy arguments]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["checkout", "link_package", "main", "typecheck"]

_CONNECTORS_PATH = re.compile(r"^streamflow/connectors/", re.MULTILINE)


def checkout() -> Path:
    """The checkout this module runs from (an editable install points into it)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "connectors").is_dir():
        raise RuntimeError(
            f"{root} is not a streamflow checkout (no pyproject.toml and connectors/ there): the type check "
            "runs on the sources, from a clone with `pip install -e .`"
        )
    return root


def link_package(repo: Path, into: Path) -> Path:
    """Lay out ``streamflow`` in ``into`` as installed, by symbolic links; returns it."""
    package = into / "streamflow"
    package.mkdir()
    for entry in (repo / "streamflow").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "connectors").symlink_to(repo / "connectors")
    return package


def typecheck(extra: Sequence[str] = (), *, files: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run mypy over the linked package (or over ``files``, programs that import it);
    its output with the checkout's paths."""
    repo = checkout()
    with tempfile.TemporaryDirectory(prefix="streamflow-typecheck-") as work:
        root = Path(work)
        link_package(repo, root)
        done = subprocess.run(
            [
                sys.executable, "-m", "mypy",
                "--config-file", str(repo / "pyproject.toml"),
                "--cache-dir", str(root / "cache"),
                *extra,
                *(files or ("-p", "streamflow")),
            ],
            cwd=root, capture_output=True, text=True, check=False,
        )  # fmt: skip
    output = _CONNECTORS_PATH.sub("connectors/", done.stdout + done.stderr)
    return subprocess.CompletedProcess(done.args, done.returncode, output, "")


def main(argv: Sequence[str] | None = None) -> int:
    done = typecheck(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(done.stdout)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
