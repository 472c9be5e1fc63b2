"""Async I/O benchmark: map_async next to a hand-written asyncio.gather loop.

What it measures: records per second through calls to a local service that answers each
request after 20 ms, with at most C requests in flight, for C in 1, 10, 100 and 1000:

- streamflow: a job, parallelism 1 (one worker), from_collection(range(N)) ->
  map_async(lookup, capacity=C) -> a discarding sink, checkpointing every 1 s into a
  fresh temp dir (the calls in flight go into every checkpoint);
- hand loop: ``asyncio.gather`` over the same N lookups, an ``asyncio.Semaphore(C)``
  around each, in the same process, nothing else.

Both use the same client (one TCP connection, requests multiplexed by id) against the
same service, which runs in a subprocess on 127.0.0.1 (a plain asyncio server: a
request is a line with an id, the answer the same line 20 ms later), so the service's
CPU is not the job's. The rate is N over the time from the first request to the last
answer, for both. N is about 3 s of the ideal rate (C / 20 ms), at least 200. Each
capacity runs its variants alternately, ``--repeats`` times; the median wins, and the
ratio streamflow / hand loop is the figure to compare across machines.

Goals (issue 14): >= 4,000 records/s at capacity 100 (the ideal is 5,000) and >= 0.8 of
the hand loop at every capacity.

Usage: python3 bench/async_io.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

DELAY = 0.020
CAPACITIES = (1, 10, 100, 1000)

SERVICE = r"""
import asyncio, sys

async def serve(reader, writer):
    loop = asyncio.get_running_loop()
    while line := await reader.readline():
        loop.call_later(DELAY, writer.write, line)

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

DELAY = float(sys.argv[1])
asyncio.run(main())
"""


class LookupClient:
    """One connection to the service; each call sends its id and waits for the echo.

    Records when the first call started and the last answer came, for the rate."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self, ctx: Any = None) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.waiting: dict[bytes, asyncio.Future[bytes]] = {}
        self.next_id = 0
        self.first: float | None = None
        self.last = 0.0
        self.answers = asyncio.get_running_loop().create_task(self._read_answers())

    async def _read_answers(self) -> None:
        while line := await self.reader.readline():
            future = self.waiting.pop(line, None)
            if future is not None and not future.done():
                future.set_result(line)

    async def __call__(self, record: int) -> int:
        if self.first is None:
            self.first = time.perf_counter()
        self.next_id += 1
        line = b"%d\n" % self.next_id
        future = asyncio.get_running_loop().create_future()
        self.waiting[line] = future
        self.writer.write(line)
        await future
        self.last = time.perf_counter()
        return record

    async def close(self) -> None:
        self.answers.cancel()
        self.writer.close()

    def rate(self, records: int) -> float:
        assert self.first is not None
        return records / (self.last - self.first)


class Recorded:
    """The job's function: a LookupClient per subtask, which the bench reads back."""

    clients: list[LookupClient] = []

    def __init__(self, port: int) -> None:
        self.client = LookupClient(port)

    async def open(self, ctx: Any) -> None:
        await self.client.open(ctx)
        Recorded.clients.append(self.client)

    async def __call__(self, record: int) -> int:
        return await self.client(record)

    async def close(self) -> None:
        await self.client.close()


async def hand_loop(port: int, capacity: int, records: int) -> float:
    client = LookupClient(port)
    await client.open()
    semaphore = asyncio.Semaphore(capacity)

    async def one(x: int) -> int:
        async with semaphore:
            return await client(x)

    await asyncio.gather(*(one(x) for x in range(records)))
    await client.close()
    return client.rate(records)


async def streamflow_job(port: int, capacity: int, records: int) -> tuple[float, int]:
    from streamflow import StreamEnvironment
    from streamflow.connectors import CollectionSource, DiscardingSink

    Recorded.clients = []
    with tempfile.TemporaryDirectory(prefix="bench-async-") as directory:
        env = StreamEnvironment(parallelism=1)
        env.enable_checkpointing(1.0, directory=directory)
        (env.from_source(CollectionSource(list(range(records)))).uid("numbers")
            .map_async(Recorded(port), capacity=capacity, timeout=30.0).uid("lookup")
            .sink_to(DiscardingSink()))
        result = await env.execute("bench-async")
    (client,) = Recorded.clients
    return client.rate(records), result.checkpoints_completed


def start_service() -> tuple[subprocess.Popen[str], int]:
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(DELAY)], stdout=subprocess.PIPE, text=True)
    assert service.stdout is not None
    return service, int(service.stdout.readline())


async def bench(repeats: int, quick: bool) -> None:
    service, port = start_service()
    try:
        print(f"service: answers after {DELAY * 1000:.0f} ms on 127.0.0.1:{port} (a subprocess)")
        print(f"{'capacity':>8} {'records':>8} {'ideal/s':>8} {'hand loop/s':>12} {'streamflow/s':>13} "
              f"{'ratio':>6} {'checkpoints':>11}")
        for capacity in CAPACITIES:
            ideal = capacity / DELAY
            records = max(200, int(ideal * (1.0 if quick else 3.0)))
            await hand_loop(port, capacity, min(records, 500))  # warm-up
            hand: list[float] = []
            ours: list[float] = []
            checkpoints: list[int] = []
            for _ in range(repeats):
                hand.append(await hand_loop(port, capacity, records))
                rate, completed = await streamflow_job(port, capacity, records)
                ours.append(rate)
                checkpoints.append(completed)
            h, s = statistics.median(hand), statistics.median(ours)
            print(f"{capacity:>8} {records:>8} {ideal:>8.0f} {h:>12.0f} {s:>13.0f} {s / h:>6.2f} "
                  f"{statistics.median(checkpoints):>11.0f}", flush=True)
    finally:
        service.terminate()
        service.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="about 1 s of records per run instead of 3")
    args = parser.parse_args()
    asyncio.run(bench(args.repeats, args.quick))


if __name__ == "__main__":
    main()
