"""The real senders against a plain loopback receiver: what they send is what the parsers read.

This checks the harnesses themselves (tests/alertmanager.py, tests/real_senders.py), and that
the parsers accept exactly what the real Alertmanager 0.25 and PagerDuty's own client send, so
that the end-to-end tests through pagerd's HTTP front can rely on both.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from pager import alertmanager, events_v2
from pager.domain import Ack, Alert, Level, Policy, Resolve, ServiceState, Source, Target, decide
from pager.integrations import IntegrationRoute
from tests import alertmanager as real_alertmanager
from tests.harness import until
from tests.real_senders import events_client
from tests.servers import Answer, HttpServer, make_ca

ROUTE = IntegrationRoute("prom", "alertmanager", service_label="service")
POLICY = Policy((Level((Target.parse("email:alice@example.com"),), 300.0),))


@real_alertmanager.needed
async def test_real_alertmanager_delivers_webhook_v4_that_the_parser_reads(tmp_path: Path) -> None:
    with HttpServer() as receiver:
        receiver.default = Answer(200, {})
        url = f"{receiver.url}/v1/integrations/alertmanager/KEY"
        async with real_alertmanager.running(tmp_path / "am", url) as am:
            # Two alerts with the same text are two alerts (different instances).
            same = {"summary": "Disk /var is 95% full"}
            await am.post({"alertname": "DiskFull", "service": "api", "instance": "db-1"}, same)
            await am.post({"alertname": "DiskFull", "service": "api", "instance": "db-2"}, same)
            with trio.fail_after(20):
                await trio.to_thread.run_sync(receiver.wait_for, 1)
            await am.post(
                {"alertname": "DiskFull", "service": "api", "instance": "db-1"}, same, resolved=True
            )
            await until(
                lambda: any(
                    a["status"] == "resolved" for r in receiver.requests for a in r.json()["alerts"]
                ),
                "the resolve delivered",
            )
    state = ServiceState("api")
    for request in receiver.requests:
        assert request.path == "/v1/integrations/alertmanager/KEY"
        assert request.headers["content-type"] == "application/json"
        body = request.json()
        assert body["version"] == "4" and body["receiver"] == "pagerd" and body["groupKey"]
        read = alertmanager.parse(request.body, ROUTE, {"api"})
        assert isinstance(read, alertmanager.Batch) and not read.refused
        assert len(read.routed) == len(body["alerts"])
        for r in read.routed:
            state, _ = decide(state, r.event, 0.0, POLICY)
    # db-1 resolved, db-2 still fires: the incident stays open, with db-2's fingerprint firing.
    assert state.incident is not None and state.incident.alerts == 2
    assert len(state.firing) == 1


async def test_the_pagerduty_client_sends_what_the_parser_reads(tmp_path: Path) -> None:
    with make_ca(tmp_path) as ca, HttpServer() as receiver:
        receiver.httpd.socket = ca.server.wrap_socket(receiver.httpd.socket, server_side=True)
        receiver.default = Answer(
            202, {"status": "success", "message": "Event processed", "dedup_key": "k1"}
        )
        base = receiver.url.replace("http://", "https://")
        client = events_client(base, "R" * 32, ca.ca_file)

        def send() -> list[str]:
            return [
                client.trigger("Disk full", "api", dedup_key="k1", severity="error"),
                client.acknowledge("k1"),
                client.resolve("k1"),
            ]

        with trio.fail_after(20):
            assert await trio.to_thread.run_sync(send) == ["k1"] * 3
    route = IntegrationRoute("pd", "events-v2", service_label="source")
    got = []
    for request in receiver.requests:
        assert request.path == "/v2/enqueue"
        assert json.loads(request.body)["routing_key"] == "R" * 32
        enqueued = events_v2.parse(request.body, route, {"api"}, lambda: "unused")
        assert isinstance(enqueued, events_v2.Enqueued), enqueued
        got.append(enqueued.event)
    source = Source("pd", "k1")
    assert got[0] == Alert("Disk full", source)
    assert got[2] == Resolve(source)
    assert got[1] == Ack("pd", source)


@real_alertmanager.needed
async def test_alertmanagers_own_pagerduty_sender_sends_what_the_parser_reads(
    tmp_path: Path,
) -> None:
    """Alertmanager's `pagerduty_configs`, its `url` set to the receiver: a second real sender
    of Events v2, one dedup_key per alert group."""
    with HttpServer() as receiver:
        receiver.default = Answer(
            202, {"status": "success", "message": "Event processed", "dedup_key": "x"}
        )
        url = f"{receiver.url}/v2/enqueue"
        async with real_alertmanager.running(
            tmp_path / "am", url, pagerduty_routing_key="A" * 32
        ) as am:
            labels = {"alertname": "DiskFull", "service": "api"}
            await am.post(labels, {"summary": "Disk full"})
            with trio.fail_after(20):
                await trio.to_thread.run_sync(receiver.wait_for, 1)
            await am.post(labels, {"summary": "Disk full"}, resolved=True)
            with trio.fail_after(20):
                await trio.to_thread.run_sync(receiver.wait_for, 2)
    route = IntegrationRoute("am-pd", "events-v2", service="api")
    events = []
    for request in receiver.requests[:2]:
        assert request.path == "/v2/enqueue"
        enqueued = events_v2.parse(request.body, route, {"api"}, lambda: "unused")
        assert isinstance(enqueued, events_v2.Enqueued), enqueued
        events.append(enqueued.event)
    assert isinstance(events[0], Alert) and events[0].source is not None
    assert events[1] == Resolve(events[0].source)
