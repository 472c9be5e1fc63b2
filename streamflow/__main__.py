"""``python -m streamflow``: the command line, for when the ``streamflow`` script is not
on PATH (a virtualenv that is not activated, a checkout run in place)."""

from __future__ import annotations

import sys

from streamflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
