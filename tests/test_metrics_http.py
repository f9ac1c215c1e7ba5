"""`GET /metrics`: a scrape that fails answers 500 and the server, and so the daemon, goes on;
`HEAD` is a `GET` without its body, any other method 405."""

from __future__ import annotations

import trio

from pagerd.front.http.metrics import serve_metrics
from tests.http import raw_get
from tests.servers import free_port


async def test_a_metrics_scrape_that_fails_does_not_stop_the_server() -> None:
    def render() -> str:
        raise OSError("a gauge's owner failed")

    port = free_port()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_metrics, "127.0.0.1", port, render)
            first = await raw_get(port)
            second = await raw_get(port)  # still serving
            nursery.cancel_scope.cancel()
    assert first.startswith(b"HTTP/1.1 500 ") and second.startswith(b"HTTP/1.1 500 ")


async def test_head_answers_get_s_headers_without_a_body_and_other_methods_405() -> None:
    port = free_port()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_metrics, "127.0.0.1", port, lambda: "pagerd_up 1\n")
            get = await raw_get(port)
            head = await raw_get(port, "HEAD")
            post = await raw_get(port, "POST")
            other = await raw_get(port, "GET", "/other")
            nursery.cancel_scope.cancel()
    get_head, _, body = get.partition(b"\r\n\r\n")
    assert get.startswith(b"HTTP/1.1 200 ") and body == b"pagerd_up 1\n"
    assert head == get_head + b"\r\n\r\n"  # same headers, Content-Length: 12, no body
    assert post.startswith(
        b"HTTP/1.1 405 "
    )  # hypercorn sends no reason phrase: optional in HTTP/1.1
    assert b"\r\nAllow: GET, HEAD\r\n" in post
    assert other.startswith(b"HTTP/1.1 404 ")
