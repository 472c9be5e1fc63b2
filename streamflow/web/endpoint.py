"""Where a job's HTTP endpoint listens: validated when the job is configured."""

from __future__ import annotations

from dataclasses import dataclass

from streamflow.errors import ConfigError

__all__ = ["HttpEndpoint"]


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    """Where to listen: ``port`` 0 lets the system pick a free one."""

    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"a port is a number from 0 to 65535 (0: pick a free one), got {self.port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"a host is an address or name such as '127.0.0.1', got {self.host!r}")
