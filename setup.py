"""The package list, found rather than written by hand (the rest is in pyproject.toml).

``connectors/`` is installed as ``streamflow.connectors`` (the package-dir mapping in
pyproject.toml), so its packages are found in ``connectors/`` and named under
``streamflow``; a new subpackage of either tree needs no entry anywhere.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["streamflow", "streamflow.*"]),
        *(f"streamflow.{name}" for name in find_packages(include=["connectors", "connectors.*"])),
    ]
)
