"""The HTTP front door against abuse (found by review): connections whose client has gone free
their slot at once, and wrong keys are slowed down per client address."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio
import trio.testing

from pagerd.front.http.limits import FAILED_BURST, FailedKeys
from tests.http import auth, front, http_config

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


async def _curl(port: int) -> bytes:
    """One request on its own connection, then the client exits: as a probe or a script sends."""
    url = f"http://127.0.0.1:{port}/-/healthy"
    done = await trio.run_process(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url], capture_stdout=True
    )
    return bytes(done.stdout)


@needs_curl
async def test_one_shot_connections_do_not_hold_their_slot_for_the_keep_alive_timeout(
    tmp_path: Path,
) -> None:
    # The real clock, a keep-alive far longer than the test may take: the slot must be freed
    # because the client went, not because a timer ran out.
    config = http_config(tmp_path, http="max_connections = 4\nkeep_alive_timeout = '600s'\n")
    with trio.fail_after(30):
        async with front(config) as (daemon, _):
            assert daemon.http is not None
            port = daemon.http.ports[0]
            for _ in range(20):
                assert await _curl(port) == b"200"
                # Its slot is freed as the server reads its end of stream: without that, the
                # fifth got 503 (each held its slot for keep_alive_timeout).


async def test_keep_alive_and_a_response_in_flight_still_work(tmp_path: Path) -> None:
    config = http_config(tmp_path, http="max_connections = 4\nkeep_alive_timeout = '600s'\n")
    with trio.fail_after(30):
        async with front(config) as (daemon, client):
            assert daemon.http is not None
            for _ in range(6):  # one kept-alive connection, more requests than the cap
                assert (await client.get("/-/healthy")).status_code == 200
            assert daemon.http.open_connections == 1
            # A client that sends its request and its end of stream at once still gets its
            # answer (the close waits for the response in flight).
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.http.ports[0])
            key = auth()["authorization"]
            request = f"GET /status HTTP/1.1\r\nhost: x\r\nauthorization: {key}\r\n\r\n"
            await stream.send_all(request.encode())
            await stream.send_eof()
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
            await stream.aclose()
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]


async def test_wrong_keys_are_slowed_down_per_address(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    wrong = {"authorization": "Bearer not-the-key-0123456789"}
    with trio.fail_after(600):
        async with front(config) as (_, client):
            codes = [
                (await client.get("/status", headers=wrong)).status_code
                for _ in range(FAILED_BURST)
            ]
            assert codes == [401] * FAILED_BURST
            # Spent: every key from this address waits now, the right one too.
            limited = await client.get("/status", headers=auth())
            assert limited.status_code == 429
            assert limited.json()["error"]["code"] == "busy"
            assert limited.headers["retry-after"] == "1"
            assert "not-the-key" not in limited.text
            await trio.sleep(1)  # then one guess a second
            assert (await client.get("/status", headers=auth())).status_code == 200
            assert (await client.get("/status", headers=wrong)).status_code == 401
            assert (await client.get("/status", headers=wrong)).status_code == 429


PD_KEY = "pd-key-for-abuse-0123456789"
PD = '\n[integrations.pd]\ntype = "events-v2"\nkey_file = "pd.key"\nservice_label = "source"\n'


def trigger(routing_key: str) -> dict[str, object]:
    payload = {"summary": "disk full", "source": "api", "severity": "critical"}
    return {"routing_key": routing_key, "event_action": "trigger", "payload": payload}


async def test_wrong_routing_keys_are_slowed_down_per_address_as_wrong_keys_are(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    (tmp_path / "pd.key").write_text(PD_KEY + "\n")
    config = http_config(tmp_path, PD)
    with trio.fail_after(600):
        async with front(config) as (_, client):
            for i in range(FAILED_BURST):
                wrong = await client.post("/v2/enqueue", json=trigger(f"not-the-key-{i:016}"))
                assert wrong.status_code == 401, wrong.text
                assert wrong.headers["connection"] == "close"  # one guess per connection
                assert wrong.json()["message"] == "Invalid routing key"
            # Spent: every key from this address waits now, the right one too, Bearer too.
            limited = await client.post("/v2/enqueue", json=trigger(PD_KEY))
            assert limited.status_code == 429
            assert limited.headers["retry-after"] == "1"
            assert limited.headers["connection"] == "close"
            body = limited.json()
            assert body["status"] == "busy" and body["errors"] == [body["message"]]
            assert "too many wrong keys" in body["message"]
            assert (await client.get("/status", headers=auth())).status_code == 429
            await trio.sleep(1)  # then one guess a second, whichever route takes it
            assert (await client.post("/v2/enqueue", json=trigger(PD_KEY))).status_code == 202
            wrong = await client.get("/status", headers={"authorization": "Bearer not-it-0123"})
            assert wrong.status_code == 401
            again = await client.post("/v2/enqueue", json=trigger("not-the-key-0123456789"))
            assert again.status_code == 429


async def test_a_wrong_key_closes_its_connection(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path, http="keep_alive_timeout = '600s'\nread_timeout = '600s'\n")
    guess = b"GET /status HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong-0123456789abc\r\n\r\n"
    with trio.fail_after(300):  # closed at once, not after keep_alive_timeout
        async with front(config) as (daemon, _):
            assert daemon.http is not None
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.http.ports[0])
            await stream.send_all(guess)  # on a keep-alive connection: HTTP/1.1's default
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk  # until the server closes: one guess per connection
            await stream.aclose()
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_the_table_of_addresses_is_bounded() -> None:
    async def main() -> None:
        failed = FailedKeys(size=3)
        for i in range(100):
            failed.failed(f"10.0.0.{i}")
        assert len(failed) == 3
        assert failed.retry_after("10.0.0.0") is None  # forgotten: the oldest went first

    trio.run(main)
