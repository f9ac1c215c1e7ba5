"""`GET /metrics`: a scrape that fails answers 500 and the server, and so the daemon, goes on."""

from __future__ import annotations

import trio

from pagerd.operations.metrics_http import serve_metrics
from tests.servers import free_port


async def test_a_metrics_scrape_that_fails_does_not_stop_the_server() -> None:
    def render() -> str:
        raise OSError("a gauge's owner failed")

    port = free_port()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_metrics, "127.0.0.1", port, render)
            first = await _http_get(port)
            second = await _http_get(port)  # still serving
            nursery.cancel_scope.cancel()
    assert first.startswith(b"HTTP/1.1 500 ") and second.startswith(b"HTTP/1.1 500 ")


async def _http_get(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data
