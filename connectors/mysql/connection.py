"""Where a MySQL sink connects, and how it tells a lost connection from a bad statement.

The client is aiomysql (see pyproject.toml for why). Every connection of a sink runs
with autocommit on (an XA transaction or an explicit BEGIN is the only transaction), in
READ COMMITTED: a prepared XA transaction keeps its locks until its checkpoint completes,
and the gap locks of REPEATABLE READ would let one subtask's prepared transaction block
another subtask's writes, which would in turn hold back that very checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import aiomysql
import pymysql

from streamflow.errors import ConfigError, ConnectorError

__all__ = [
    "TABLE_EXISTS", "MySqlAddress", "connect", "create_tables", "is_connection_lost", "parse_mysql_url",
    "table_exists",
]

# Client-side codes for a connection that broke: can't connect, server gone, lost during
# a query, and the server closing it (plus InterfaceError: used after it broke).
_LOST_CODES = frozenset({2003, 2006, 2013, 2055})
TABLE_EXISTS = ("SELECT 1 FROM information_schema.tables WHERE table_schema = COALESCE(%s, DATABASE()) "
                "AND table_name = %s")
"""Parameters: the schema (None: the connection's database) and the table name."""
_PASSTHROUGH_FORBIDDEN = ("host", "port", "user", "password", "db", "autocommit", "loop")


@dataclass(frozen=True, slots=True)
class MySqlAddress:
    """A parsed ``mysql://user:password@host:port/database`` URL."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def __str__(self) -> str:  # never print the password
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_mysql_url(url: str, what: str = "MySqlSink") -> MySqlAddress:
    """Parse ``mysql://user[:password]@host[:port]/database``; ConfigError if it is not one."""
    parts = urlsplit(url) if isinstance(url, str) else None
    database = unquote(parts.path.lstrip("/")) if parts is not None else ""
    if parts is None or parts.scheme not in ("mysql", "mariadb") or not parts.hostname or not database:
        raise ConfigError(
            f"{what} url must look like mysql://user:password@host:3306/database (with a "
            f"database), got {_redact(url)!r}",
            value=_redact(url),
        )
    if parts.query and dict(parse_qsl(parts.query)):
        raise ConfigError(f"{what} url takes no query parameters; pass connect_args instead",
                          value=_redact(url))
    return MySqlAddress(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=database,
    )


def check_connect_args(connect_args: Mapping[str, Any], what: str) -> None:
    for name in connect_args:
        if name in _PASSTHROUGH_FORBIDDEN:
            raise ConfigError(f"{what} connect_args must not set {name!r}; it comes from the url "
                              "or is owned by the sink", value=name)


async def connect(address: MySqlAddress, where: str, connect_args: Mapping[str, Any] | None = None
                  ) -> aiomysql.Connection:
    """A new autocommit, READ COMMITTED connection; ConnectorError (retriable) if the
    server cannot be reached, ConfigError if it refuses the login or the database."""
    try:
        conn = await aiomysql.connect(
            host=address.host, port=address.port, user=address.user, password=address.password,
            db=address.database, autocommit=True, charset="utf8mb4",
            **{"connect_timeout": 10, **(connect_args or {})},
        )
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        if code in (1044, 1045, 1049):  # access denied, bad login, unknown database
            raise ConfigError(f"{where}: {address} refused the connection: {exc.args[-1]}; "
                              "check the url's user, password and database", value=str(address)) from exc
        raise ConnectorError(f"{where}: cannot connect to {address}: {exc!r}; is the server up?",
                             url=str(address)) from exc
    except OSError as exc:
        raise ConnectorError(f"{where}: cannot connect to {address}: {exc!r}; is the server up?",
                             url=str(address)) from exc
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    except BaseException:
        conn.close()
        raise
    return conn


async def table_exists(conn: aiomysql.Connection, table: str) -> bool:
    """Whether ``table`` (``name`` or ``schema.name``) exists."""
    schema, _, name = table.rpartition(".")
    async with conn.cursor() as cur:
        await cur.execute(TABLE_EXISTS, (schema.strip("`") or None, name.strip("`")))
        return await cur.fetchone() is not None


async def create_tables(conn: aiomysql.Connection, *ddl: str) -> None:
    """Run ``CREATE TABLE IF NOT EXISTS`` statements of the sink's own tables, quietly:
    "already exists" is a note, which aiomysql would raise as a Python warning."""
    async with conn.cursor() as cur:
        await cur.execute("SET SESSION sql_notes = 0")
        for statement in ddl:
            await cur.execute(statement)
        await cur.execute("SET SESSION sql_notes = 1")


def is_connection_lost(exc: BaseException) -> bool:
    """True for errors that say the connection broke, not that the statement was wrong."""
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    if isinstance(exc, pymysql.err.OperationalError):
        return bool(exc.args) and exc.args[0] in _LOST_CODES
    return isinstance(exc, (ConnectionError, TimeoutError))


def _redact(url: Any) -> Any:
    if not isinstance(url, str) or "@" not in url:
        return url
    head, _, tail = url.rpartition("@")
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{tail}" if ":" in credentials else url
