"""The HTTP front door over real TCP on 127.0.0.1, with httpx: health, keys, limits, plain REST."""

from __future__ import annotations

import logging
import socket
import ssl
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
import trustme

from pagerd import app
from pagerd.engine.readiness import PING_EVERY
from pagerd.storage.offload import inline
from pagerd.storage.port import StoreError
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Clock
from tests.harness import T0, metrics_text, notifications, running, settle, steps
from tests.http import KEYS, auth, front, http_config


async def test_healthy_ready_and_the_document_need_no_key(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(http_config(tmp_path)) as (_, client):
            assert (await client.get("/-/healthy")).json() == {"ok": True, "healthy": True}
            assert (await client.get("/-/ready")).json() == {"ok": True, "ready": True}
            document = (await client.get("/openapi.json")).json()
            assert document["openapi"] == "3.1.0"
            head = await client.head("/-/healthy")
            assert (head.status_code, head.content) == (200, b"")


async def test_ready_is_503_while_the_database_does_not_answer(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(60):
        async with front(http_config(tmp_path)) as (_, client):

            def ping(self: Store) -> None:
                raise StoreError("disk I/O error")

            monkeypatch.setattr(Store, "ping", ping)
            await trio.sleep(PING_EVERY + 0.1)
            await client.get("/-/ready")  # a check asks for a ping; a later one reads it
            await trio.sleep(PING_EVERY + 0.1)  # (past the front's cached answer too)
            response = await client.get("/-/ready")
            assert response.status_code == 503
            assert response.json()["error"] == {
                "code": "unavailable",
                "message": "the database does not answer: disk I/O error",
            }
            assert (await client.get("/-/healthy")).status_code == 200
            monkeypatch.undo()
            await trio.sleep(PING_EVERY + 0.1)
            await client.get("/-/ready")
            await trio.sleep(PING_EVERY + 0.1)
            assert (await client.get("/-/ready")).status_code == 200


async def test_ready_never_pings_the_database_itself_however_many_ask(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks read what the readiness task found; a flood of `GET /-/ready` asks it for
    one ping at most, no check waits on it, and an idle node pings nothing at all."""
    pings = 0
    ping = Store.ping

    def counted(self: Store) -> None:
        nonlocal pings
        pings += 1
        ping(self)

    with trio.fail_after(60):
        async with front(http_config(tmp_path)) as (daemon, client):
            monkeypatch.setattr(Store, "ping", counted)
            answers: list[str | None] = []

            async def ask() -> None:
                answers.append(await daemon.core.ready())

            await trio.sleep(10 * PING_EVERY)
            before = pings
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(ask)
            assert answers == [None] * 50  # at once, from what is known
            assert (await client.get("/-/ready")).status_code == 200
            await trio.sleep(0.1)
            assert pings == before + 1  # one ping for all of them
            await trio.sleep(10 * PING_EVERY)
            assert pings == before + 1  # idle: nothing


async def test_a_rest_alert_pages_once_committed_and_names_its_integration(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            alert = {"service": "api", "message": "disk full"}
            response = await client.post("/alert", json=alert, headers=auth())
            assert response.status_code == 200
            reply = response.json()
            assert reply["ok"] and reply["incident"]["id"] == "api#1"
            await settle()
            assert sorted(steps(config)) == [
                ("api#1", 1, 1, "email:alice@example.com"),
                ("api#1", 1, 1, "sms:+14155550100"),
            ]
            history = (await client.get("/history/api", headers=auth())).json()
            assert history["timeline"][0] == {
                "at": history["timeline"][0]["at"],
                "event": "alert",
                "detail": "disk full",
                "integration": "ops",
            }
            status = await client.get("/status/api", headers=auth())
            assert status.json()["incident"]["id"] == "api#1"
            everything = (await client.get("/status", headers=auth())).json()
            assert [s["service"] for s in everything["services"]] == ["api", "web"]
            ack = await client.post(
                "/acknowledge", json={"service": "api", "by": "bob"}, headers=auth()
            )
            assert ack.json()["incident"]["acknowledged_by"] == "bob"
            healthy = await client.post("/healthy", json={"service": "api"}, headers=auth())
            assert healthy.json()["state"] == "healthy"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/alert", {"service": "nope"}, 404, "unknown_service"),
        ("/acknowledge", {"service": "api"}, 409, "no_open_incident"),
        ("/alert", {"service": "api", "by": "x"}, 400, "bad_request"),
        ("/alert", {"service": "api", "op": "status"}, 400, "bad_request"),
        ("/healthy", {"service": "bad name"}, 400, "bad_request"),
        ("/alert", ["api"], 400, "bad_request"),
    ],
)
async def test_the_protocol_s_errors_as_http_statuses(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    path: str,
    body: object,
    status: int,
    code: str,
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            response = await client.post(path, json=body, headers=auth())
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
            await settle()
    assert notifications(config) == []


async def test_a_wrong_key_is_401_counted_and_changes_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            alert = {"service": "api", "message": "down"}
            for headers in (
                {},
                {"authorization": "Bearer wrong"},
                {"authorization": KEYS["ops"]},  # no scheme
                auth("am"),  # a key, of another type
            ):
                response = await client.post("/alert", json=alert, headers=headers)
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"
            await settle()
            text = await metrics_text(config.socket)
            assert 'pagerd_http_auth_failures_total{integration_type="rest"} 4' in text
            assert 'pagerd_http_requests_total{route="/alert",code="401"} 4' in text
            status = (await client.get("/status/api", headers=auth())).json()
            assert status["state"] == "healthy"
    assert notifications(config) == []


async def test_an_integration_sends_only_to_its_services(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            response = await client.post("/alert", json={"service": "api"}, headers=auth("deploys"))
            assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
            response = await client.post("/alert", json={"service": "web"}, headers=auth("deploys"))
            assert response.status_code == 200


async def test_a_body_over_the_limit_is_413_and_bad_json_400_with_nothing_recorded(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            big = b'{"service": "api", "message": "' + b"x" * 5000 + b'"}'
            response = await client.post("/alert", content=big, headers=auth())
            assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")

            async def chunks() -> object:
                for _ in range(10):  # no Content-Length: cut as it arrives
                    yield b"x" * 1000

            response = await client.post("/alert", content=chunks(), headers=auth())  # type: ignore[arg-type]
            assert response.status_code == 413
            for bad in (b"{", b"", b"\xff\xfe", b'{"service": "api"} x', b"[" * 4000):
                response = await client.post("/alert", content=bad, headers=auth())
                assert response.status_code == 400, bad
                assert response.json()["error"]["code"] == "bad_request"
            await settle()
            assert (await client.get("/status/api", headers=auth())).json()["state"] == "healthy"
    assert notifications(config) == []


async def test_unknown_paths_are_404_and_wrong_methods_405(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(http_config(tmp_path)) as (_, client):
            assert (await client.get("/nothing")).status_code == 404
            response = await client.get("/alert", headers=auth())
            assert response.status_code == 405
            assert response.headers["allow"] == "POST"
            assert (await client.delete("/status")).headers["allow"] == "GET, HEAD"


async def test_an_integration_over_its_rate_gets_429_with_retry_after(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path, "")
    text = config.path.read_text().replace('rate_limit = "100/s"', 'rate_limit = "1/s"')
    config.path.write_text(text.replace("burst = 100", "burst = 2"))
    from pagerd.config import load

    config = load(config.path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            codes = [(await client.get("/status", headers=auth())).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            limited = await client.get("/status", headers=auth())
            assert limited.headers["retry-after"] == "1"
            assert limited.json()["error"]["code"] == "busy"
            # Another integration has its own bucket.
            assert (await client.get("/status", headers=auth("deploys"))).status_code == 200
            await trio.sleep(1)
            assert (await client.get("/status", headers=auth())).status_code == 200


async def test_past_max_connections_a_new_one_gets_503_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path, "")
    text = config.path.read_text().replace("burst = 100", "burst = 100\nmax_connections = 2")
    config.path.write_text(text)
    from pagerd.config import load

    config = load(config.path)
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            assert daemon.http is not None
            port = daemon.http.ports[0]
            held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            await settle()
            extra = await trio.open_tcp_stream("127.0.0.1", port)
            answer = b""
            while chunk := await extra.receive_some(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b'"code":"busy"' in answer
            for stream in held:
                await stream.aclose()
            await extra.aclose()
            # Their slots are free again once hypercorn lets go of them: at the latest after
            # the keep-alive timeout.
            await trio.sleep(config.http.limits.keep_alive_timeout + 1)
            assert daemon.http.open_connections == 0
            assert (await client.get("/-/healthy")).status_code == 200


async def test_the_key_is_never_in_logs_metrics_history_or_answers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = http_config(tmp_path)
    seen: list[str] = []
    with trio.fail_after(60):
        async with front(config) as (_, client):
            for key in KEYS.values():
                for attempt in (key, key + "x", key[:-1]):
                    headers = {"authorization": f"Bearer {attempt}"}
                    response = await client.post(
                        "/alert", json={"service": "api", "message": "m"}, headers=headers
                    )
                    seen.append(response.text + str(response.headers))
            response = await client.post(f"/v1/integrations/alertmanager/{KEYS['am']}x", json={})
            seen.append(response.text)
            await settle()
            seen.append(await metrics_text(config.socket))
            seen.append((await client.get("/history/api", headers=auth())).text)
            seen.append((await client.get("/status/api", headers=auth())).text)
            seen.append((await client.get("/openapi.json")).text)
    seen += [r.getMessage() for r in caplog.records if r.name.startswith(("pagerd", "hypercorn"))]
    seen.append(config.log_path.read_text())
    seen.append(repr(config))
    everything = "\n".join(seen)
    for key in KEYS.values():
        assert key not in everything
        assert key[:12] not in everything


async def test_connections_open_at_a_clean_stop_are_answered_then_closed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            assert daemon.http is not None
            port = daemon.http.ports[0]
            response = await client.get("/-/healthy")  # a keep-alive connection, idle now
            assert response.status_code == 200
        # Stopped: nothing listens any more.
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_a_slow_sender_is_cut_off_and_nothing_is_recorded(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            assert daemon.http is not None
            stream = await trio.open_tcp_stream("127.0.0.1", daemon.http.ports[0])
            head = (
                f"POST /alert HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEYS['ops']}\r\n"
                "content-type: application/json\r\ncontent-length: 100\r\n\r\n"
            )
            await stream.send_all(head.encode() + b'{"service": "api", ')
            started = trio.current_time()
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk  # a 408, or just the close: either way, within the timeout
            assert trio.current_time() - started <= config.http.limits.read_timeout + 1
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
            await stream.aclose()
            status = (await client.get("/status/api", headers=auth())).json()
            assert status["state"] == "healthy"
    assert notifications(config) == []


async def test_tls_serves_and_a_reload_brings_a_new_certificate_for_new_connections(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    first, second = trustme.CA(), trustme.CA()

    def issue(ca: trustme.CA) -> None:
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
        cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))

    def trusting(ca: trustme.CA) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        return context

    issue(first)
    config = http_config(tmp_path, http='tls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    with trio.fail_after(60):
        async with running(config) as daemon:
            assert daemon.http is not None
            url = f"https://127.0.0.1:{daemon.http.ports[0]}/-/healthy"
            async with httpx.AsyncClient(verify=trusting(first)) as client:
                assert (await client.get(url)).status_code == 200
            issue(second)
            assert await daemon.reload()
            async with httpx.AsyncClient(verify=trusting(second)) as client:
                assert (await client.get(url)).status_code == 200
            async with httpx.AsyncClient(verify=trusting(first)) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(url)


async def test_a_socket_systemd_passed_is_served(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    passed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    passed.bind(("127.0.0.1", 0))
    passed.listen()
    port = passed.getsockname()[1]
    with trio.fail_after(60):
        async with running(http_config(tmp_path), activated_http=passed) as daemon:
            assert daemon.http is not None and daemon.http.ports == [port]
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/-/healthy")
                assert response.status_code == 200


async def test_a_request_in_flight_at_a_clean_stop_is_answered(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    stop = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon: app.Daemon = await nursery.start(
                partial(app.serve, config, stop, clock=Clock(T0), offload=inline)
            )
            assert daemon.http is not None
            port = daemon.http.ports[0]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            body = b'{"service": "api", "message": "late"}'
            head = (
                f"POST /alert HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEYS['ops']}\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            )
            await stream.send_all(head.encode() + body[:10])
            await settle()
            stop.set()  # SIGTERM: stop accepting, finish what is in flight
            await settle()
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(body[10:])
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert b'"incident":{"id":"api#1"' in answer
            await stream.aclose()
