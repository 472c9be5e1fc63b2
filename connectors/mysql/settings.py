"""What the MySQL sink writers read of their :class:`~streamflow.connectors.mysql.MySqlSink`.

Declared as a protocol so that the writers do not import the sink that makes them (the
sink module imports both writers to choose one per delivery guarantee).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiomysql

from streamflow.api.connector import SinkContext
from streamflow.connectors.mysql.connection import MySqlAddress
from streamflow.connectors.mysql.statements import StatementRunner

__all__ = ["MySqlSinkSettings"]


class MySqlSinkSettings(Protocol):
    @property
    def address(self) -> MySqlAddress: ...
    @property
    def statement(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def marker_table(self) -> str: ...
    @property
    def connect_args(self) -> Mapping[str, Any]: ...

    def runner(self, ctx: SinkContext) -> StatementRunner:
        """The statement runner of one subtask (names operator and subtask in errors)."""
        ...

    async def check_table(self, conn: aiomysql.Connection, where: str) -> None:
        """ConfigError unless the sink's table exists."""
        ...
