"""A test kit for MySQL / MariaDB: databases of their own, queries, prepared XA
transactions. Synchronous (PyMySQL): tests and harnesses call it between job runs."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymysql

from streamflow.connectors.mysql.connection import TABLE_EXISTS, parse_mysql_url
from streamflow.connectors.mysql.xids import Xid, sink_key

__all__ = [
    "connect", "create_database", "drop_database", "execute", "prepared_xids", "prepared_xids_of", "query",
    "table_exists",
]


def _server_kwargs(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306,
            "user": parts.username or "root", "password": parts.password or ""}


def create_database(server_url: str, prefix: str = "streamflow_test") -> str:
    """Create a new, empty database on the server of ``server_url``; return its url."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with closing(pymysql.connect(**_server_kwargs(server_url), autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def drop_database(url: str) -> None:
    name = parse_mysql_url(url, "drop_database").database
    with closing(pymysql.connect(**_server_kwargs(url), autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def connect(url: str) -> Iterator[pymysql.connections.Connection]:
    address = parse_mysql_url(url, "connect")
    conn = pymysql.connect(host=address.host, port=address.port, user=address.user,
                           password=address.password, database=address.database, autocommit=True)
    with closing(conn):
        yield conn


def query(url: str, sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def execute(url: str, *statements: str) -> None:
    with connect(url) as conn, conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)


def prepared_xids(url: str) -> list[tuple[int, str, str]]:
    """Every prepared XA transaction on the server: (formatID, gtrid, bqual)."""
    out = []
    for format_id, gtrid_length, _, data in query(url, "XA RECOVER"):
        raw = data if isinstance(data, bytes) else str(data).encode()
        out.append((int(format_id), raw[: int(gtrid_length)].decode(), raw[int(gtrid_length):].decode()))
    return out


def prepared_xids_of(url: str, job_name: str, operator_uid: str) -> list[Xid]:
    """The prepared XA transactions of one MySqlSink (job, uid) writing to ``url``'s
    database: after a finished job there must be none."""
    key = sink_key(job_name, operator_uid, parse_mysql_url(url, "prepared_xids_of").database)
    return [x for x in (Xid(g, b, f) for f, g, b in prepared_xids(url)) if x.belongs_to(key)]


def table_exists(url: str, table: str) -> bool:
    return bool(query(url, TABLE_EXISTS, (None, table)))
