"""The HTTP front door served by front processes (`http.workers = 2`): the same answers as in
the core's own process, limits that are the daemon's and not each front's, metrics in the core,
a front killed with -9 replaced with nothing lost or doubled, reloads that reach the fronts, a
clean stop that answers what is in flight, and garbage (tests/test_http_fuzz.py's) answered 4xx
through a front with nothing recorded.

The daemon runs in-process on the real clock (its fronts are real processes), or as the real
`pagerd` process for the fuzz; every wait polls with a deadline, never a fixed sleep, and every
async test has a `trio.fail_after`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import pytest
import trio
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagerd import app
from pagerd.config import Config
from pagerd.front.core import OverRate
from pagerd.front.http.asgi import Response
from pagerd.front.http.fronts import Fronts
from pagerd.front.http.limits import FAILED_BURST
from pagerd.front.http.routes import Call, Route
from pagerd.timing.clock import Clock
from tests import test_http_fuzz as fuzz
from tests.harness import T0, metric_samples, metrics_text, running, steps, until
from tests.http import CRON, INTEGRATIONS, KEYS, auth, base_url, keyed_config
from tests.processes import Pagerd, pager
from tests.servers import free_port

pytestmark = pytest.mark.e2e

HOOK_KEYS: Final = {"pd": "pd-fronts-key-3c9a0e71", "hb": "hb-fronts-key-7e21d5c0"}
MORE: Final = """
[integrations.pd]
type = "events-v2"
key_file = "pd.key"
service_label = "source"

[integrations.hb]
type = "heartbeat"
key_file = "hb.key"
"""
AM: Final = "/v1/integrations/alertmanager"


def fronts_config(folder: Path, http: str = "", services: str = "") -> Config:
    """tests/http.py's config with two front processes; `http` replaces its limits' lines."""
    text = INTEGRATIONS.replace("workers = 0", "workers = 2")
    if http:
        text = text.replace('rate_limit = "100/s"\nburst = 100\n', http)
    return keyed_config(folder, {**KEYS, **HOOK_KEYS}, text + MORE, CRON + services)


def fronts_of(daemon: app.Daemon) -> Fronts:
    assert isinstance(daemon.http, Fronts), "HTTP is not served by front processes"
    return daemon.http


def webhook(*fingerprints: str, service: str = "api", status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4), one alert a fingerprint."""
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "status": status,
        "receiver": "pagerd",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "Down", "service": service},
                "annotations": {"summary": f"{service} is down"},
                "fingerprint": fp,
            }
            for fp in fingerprints
        ],
    }


async def until_async(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = 20.0
) -> None:
    """`until`, for a condition that must ask the daemon (its metrics, a new connection)."""
    with trio.move_on_after(within):
        while True:
            if await condition():
                return
            await trio.sleep(0.02)
    raise AssertionError(f"not within {within}s: {what}")


async def answered(config: Config, route: str, code: str) -> float:
    samples = metric_samples(await metrics_text(config.socket))
    return samples.get(f'pagerd_http_requests_total{{route="{route}",code="{code}"}}', 0.0)


async def raw(port: int, request: bytes) -> bytes:
    """`request` on a new connection; everything read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        if request:
            await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


def get(path: str, key: str) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
    return (head + "connection: close\r\n\r\n").encode()


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {({**KEYS, **HOOK_KEYS})[name]}"}


async def test_fronts_answer_as_the_core_does_and_count_in_its_metrics(tmp_path: Path) -> None:
    config = fronts_config(tmp_path)
    with trio.fail_after(60):
        async with running(config, offload=None) as daemon:
            fronts = fronts_of(daemon)
            assert len(fronts.pids()) == 2 and os.getpid() not in fronts.pids()
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=10) as client:
                assert (await client.get("/-/ready")).json() == {"ok": True, "ready": True}
                alert = await client.post(
                    "/alert", json={"service": "api", "message": "disk full"}, headers=auth()
                )
                assert alert.status_code == 200, alert.text
                assert alert.json()["incident"]["id"] == "api#1"
                assert daemon.services.state("api").incident is not None  # committed first
                fired = await client.post(AM, json=webhook("f1", service="web"), headers=auth("am"))
                assert (fired.status_code, fired.json()["status"]) == (200, "success")
                trigger = {
                    "routing_key": HOOK_KEYS["pd"],
                    "event_action": "trigger",
                    "payload": {"summary": "slow", "source": "web", "severity": "error"},
                }
                enqueued = await client.post("/v2/enqueue", json=trigger)
                assert enqueued.status_code == 202, enqueued.text
                dedup = enqueued.json()["dedup_key"]
                resolve = {**trigger, "event_action": "resolve", "dedup_key": dedup}
                assert (await client.post("/v2/enqueue", json=resolve)).status_code == 202
                beat = await client.post("/heartbeat/cron", headers=bearer("hb"))
                assert (beat.status_code, beat.json()["heartbeat"]["every"]) == (200, "5m")
                # What the core refuses and what the front refuses, as in the core's process.
                for response, status, code in (
                    (await client.post("/alert", json={"service": "nope"}, headers=auth()),
                     404, "unknown_service"),
                    (await client.post("/alert", json={"service": "api"}, headers=auth("am")),
                     401, "unauthorized"),
                    (await client.post("/alert", content=b"{" * 5000, headers=auth()),
                     413, "too_large"),
                    (await client.post("/acknowledge", json={"service": "web", "x": 1},
                                       headers=auth()), 400, "bad_request"),
                    (await client.post("/healthy", json={"service": "web"},
                                       headers=auth("deploys")), 200, None),
                    (await client.post("/alert", json={"service": "api"}, headers=auth("deploys")),
                     403, "forbidden"),
                ):  # fmt: skip
                    assert response.status_code == status, response.text
                    if code is not None:
                        assert response.json()["error"]["code"] == code
                history = (await client.get("/history/web", headers=auth())).json()
                ways = {(e["event"], e.get("integration")) for e in history["timeline"]}
                assert {("alert", "am"), ("healthy", "deploys")} <= ways

            # The fronts' counts reach the core's metrics.
            async def counted() -> bool:
                return await answered(config, "/v2/enqueue", "202") == 2

            await until_async(counted, "the fronts' counts in the core's metrics")
            text = await metrics_text(config.socket)
            assert 'pagerd_http_auth_failures_total{integration_type="rest"} 1' in text
            assert "pagerd_http_fronts 2" in text
    for key in {**KEYS, **HOOK_KEYS}.values():
        assert key not in text


async def test_limits_are_the_daemons_not_each_fronts(tmp_path: Path) -> None:
    limits = 'rate_limit = "1/s"\nburst = 2\nmax_connections = 3\n'
    config = fronts_config(tmp_path, limits)
    with trio.fail_after(60):
        async with running(config, offload=None) as daemon:
            fronts = fronts_of(daemon)
            port = fronts.ports[0]
            # One bucket for the whole daemon: a fresh connection each, to any front.
            answers = [await raw(port, get("/status", KEYS["ops"])) for _ in range(3)]
            assert [a[9:12] for a in answers] == [b"200", b"200", b"429"]
            assert b"retry-after: 1" in answers[2].lower()
            # One cap for the whole daemon: three held, the fourth refused at once.
            held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            await until(lambda: fronts.open_connections == 3, "three connections counted")
            refused = await raw(port, b"")  # sends nothing: it is answered as soon as accepted
            assert refused.startswith(b"HTTP/1.1 503 ") and b'"code":"busy"' in refused
            for stream in held:
                await stream.aclose()
            await until(lambda: fronts.open_connections == 0, "their seats given back")
            # Wrong keys, counted by the core for every front: past the allowance, every front
            # makes the address wait, whatever key it presents.
            for _ in range(FAILED_BURST):
                wrong = await raw(port, get("/status/api", "wrong-key-0123456789"))
                assert wrong.startswith(b"HTTP/1.1 401 ")
            for _ in range(10):
                blocked = await raw(port, get("/status/api", KEYS["ops"]))
                assert blocked.startswith(b"HTTP/1.1 429 "), blocked[:40]
                assert b"too many wrong keys from this address" in blocked


async def _each(send: Callable[[int], Awaitable[None]], services: range) -> None:
    for i in services:
        await send(i)


async def test_a_front_killed_with_9_is_replaced_and_nothing_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    count = 200
    services = "".join(f'[services.s{i}]\npolicy = "oncall"\n' for i in range(count))
    fast = 'rate_limit = "100000/s"\nburst = 100000\n'
    config = fronts_config(tmp_path, fast, services)
    acknowledged: set[int] = set()

    async def send(port: int, i: int) -> None:
        """Service s{i}'s alert, sent until answered 200, as Alertmanager retries."""
        body = json.dumps(webhook(f"fp-{i}", service=f"s{i}")).encode()
        head = (
            f"POST {AM}/{KEYS['am']} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        while True:
            try:
                answer = await raw(port, head.encode() + body)
                if answer.startswith(b"HTTP/1.1 200 "):
                    acknowledged.add(i)
                    return
            except (OSError, trio.BrokenResourceError):
                pass  # its front died under it: the sender tries again
            await trio.sleep(0.02)

    with trio.fail_after(120):
        async with running(config, offload=None) as daemon:
            fronts = fronts_of(daemon)
            before = fronts.pids()
            port = fronts.ports[0]
            async with trio.open_nursery() as nursery:
                for k in range(8):  # eight senders at once, each its share in turn
                    nursery.start_soon(_each, partial(send, port), range(k, count, 8))
                await until(lambda: len(acknowledged) >= count // 4, "a quarter acknowledged")
                os.kill(before[0], signal.SIGKILL)
            assert acknowledged == set(range(count))
            await until(lambda: len(fronts.pids()) == 2, "the front replaced")
            assert before[0] not in fronts.pids() and before[1] in fronts.pids()
            for i in range(count):
                state = daemon.services.state(f"s{i}")
                assert state.last_incident == 1 and state.incident is not None  # none doubled
                assert {s.key for s in state.firing} == {f"fp-{i}"}
            # Level 1 of each, paged once: two targets (alice by email and sms).
            await until(lambda: len(steps(config)) == 2 * count, "every incident paged")
            paged = [incident for incident, _, _, _ in steps(config)]
            assert sorted(set(paged)) == sorted(f"s{i}#1" for i in range(count))
            assert len(paged) == 2 * count
            samples = metric_samples(await metrics_text(config.socket))
            assert samples["pagerd_http_fronts_replaced_total"] == 1
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=10) as client:
                assert (await client.get("/status/s0", headers=auth())).status_code == 200


async def test_a_reload_brings_new_keys_and_certificate_to_the_fronts(tmp_path: Path) -> None:
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
    tls = 'tls_cert = "cert.pem"\ntls_key = "key.pem"\nrate_limit = "100/s"\nburst = 100\n'
    config = fronts_config(tmp_path, tls)
    new_key = "rest-key-after-reload-5b1d"
    with trio.fail_after(60):
        async with running(config, offload=None) as daemon:
            url = base_url(daemon, "https")
            async with httpx.AsyncClient(base_url=url, verify=trusting(first)) as client:
                assert (await client.get("/status", headers=auth())).status_code == 200
            (tmp_path / "ops.key").write_text(new_key + "\n")
            issue(second)
            text = config.path.read_text()
            public = 'public_url = "https://pager.example.com"\n'
            config.path.write_text(text.replace("[http]\n", "[http]\n" + public, 1))
            assert await daemon.reload()
            new = {"authorization": f"Bearer {new_key}"}

            async def new_config_served() -> bool:
                async with httpx.AsyncClient(base_url=url, verify=trusting(second)) as client:
                    try:
                        return (await client.get("/status", headers=new)).status_code == 200
                    except httpx.ConnectError:
                        return False  # a front not yet told: the old certificate

            # Each front is told; a new connection may land on either, so ask several times.
            await until_async(new_config_served, "a front serving the new config")
            for _ in range(10):
                assert await new_config_served()
                # `/openapi.json` follows the reload too: its server is the new public_url.
                async with httpx.AsyncClient(base_url=url, verify=trusting(second)) as client:
                    document = (await client.get("/openapi.json")).json()
                assert document["servers"] == [{"url": "https://pager.example.com"}]
            async with httpx.AsyncClient(base_url=url, verify=trusting(second)) as client:
                assert (await client.get("/status", headers=auth())).status_code == 401
            async with httpx.AsyncClient(base_url=url, verify=trusting(first)) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get("/-/healthy")


async def test_a_clean_stop_answers_what_the_fronts_have_in_flight(tmp_path: Path) -> None:
    config = fronts_config(tmp_path)
    stop = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon: app.Daemon = await nursery.start(
                partial(app.serve, config, stop, clock=Clock(T0))
            )
            fronts = fronts_of(daemon)
            port = fronts.ports[0]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            body = b'{"service": "api", "message": "late"}'
            head = (
                f"POST /alert HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEYS['ops']}\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            )
            await stream.send_all(head.encode() + body[:10])
            await until(lambda: fronts.open_connections == 1, "the request's front has it")
            stop.set()  # SIGTERM: stop accepting, finish what is in flight

            async def refused() -> bool:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                except OSError:
                    return True
                return False

            await until_async(refused, "new connections refused")
            await stream.send_all(body[10:])
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["incident"]["id"] == "api#1"
            await stream.aclose()
        assert fronts.closed.is_set() and fronts.pids() == []


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pagerd, int, Config]]:
    """A real pagerd process whose HTTP is served by one front process, for every example."""
    folder = tmp_path_factory.mktemp("fronts-fuzz")
    port = free_port()
    http = INTEGRATIONS.replace("workers = 0", "workers = 1").replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'
    )
    config = keyed_config(folder, KEYS, http)
    daemon = Pagerd(config.path, config.socket, folder / "err.log")
    daemon.start()
    try:
        yield daemon, port, config
    finally:
        daemon.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(fuzz.requests, min_size=1, max_size=12))
def test_garbage_through_a_front_gets_a_clear_4xx_and_changes_nothing(
    fuzzed: tuple[Pagerd, int, Config], sent: list[fuzz.Sent]
) -> None:
    daemon, port, config = fuzzed
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for (method, pattern), body, segment, key in sent:
            quoted = quote(segment, safe="")
            path = pattern.replace("{service}", quoted).replace("{key}", quoted)
            headers = {} if key is None else {"authorization": f"Bearer {key}"}
            response = client.request(method, path, content=body, headers=headers)
            status = response.status_code
            assert 400 <= status < 500 or (method == "GET" and status == 200), (status, path)
            if status != 200:
                answer = response.json()
                error = answer.get("error", answer)
                assert error["message"] and (error.get("code") or error.get("status"))
        assert client.get("/-/ready").status_code == 200
    status = json.loads(pager(daemon.socket, "status", "--json").stdout)
    assert all(s["state"] == "healthy" for s in status["services"])
    assert not config.log_path.exists() or config.log_path.read_text() == ""


async def test_a_socket_systemd_passed_is_served_by_the_fronts(tmp_path: Path) -> None:
    passed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    passed.bind(("127.0.0.1", 0))
    passed.listen()
    port = passed.getsockname()[1]
    with trio.fail_after(60):
        async with running(fronts_config(tmp_path), offload=None, activated_http=passed) as daemon:
            assert fronts_of(daemon).ports == [port]
            for _ in range(4):  # whichever front takes each
                answer = await raw(port, get("/status/api", KEYS["ops"]))
                assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_route_served_in_the_core_is_forwarded_whole_by_the_fronts(
    tmp_path: Path,
) -> None:
    async def echo(call: Call) -> Response:
        assert call.integration is not None
        return Response.json(
            200,
            {"pid": os.getpid(), "by": call.integration.name, "body": call.body.decode()},
            ("x-served", "core"),
        )

    async def busy(call: Call) -> Response:
        raise OverRate("ops", 7)  # what `core.submit` raises past the integration's rate

    in_core = [
        Route("POST", "/echo/{what}", echo, auth="rest", body=True,
              doc={"summary": "Echo", "responses": ("200",)}),
        Route("GET", "/busy", busy, auth="rest", over_rate=503),
    ]  # fmt: skip
    with trio.fail_after(60):
        config = fronts_config(tmp_path)
        async with running(config, offload=None, http_routes=in_core) as daemon:  # noqa: SIM117
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=10) as client:
                echoed = await client.post("/echo/x", content=b"hello", headers=auth())
                assert echoed.status_code == 200, echoed.text
                assert echoed.json() == {"pid": os.getpid(), "by": "ops", "body": "hello"}
                assert echoed.headers["x-served"] == "core"
                # Keys are checked by the front, as for any route: nothing reaches the core.
                assert (await client.post("/echo/x", headers=auth("am"))).status_code == 401
                limited = await client.get("/busy", headers=auth())
                assert (limited.status_code, limited.headers["retry-after"]) == (503, "7")
                document = (await client.get("/openapi.json")).json()
                assert "/echo/{what}" in document["paths"]
                head = await client.head("/busy", headers=auth())  # a GET route's HEAD
                assert (head.status_code, head.content) == (503, b"")
                # pagerd's own routes served in the core: an acknowledge link's page, in HTML.
                link = await client.get("/ack/not-a-token")
                assert 400 <= link.status_code < 500
                assert link.headers["content-type"].startswith("text/html")
