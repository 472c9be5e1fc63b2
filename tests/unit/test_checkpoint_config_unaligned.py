"""CheckpointConfig's unaligned options: refused at build time with what to change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streamflow.config import CheckpointConfig, CheckpointingMode
from streamflow.errors import ConfigError


def test_unaligned_and_an_aligned_timeout_are_accepted_and_normalised() -> None:
    config = CheckpointConfig(interval=1.0, unaligned=True, aligned_timeout=timedelta(milliseconds=250))
    assert config.unaligned and config.aligned_timeout == 0.25
    assert CheckpointConfig(interval=1.0).unaligned is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aligned_timeout": 1.0}, "aligned_timeout only applies to unaligned checkpoints: set unaligned=True"),
        ({"unaligned": True, "aligned_timeout": -1.0}, "aligned_timeout must be >= 0 seconds"),
        ({"unaligned": True, "mode": CheckpointingMode.AT_LEAST_ONCE}, "unaligned needs mode=EXACTLY_ONCE"),
        ({"unaligned": True, "max_concurrent": 2}, "one checkpoint in flight at a time.*set max_concurrent=1"),
        ({"unaligned": "yes"}, "unaligned must be True or False"),
    ],
)
def test_bad_unaligned_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CheckpointConfig(interval=1.0, **options)  # type: ignore[arg-type]
