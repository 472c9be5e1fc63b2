"""Savepoint paths given as ``file://`` URIs (the ``flink run -s file:///...`` habit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.errors import ConfigError
from streamflow.savepoint.location import local_path
from streamflow.savepoint.restore import RestoreSettings


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("file:///tmp/sp/savepoint-job-3-ab12cd", "/tmp/sp/savepoint-job-3-ab12cd"),
        ("file:///tmp/my%20savepoints/100%25", "/tmp/my savepoints/100%"),
        ("FILE:///tmp/x", "/tmp/x"),
        ("file:/tmp/x", "/tmp/x"),  # the short form, and what Path("file:///tmp/x") prints
        ("file://localhost/tmp/x", "/tmp/x"),
        ("/tmp/plain path", "/tmp/plain path"),
        ("relative/dir", "relative/dir"),
        ("name:with-colon", "name:with-colon"),  # a relative path, not a URI
        ("~/sp", str(Path.home() / "sp")),
    ],
)
def test_paths_and_file_uris_name_the_same_directory(given: str, meant: str) -> None:
    assert local_path(given) == Path(meant)


def test_a_path_object_made_from_a_uri_is_read_as_the_uri() -> None:
    assert local_path(Path("file:///tmp/a%20b")) == Path("/tmp/a b")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("s3://bucket/sp", "savepoint path 's3://bucket/sp' is a 's3' URI; streamflow keeps savepoints and checkpoints "
                           "on local paths: pass a path or a file:// URI"),
        ("hdfs://namenode:8020/sp", "is a 'hdfs' URI"),
        ("file://db-host/sp", "names host 'db-host'; a file URI must be local: file:///absolute/path"),
        ("file:relative/sp", "is not an absolute file URI; write file:///absolute/path"),
    ],
)
def test_other_schemes_and_hosts_are_refused_by_name(given: str, message: str) -> None:
    with pytest.raises(ConfigError, match="savepoint path") as caught:
        local_path(given, "savepoint path")
    assert message in str(caught.value)
    assert caught.value.path == given


def test_restore_settings_take_a_file_uri() -> None:
    assert RestoreSettings(path="file:///srv/sp%201").path == Path("/srv/sp 1")  # type: ignore[arg-type]
