"""``mypy --strict`` passes over ``streamflow/`` and ``connectors/`` (as the installed
package ``streamflow.connectors``), so README's test command, and CI with it, keeps the
public API typed."""

from __future__ import annotations

import re

from streamflow.devtools.typecheck import checkout, typecheck


def test_mypy_strict_passes_over_streamflow_and_connectors() -> None:
    done = typecheck()
    assert done.returncode == 0, done.stdout
    found = re.search(r"Success: no issues found in (\d+) source files", done.stdout)
    assert found is not None, done.stdout
    repo = checkout()
    sources = [*(repo / "streamflow").rglob("*.py"), *(repo / "connectors").rglob("*.py")]
    assert int(found.group(1)) == len(sources)  # every module of both trees was checked
