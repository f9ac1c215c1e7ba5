"""A provider that answers without end (a body that never stops, fast) must not fill pagerd's
memory while the timeout runs, nor turn its clear answer into a timeout: the body is read up to
a bound, and the status code decides. Real loopback server, real clock."""

from __future__ import annotations

import pytest
import trio

from pager.ports import PermanentError
from pagerd.delivery.transports.http import MAX_BODY
from pagerd.delivery.transports.slack import SlackTransport
from tests.http_clients import open_client
from tests.servers import TrickleServer
from tests.test_transports import notify

ENDLESS = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 999999999999\r\n\r\n"
)


@pytest.mark.usefixtures("either_client")
async def test_an_endless_answer_is_read_up_to_a_bound_and_its_status_decides() -> None:
    # 256 KiB every 10 ms: 25 MB a second, for as long as the client reads.
    with TrickleServer(ENDLESS, interval=0.01, lasting=30.0, chunk=b"no such hook " * 20000) as s:
        url = f"http://127.0.0.1:{s.port}/services/T0/B0/SECRETSECRET"
        transport = SlackTransport(open_client(3.0, 1, None))
        with trio.fail_after(20), pytest.raises(PermanentError) as refused:
            await transport.send(notify(f"slack:{url}"))
    assert "answered HTTP 404: no such hook" in refused.value.reason
    assert MAX_BODY <= 1024 * 1024
