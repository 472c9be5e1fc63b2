"""The basic types every other package shares: ids, stream elements, the clock.

Nothing here imports any other part of streamflow except :mod:`streamflow.errors` and
:mod:`streamflow.config`, so that the state, checkpoint, API and runtime packages can
all build on it without importing each other (the import rules are in
``docs/architecture.md`` and enforced by ``tests/test_import_graph.py``).
"""
