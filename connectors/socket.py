"""An unbounded source of text lines from a TCP server, for demos (like Flink's socketTextStream).

Delivery guarantee: AT-MOST-ONCE. A socket cannot replay: lines that arrived after the
last completed checkpoint are gone when the job fails and restarts from it, so their
effect on state and on exactly-once sinks is lost (an at-least-once sink may already
show it). Lines are never duplicated by this source. Use a file or Kafka source when
results must survive failures.
"""

from __future__ import annotations

import asyncio
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

from streamflow.api.connector import SourceBatch, SourceContext
from streamflow.errors import ConfigError, ConnectorError

__all__ = ["SocketTextReader", "SocketTextSource"]

_READ_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class SocketTextSource:
    """Connect as a client to ``host:port`` and emit each line received, without its
    ``\\n``/``\\r\\n``. Ends when the server closes the connection.

    Run a server with ``nc -lk 9999`` and type lines into it. Parallelism must be 1 (one
    connection). Bytes that are not valid ``encoding`` become U+FFFD rather than failing
    the job, since a failed line could not be replayed anyway. Split state: none.
    Positions are 1-based line numbers within the connection. Keeps no state
    (``stateful = False``): it needs no ``.uid(...)`` for savepoints. Cannot be split
    (``splittable = False``): a job of several workers refuses it at start-up.
    """

    stateful: ClassVar[bool] = False
    splittable: ClassVar[bool] = False
    host: str = "127.0.0.1"
    port: int = 9999
    _: KW_ONLY
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError(
                f"SocketTextSource port must be an int in 1..65535, got {self.port!r}",
                value=self.port,
            )
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"SocketTextSource host must be a non-empty str, got {self.host!r}", value=self.host)
        try:
            "".encode(self.encoding)
        except LookupError as exc:
            raise ConfigError(f"SocketTextSource: unknown encoding {self.encoding!r}", value=self.encoding) from exc

    def create_reader(self, ctx: SourceContext) -> SocketTextReader:
        if ctx.parallelism != 1:
            raise ConfigError(
                f"SocketTextSource {ctx.operator_uid!r} must run with parallelism 1 (one "
                f"connection), got {ctx.parallelism}; set .set_parallelism(1) on the source",
                operator=ctx.operator_uid,
                value=ctx.parallelism,
            )
        return SocketTextReader(self.host, self.port, self.encoding)


class SocketTextReader:
    """Buffers received bytes itself, so a poll timing out never loses a partial line."""

    def __init__(self, host: str, port: int, encoding: str) -> None:
        self._host = host
        self._port = port
        self._encoding = encoding
        self._split = f"{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()
        self._eof = False
        self._line = 1  # number of the next line

    async def open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            raise ConnectorError(
                f"SocketTextSource cannot connect to {self._split}: {exc}; is a server "
                f"listening? For a demo run `nc -lk {self._port}` first.",
                host=self._host,
                port=self._port,
            ) from exc

    async def poll(self, max_records: int, max_wait: float) -> SourceBatch | None:
        if self._reader is None:
            raise ConnectorError(f"SocketTextSource {self._split}: poll before open", host=self._host)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, max_wait)
        while True:
            records = self._take_lines(max(1, max_records))
            if records:
                first = self._line - len(records)
                return SourceBatch(records, list(range(first, self._line)), self._split)
            if self._eof:
                if self._buffer:  # the server closed after a line without newline
                    self._buffer.extend(b"\n")
                    continue
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return SourceBatch([], [], self._split)
            try:
                # Cancelling read() loses nothing: data stays in the StreamReader buffer.
                data = await asyncio.wait_for(self._reader.read(_READ_SIZE), remaining)
            except TimeoutError:
                return SourceBatch([], [], self._split)
            except OSError as exc:
                raise ConnectorError(
                    f"SocketTextSource lost the connection to {self._split}: {exc}; the lines "
                    "since the last checkpoint are lost (a socket cannot replay)",
                    host=self._host,
                    port=self._port,
                ) from exc
            if data:
                self._buffer.extend(data)
            else:
                self._eof = True

    def _take_lines(self, limit: int) -> list[Any]:
        buf = self._buffer
        end = buf.rfind(b"\n")
        if end < 0:
            return []
        raw = bytes(buf[: end + 1]).split(b"\n")[:-1]
        if len(raw) > limit:
            raw = raw[:limit]
            consumed = sum(len(r) + 1 for r in raw)
        else:
            consumed = end + 1
        del buf[:consumed]
        self._line += len(raw)
        encoding = self._encoding
        return [
            (r[:-1] if r.endswith(b"\r") else r).decode(encoding, errors="replace") for r in raw
        ]

    def snapshot_splits(self, checkpoint_id: int) -> list[Any]:
        return []  # nothing can be replayed, so nothing to remember

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # the peer may already be gone; closing is best effort
