"""The peer section's load generator: a raw-socket HTTP/1.1 keep-alive client on Trio, the same
for Alertmanager and pagerd. Requests are encoded before the clock starts; each connection sends
one request and reads its whole response before the next (no pipelining); connections are
opened before the clock starts. It parses only what it must: the status, `content-length`, or
chunks.

Its own cost is measured in the same run (`Run.cpu_s`, the generator's CPU during the run), and
against a bare Trio HTTP sink (`receiver.py`), so a figure it bounds can be told apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs
import trio


def request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1"]
    if body:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@attrs.define
class Run:
    seconds: float = 0.0
    requests: int = 0
    failed: int = 0
    """Answers other than 2xx (a 429 or 503 would make a rate meaningless: reported, not hidden)."""
    cpu_s: float = 0.0
    latencies_ms: list[float] = attrs.field(factory=list)
    statuses: dict[int, int] = attrs.field(factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if not 200 <= status < 300:
            self.failed += 1


class Connection:
    """One keep-alive connection; opened again when the server closes it after a response
    (hypercorn does after 1,000 requests on one connection: `keep_alive_max_requests`)."""

    def __init__(self, port: int, stream: trio.SocketStream) -> None:
        self.port = port
        self.stream = stream
        self.buffer = bytearray()
        self.closing = False
        self.reopened = 0

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(port, await trio.open_tcp_stream("127.0.0.1", port))

    async def exchange(self, data: bytes) -> int:
        """Send one request, read its whole response: its status."""
        if self.closing:
            await self.stream.aclose()
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer.clear()
            self.closing = False
            self.reopened += 1
        await self.stream.send_all(data)
        end = await self._until(b"\r\n\r\n")
        head = bytes(self.buffer[:end]).lower()
        del self.buffer[: end + 4]
        status = int(head[9:12])
        self.closing = b"connection: close" in head
        at = head.find(b"content-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else None])
            await self._fill(length)
            del self.buffer[:length]
        elif b"chunked" in head:
            while True:
                end = await self._until(b"\r\n")
                size = int(bytes(self.buffer[:end]).split(b";")[0], 16)
                del self.buffer[: end + 2]
                await self._fill(size + 2)
                del self.buffer[: size + 2]
                if size == 0:
                    break
        return status

    async def _more(self) -> None:
        data = await self.stream.receive_some(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    async def _until(self, mark: bytes) -> int:
        while (end := self.buffer.find(mark)) < 0:
            await self._more()
        return end

    async def _fill(self, length: int) -> None:
        while len(self.buffer) < length:
            await self._more()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _open(port: int, connections: int) -> list[Connection]:
    opened: list[Connection] = []
    async with trio.open_nursery() as nursery:
        for _ in range(connections):

            async def one() -> None:
                opened.append(await Connection.open(port))

            nursery.start_soon(one)
    return opened


async def closed_loop(
    port: int, connections: int, seconds: float, requests: Sequence[bytes]
) -> Run:
    """Each of `connections` clients sends the next of `requests` (cycling) as soon as it has
    the answer to its last, for `seconds`."""
    opened = await _open(port, connections)
    run = Run()
    cpu = time.process_time()
    start = trio.current_time()
    deadline = start + seconds

    async def client(k: int, conn: Connection) -> None:
        i = k
        while trio.current_time() < deadline:
            sent = time.perf_counter()
            status = await conn.exchange(requests[i % len(requests)])
            run.latencies_ms.append((time.perf_counter() - sent) * 1000)
            run.requests += 1
            run.count(status)
            i += connections

    async with trio.open_nursery() as nursery:
        for k, conn in enumerate(opened):
            nursery.start_soon(client, k, conn)
    run.seconds = trio.current_time() - start
    run.cpu_s = time.process_time() - cpu
    for conn in opened:
        await conn.aclose()
    return run


async def each_once(port: int, connections: int, requests: Sequence[bytes]) -> Run:
    """Every one of `requests` once, spread over `connections` clients taking the next free."""
    opened = await _open(port, connections)
    run = Run()
    queue = iter(requests)
    start = trio.current_time()

    async def client(conn: Connection) -> None:
        for data in queue:
            run.count(await conn.exchange(data))
            run.requests += 1

    async with trio.open_nursery() as nursery:
        for conn in opened:
            nursery.start_soon(client, conn)
    run.seconds = trio.current_time() - start
    for conn in opened:
        await conn.aclose()
    return run


async def paced(
    port: int, schedule: Sequence[tuple[float, bytes]], pool: int
) -> tuple[list[float], Run]:
    """Each request at its time (seconds from the start), on a free one of `pool` connections
    (an open loop: a slow answer does not delay the next request unless all `pool` are busy).
    The wall-clock time each was sent, in order, and the run."""
    opened = await _open(port, pool)
    free_send, free = trio.open_memory_channel[Connection](pool)
    for conn in opened:
        free_send.send_nowait(conn)
    sent = [0.0] * len(schedule)
    run = Run()
    start = trio.current_time()

    async def one(index: int, conn: Connection, data: bytes) -> None:
        before = time.perf_counter()
        status = await conn.exchange(data)
        run.latencies_ms.append((time.perf_counter() - before) * 1000)
        run.count(status)
        run.requests += 1
        free_send.send_nowait(conn)

    async with trio.open_nursery() as nursery:
        for index, (at, data) in enumerate(schedule):
            await trio.sleep_until(start + at)
            conn = await free.receive()
            sent[index] = time.time()
            nursery.start_soon(one, index, conn, data)
    run.seconds = trio.current_time() - start
    for conn in opened:
        await conn.aclose()
    return sent, run
