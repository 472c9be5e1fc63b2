"""The package list, found rather than written by hand (the rest is in pyproject.toml).

``connectors/`` is installed as ``streamflow.connectors`` (the package-dir mapping in
pyproject.toml), so its packages are found in ``connectors/`` and named under
``streamflow``; a new subpackage of either tree needs no entry anywhere. The one folder
listed by hand is the dashboard's page (``streamflow/web/static``): files, not modules,
so it has no ``__init__.py`` for ``find_packages`` to see; its files are package data
(pyproject.toml).
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["streamflow", "streamflow.*"]),
        *(f"streamflow.{name}" for name in find_packages(include=["connectors", "connectors.*"])),
        "streamflow.web.static",
    ]
)
