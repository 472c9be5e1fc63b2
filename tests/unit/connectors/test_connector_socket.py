"""SocketTextSource against a real asyncio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from streamflow.api.connector import SourceContext
from streamflow.connectors import SocketTextSource
from streamflow.errors import ConfigError, ConnectorError


def ctx(parallelism: int = 1) -> SourceContext:
    return SourceContext(job_name="j", operator_uid="sock", subtask_index=0, parallelism=parallelism)


class Server:
    """Accepts one client; the test pushes bytes with ``send`` and ends with ``hang_up``."""

    def __init__(self) -> None:
        self.client: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def on_client(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.client.set_result(writer)

        self.server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def send(self, data: bytes) -> None:
        writer = await self.client
        writer.write(data)
        await writer.drain()

    async def hang_up(self) -> None:
        writer = await self.client
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    await srv.start()
    yield srv
    if srv.client.done():
        srv.client.result().close()
    assert srv.server is not None
    srv.server.close()
    await srv.server.wait_closed()


async def test_emits_lines_keeps_partial_lines_and_ends_on_close(server: Server) -> None:
    reader = SocketTextSource("127.0.0.1", server.port).create_reader(ctx())
    await reader.open()
    await server.send(b"hello world\r\nsec")
    batch = await reader.poll(100, 1.0)
    assert batch is not None and batch.records == ["hello world"] and batch.positions == [1]
    assert batch.split == f"127.0.0.1:{server.port}"

    started = time.monotonic()
    empty = await reader.poll(100, 0.05)  # no full line yet: returns within max_wait
    assert empty is not None and empty.records == []
    assert time.monotonic() - started < 1.0

    await server.send(b"ond\nthird\nfourth")
    got: list[str] = []
    while len(got) < 2:
        batch = await reader.poll(100, 1.0)
        assert batch is not None
        got += batch.records
    assert got == ["second", "third"]  # the partial line survived the timed-out poll
    assert reader.snapshot_splits(1) == []

    await server.hang_up()
    tail = await reader.poll(100, 1.0)
    assert tail is not None and tail.records == ["fourth"] and tail.positions == [4]
    assert await reader.poll(100, 1.0) is None
    await reader.close()


async def test_poll_respects_max_records(server: Server) -> None:
    reader = SocketTextSource(port=server.port).create_reader(ctx())
    await reader.open()
    await server.send(b"a\nb\nc\n")
    await asyncio.sleep(0.05)
    first = await reader.poll(2, 1.0)
    second = await reader.poll(2, 1.0)
    assert first is not None and second is not None
    assert (first.records, second.records, second.positions) == (["a", "b"], ["c"], [3])
    await reader.close()


def test_parallelism_must_be_one() -> None:
    with pytest.raises(ConfigError, match="parallelism 1"):
        SocketTextSource().create_reader(ctx(parallelism=2))


@pytest.mark.parametrize("port", [0, 70000, "9999"])
def test_bad_port_is_a_config_error(port: object) -> None:
    with pytest.raises(ConfigError, match="port"):
        SocketTextSource(port=port)  # type: ignore[arg-type]


async def test_no_server_is_a_connector_error_saying_what_to_do() -> None:
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reader = SocketTextSource(port=port).create_reader(ctx())
    with pytest.raises(ConnectorError, match=f"nc -lk {port}"):
        await reader.open()
