"""The integrations' handlers against the real daemon (in-process, MockClock), without HTTP:
each answer is given after commit, resolves close only the last firing alert, redeliveries and
resends change nothing, and what can never be accepted is refused with nothing recorded."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import pager.cli
from pager import domain
from pager.domain import ServiceState, Source
from pager.integrations import IntegrationRoute, KeyedRoute, find_by_key
from pagerd.config import Config
from pagerd.front.integrations import alertmanager_webhook, enqueue_events_v2
from tests.harness import (
    connect,
    failing_writes,
    metrics_text,
    running,
    settle,
    steps,
    write_config,
)

FIXTURES = Path(__file__).parent / "fixtures"
AM = IntegrationRoute("prom", "alertmanager", service_label="service")
PD = IntegrationRoute("pd", "events-v2", service_label="source")
PD_KEY = "R" * 32  # the routing_key PagerDuty's client sent in the fixtures
KEYS = [
    KeyedRoute(PD, PD_KEY.encode()),
    KeyedRoute(IntegrationRoute("other", "events-v2", service="web"), b"o" * 32),
]


def webhook(*alerts: tuple[str, str], group: str = "g") -> bytes:
    """A webhook payload of (fingerprint, status) alerts for service api."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": group,
            "status": "firing",
            "receiver": "pagerd",
            "alerts": [
                {
                    "status": status,
                    "fingerprint": fp,
                    "labels": {"alertname": "DiskFull", "service": "api", "fp": fp},
                    "annotations": {"summary": "Disk full"},
                    "generatorURL": "http://prometheus.example/graph",
                }
                for fp, status in alerts
            ],
        }
    ).encode()


def pages(config: Config) -> int:
    return len(steps(config))


async def test_one_resolved_among_five_firing_closes_nothing_and_the_last_closes(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async with running(config) as daemon:
        services = daemon.services
        answer = await alertmanager_webhook(
            daemon.core, AM, webhook(*((f"f{i}", "firing") for i in range(5)))
        )
        assert answer.status == 200 and json.loads(answer.body)["status"] == "success"
        # Answered after commit: the store has it now.
        stored = daemon.store.load_states()["api"]
        assert stored.incident is not None and len(stored.firing) == 5
        await trio.sleep(5)  # delivered (the mock clock), and level 2 not due yet
        assert pages(config) == 2, steps(config)  # level 1 of the harness policy: two targets
        answer = await alertmanager_webhook(daemon.core, AM, webhook(("f2", "resolved")))
        assert answer.status == 200
        state = services.state("api")
        assert state.incident is not None and state.incident.alerts == 5
        assert len(state.firing) == 4
        resolved = [(f"f{i}", "resolved") for i in (0, 1, 3, 4)]
        await alertmanager_webhook(daemon.core, AM, webhook(*resolved))
        assert services.state("api").healthy
    # The firing set was durable all along: a restart finds the service closed, nothing firing.
    async with running(config) as daemon:
        assert daemon.services.state("api").healthy


async def test_the_firing_set_survives_a_restart(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async with running(config) as daemon:
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing"), ("f2", "firing")))
    async with running(config) as daemon:
        assert len(daemon.services.state("api").firing) == 2
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "resolved")))
        assert daemon.services.state("api").incident is not None
        await alertmanager_webhook(daemon.core, AM, webhook(("f2", "resolved")))
        assert daemon.services.state("api").healthy


async def test_resends_and_redeliveries_change_nothing_and_page_nobody(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async with running(config) as daemon:
        services = daemon.services
        body = webhook(("f1", "firing"), ("f2", "firing"))
        await alertmanager_webhook(daemon.core, AM, body)
        await trio.sleep(5)  # delivered (the mock clock), and level 2 not due yet
        before, sent = services.state("api"), pages(config)
        assert sent == 2
        for _ in range(3):  # at-least-once delivery, and a resend every repeat_interval
            await trio.sleep(4 * 3600)
            assert (await alertmanager_webhook(daemon.core, AM, body)).status == 200
        await trio.sleep(5)
        after = services.state("api")
        assert after.incident is not None and before.incident is not None
        assert after.firing == before.firing and after.incident.alerts == 2
        assert after.incident.number == before.incident.number
        # Escalation went on as the policy says; the resends themselves paged nobody.
        assert pages(config) == sent + 1
        resolve = webhook(("f1", "resolved"))
        await alertmanager_webhook(daemon.core, AM, resolve)
        await alertmanager_webhook(daemon.core, AM, resolve)  # delivered twice
        assert services.state("api").incident is not None


ALLOWED = IntegrationRoute(
    "prom", "alertmanager", service_label="service", services=frozenset({"api", "gone"})
)


def _grouped_by_alertname(*alerts: tuple[str, dict[str, str]], status: str = "firing") -> bytes:
    """The payload the real Alertmanager (0.25) sends for a route with `group_by:
    ["alertname"]`: one group whose alerts are of several services, as (fingerprint, labels)."""
    return json.dumps(
        {
            "receiver": "pagerd",
            "status": status,
            "alerts": [
                {
                    "status": status,
                    "labels": labels,
                    "annotations": {"summary": f"Disk full on {labels.get('instance')}"},
                    "startsAt": "2026-11-30T21:24:22.814243Z",
                    "endsAt": "0001-01-01T00:00:00Z"
                    if status == "firing"
                    else "2026-11-30T21:29:21.815957Z",
                    "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
                    "fingerprint": fingerprint,
                }
                for fingerprint, labels in alerts
            ],
            "groupLabels": {"alertname": "DiskFull"},
            "commonLabels": {"alertname": "DiskFull"},
            "commonAnnotations": {},
            "externalURL": "http://vm:39937",
            "version": "4",
            "groupKey": '{}:{alertname="DiskFull"}',
            "truncatedAlerts": 0,
        }
    ).encode()


MIXED = (
    ("c2ddb2a3b6628273", {"alertname": "DiskFull", "service": "api", "instance": "db-1"}),
    ("5e0a11c9d0e1f2a3", {"alertname": "DiskFull", "service": "web", "instance": "web-1"}),
    ("9d8c7b6a5f4e3d2c", {"alertname": "DiskFull", "service": "gone", "instance": "old-1"}),
    ("0a1b2c3d4e5f6789", {"alertname": "DiskFull", "instance": "\x1b[31mbox"}),
)


async def test_alerts_that_cannot_be_routed_refuse_themselves_and_their_group_still_pages(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """`group_by: [alertname]` puts alerts of several services in one payload: api's may page
    through this integration, web's may not (its `services`), `gone` is no service, and one
    has no `service` label. api's is committed and pages; the answer is the 4xx of the first
    refused, naming every one (Alertmanager logs it and does not retry); each is logged. The
    same group sent again (Alertmanager's next flush) doubles nothing."""
    caplog.set_level(logging.WARNING, "pagerd.integrations")
    body = _grouped_by_alertname(*MIXED)
    async with running(config) as daemon:
        services = daemon.services
        answer = await alertmanager_webhook(daemon.core, ALLOWED, body)
        # Answered after commit: the store has api's alert.
        stored = daemon.store.load_states()["api"]
        assert stored.incident is not None and len(stored.firing) == 1
        assert answer.status == 403 and answer.result == "forbidden"
        assert answer.refused == ("not_in_services", "unknown_service", "no_service_label")
        reply = json.loads(answer.body)
        assert reply["status"] == "error" and reply["code"] == "forbidden"
        assert reply["processed"] == 1
        assert reply["errors"] == [
            "alert 2: service 'web' is not among this integration's services",
            "alert 3: unknown service 'gone'",
            "alert 4: the event has no label 'service' naming its service",
        ]
        assert "(3 of 4 alerts refused, the others processed)" in reply["message"]
        assert services.state("web").healthy
        await trio.sleep(5)  # delivered (the mock clock), and level 2 not due yet
        assert pages(config) == 2, steps(config)  # level 1 of the harness policy: two targets
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        refused = [line for line in lines if line.startswith("alert refused")]
        assert refused == [
            "alert refused integration=prom alert=2 of 4 fingerprint='5e0a11c9d0e1f2a3'"
            " reason=not_in_services: service 'web' is not among this integration's services",
            "alert refused integration=prom alert=3 of 4 fingerprint='9d8c7b6a5f4e3d2c'"
            " reason=unknown_service: unknown service 'gone'",
            "alert refused integration=prom alert=4 of 4 fingerprint='0a1b2c3d4e5f6789'"
            " reason=no_service_label: the event has no label 'service' naming its service",
        ]
        again = await alertmanager_webhook(daemon.core, ALLOWED, body)
        assert again.status == 403 and again.refused == answer.refused
        await trio.sleep(5)
        state = services.state("api")
        assert state.incident is not None and state.incident.alerts == 1
        assert state.last_incident == 1 and pages(config) == 2
        resolved = await alertmanager_webhook(
            daemon.core, ALLOWED, _grouped_by_alertname(*MIXED, status="resolved")
        )
        assert resolved.status == 403 and services.state("api").healthy


async def test_a_label_value_is_logged_escaped(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "pagerd.integrations")
    body = _grouped_by_alertname(("f\x1b[2J", {"alertname": "X", "service": "\x1b[31mred\u202e"}))
    async with running(config) as daemon:
        answer = await alertmanager_webhook(daemon.core, AM, body)
    assert answer.status == 404
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert")]
    assert "\x1b" not in line and "\u202e" not in line
    assert "fingerprint='f\\x1b[2J'" in line and "'\\x1b[31mred\\u202e'" in line


async def test_a_payload_none_of_whose_alerts_can_be_routed_is_refused_and_records_nothing(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    payload = json.loads(webhook(("f1", "firing"), ("f2", "firing")))
    for alert in payload["alerts"]:
        alert["labels"]["service"] = "nope"
    async with running(config) as daemon:
        answer = await alertmanager_webhook(daemon.core, AM, json.dumps(payload).encode())
        assert answer.status == 404 and answer.refused == ("unknown_service",) * 2
        reply = json.loads(answer.body)
        assert (
            reply["message"] == "alert 1: unknown service 'nope'; alert 2: unknown service 'nope'"
        )
        assert reply["processed"] == 0 and len(reply["errors"]) == 2
        assert daemon.services.state("api").healthy
        bad = await alertmanager_webhook(daemon.core, AM, b"{not json")
        assert bad.status == 400
        await settle()
        assert daemon.store.load_states().get("api", ServiceState("api")).last_incident == 0
    assert pages(config) == 0


async def test_a_commit_that_fails_is_answered_503_and_the_retry_counts_once(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(config) as daemon:
        refused = failing_writes(daemon, monkeypatch, 1_000_000)
        body = webhook(("f1", "firing"))
        answer = await alertmanager_webhook(daemon.core, AM, body)
        assert refused and answer.status == 503
        assert ("Retry-After", "5") in answer.headers
        assert daemon.services.state("api").healthy
        monkeypatch.undo()
        assert (await alertmanager_webhook(daemon.core, AM, body)).status == 200
        assert (await alertmanager_webhook(daemon.core, AM, body)).status == 200
        incident = daemon.services.state("api").incident
        assert incident is not None and incident.alerts == 1


async def test_an_overloaded_pagerd_answers_503_within_the_timeout(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(config) as daemon:
        committer = daemon.committer
        commit = committer.commit

        async def slow(batch: Any) -> None:
            await trio.sleep(60)
            await commit(batch)

        monkeypatch.setattr(committer, "commit", slow)
        answer = await alertmanager_webhook(
            daemon.core, AM, webhook(("f1", "firing")), patience=1.0
        )
        assert answer.status == 503 and answer.result == "busy"
        await trio.sleep(120)  # committed later: the sender's retry changes nothing
        monkeypatch.undo()
        assert (
            await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing")))
        ).status == 200
        incident = daemon.services.state("api").incident
        assert incident is not None and incident.alerts == 1


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def test_events_v2_as_pagerdutys_client_sends_them(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async with running(config) as daemon:
        services = daemon.services
        answer = await enqueue_events_v2(
            daemon.core, KEYS, fixture("pagerduty-events-v2-trigger.json")
        )
        assert answer.status == 202
        assert json.loads(answer.body) == {
            "status": "success", "message": "Event processed", "dedup_key": "disk-full-api"
        }  # fmt: skip
        # Another open dedup_key: its resolve is needed too.
        other = json.dumps(
            {
                "routing_key": PD_KEY,
                "event_action": "trigger",
                "payload": {"summary": "slow", "source": "api", "severity": "warning"},
            }
        ).encode()
        generated = await enqueue_events_v2(daemon.core, KEYS, other, new_key=lambda: "made-here")
        assert json.loads(generated.body)["dedup_key"] == "made-here"
        ack = await enqueue_events_v2(
            daemon.core, KEYS, fixture("pagerduty-events-v2-acknowledge.json")
        )
        assert ack.status == 202
        incident = services.state("api").incident
        assert incident is not None and incident.acknowledged_by == "pd"
        resolve = fixture("pagerduty-events-v2-resolve.json")
        assert (await enqueue_events_v2(daemon.core, KEYS, resolve)).status == 202
        assert services.state("api").incident is not None  # made-here is still open
        done = json.dumps(
            {"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": "made-here"}
        ).encode()
        assert (await enqueue_events_v2(daemon.core, KEYS, done)).status == 202
        assert services.state("api").healthy
        # A resolve of what is not open is accepted and changes nothing, as at PagerDuty.
        again = await enqueue_events_v2(daemon.core, KEYS, resolve)
        assert again.status == 202 and services.state("api").last_incident == 1


async def test_events_v2_refusals_are_pagerdutys(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async with running(config) as daemon:
        services = daemon.services
        wrong = fixture("pagerduty-events-v2-trigger.json").replace(PD_KEY.encode(), b"W" * 32)
        answer = await enqueue_events_v2(daemon.core, KEYS, wrong)
        assert answer.status == 401 and b"W" * 32 not in answer.body
        bad = json.dumps({"routing_key": PD_KEY, "event_action": "trigger", "payload": {}})
        answer = await enqueue_events_v2(daemon.core, KEYS, bad.encode())
        body = json.loads(answer.body)
        assert answer.status == 400
        assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
        assert "'payload.summary' is missing or blank" in body["errors"]
        assert services.state("api").healthy


def test_keys_are_compared_with_every_integration() -> None:
    assert find_by_key(KEYS, PD_KEY) == PD
    assert find_by_key(KEYS, "o" * 32) == KEYS[1].route
    assert find_by_key(KEYS, "") is None
    assert PD_KEY not in repr(KEYS)


async def test_the_history_says_which_alert_resolved(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async with running(config) as daemon:
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing"), ("f2", "firing")))
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "resolved")))
        await alertmanager_webhook(daemon.core, AM, webhook(("f2", "resolved")))
        await settle()
        async with connect(config.socket) as conn:
            reply = await conn.request("history", service="api")
    events = [(e["event"], e.get("detail")) for e in reply["timeline"]]
    assert ("resolve", "prom: f1 resolved, 1 still firing") in events
    assert ("resolve", "prom: f2 resolved") in events
    assert events[-1] == ("closed", None)


async def test_a_removed_service_forgets_what_fired_for_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    async with running(config) as daemon:
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing")))
        write_config(tmp_path, services={"web": "oncall"})
        assert await daemon.reload()
        await trio.sleep(60)  # the close of removed services' incidents
        assert daemon.store.load_states()["api"] == ServiceState("api", 1)
        # Back again, it starts healthy: a resend of the alert opens a new incident.
        write_config(tmp_path)
        assert await daemon.reload()
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing")))
        state = daemon.services.state("api")
        assert state.incident is not None and state.incident.number == 2


async def test_alerts_left_out_by_alertmanager_are_reported(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    payload = json.loads(webhook(("f1", "firing")))
    payload["truncatedAlerts"] = 3
    async with running(config) as daemon:
        answer = await alertmanager_webhook(daemon.core, AM, json.dumps(payload).encode())
    assert answer.status == 200
    assert "integration=prom: Alertmanager left 3 alerts out of a payload" in caplog.text


async def test_one_alert_more_than_a_service_keeps_is_answered_503(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(domain, "MAX_FIRING", 2)
    async with running(config) as daemon:
        services = daemon.services
        full = await alertmanager_webhook(
            daemon.core, AM, webhook(("f1", "firing"), ("f2", "firing"))
        )
        assert full.status == 200
        more = await alertmanager_webhook(
            daemon.core, AM, webhook(("f1", "firing"), ("f3", "firing"))
        )
        assert more.status == 503 and more.result == "too_many_alerts"
        assert "2 alerts firing" in json.loads(more.body)["message"]
        # Once one resolved, the sender's retry of the same payload is taken.
        await alertmanager_webhook(daemon.core, AM, webhook(("f2", "resolved")))
        again = await alertmanager_webhook(
            daemon.core, AM, webhook(("f1", "firing"), ("f3", "firing"))
        )
        assert again.status == 200
        assert {s.key for s in services.state("api").firing} == {"f1", "f3"}


async def test_a_resolve_that_names_no_service_finds_its_dedup_key_also_after_a_restart(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    def body(action: str, key: str, source: str = "") -> bytes:
        event: dict[str, Any] = {"routing_key": PD_KEY, "event_action": action, "dedup_key": key}
        if source:
            event["payload"] = {"summary": "down", "source": source, "severity": "error"}
        return json.dumps(event).encode()

    async with running(config) as daemon:
        for key, service in (("a", "api"), ("w", "web")):
            await enqueue_events_v2(daemon.core, KEYS, body("trigger", key, service))
        assert daemon.services.firing_service(Source("pd", "w")) == "web"
    async with running(config) as daemon:
        services = daemon.services
        assert services.firing_service(Source("pd", "a")) == "api"  # rebuilt from the store
        assert (await enqueue_events_v2(daemon.core, KEYS, body("resolve", "w"))).status == 202
        assert services.state("web").healthy and services.state("api").incident is not None
        assert services.firing_service(Source("pd", "w")) is None
        await enqueue_events_v2(daemon.core, KEYS, body("resolve", "a"))
        assert services.state("api").healthy


async def test_an_alertmanager_resolve_does_not_close_what_a_plain_alert_holds_open(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """guarantees.md: 'An integration's resolve closes only what nothing else holds open.'
    A script's `pager alert api` (no source: only `healthy` ends it) holds the incident open.
    (Found by an adversarial review, tests/test_attack2_integrations.py there.)"""
    async with running(config) as daemon, connect(config.socket) as conn:
        reply = await conn.request("alert", service="api", message="disk full (cron check)")
        assert reply["ok"]
        answer = await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing")))
        assert answer.status == 200
        answer = await alertmanager_webhook(daemon.core, AM, webhook(("f1", "resolved")))
        assert answer.status == 200
        state = daemon.services.state("api")
        assert state.incident is not None, (
            "Alertmanager's resolve of its own alert closed the incident the script's plain "
            "alert opened: the disk is still full, and nobody is escalated to any more"
        )
        assert state.firing == frozenset() and state.incident.held_by_alert
        stored = daemon.store.load_states()["api"]
        assert stored.incident is not None and stored.incident.held_by_alert
        await trio.sleep(400)  # the ack timeout of level 1 (5m) passes: level 2 is paged
        assert daemon.services.state("api").incident is not None
        assert 2 in {level for _, _, level, _ in steps(config)}, "the escalation goes on"
        reply = await conn.request("healthy", service="api")
        assert reply["ok"] and daemon.services.state("api").healthy


async def test_an_events_v2_resolve_does_not_close_what_a_plain_alert_holds_open(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """The same for PagerDuty's Events v2: the plain alert came after the trigger."""
    async with running(config) as daemon, connect(config.socket) as conn:
        trigger = fixture("pagerduty-events-v2-trigger.json")
        assert (await enqueue_events_v2(daemon.core, KEYS, trigger)).status == 202
        reply = await conn.request("alert", service="api", message="disk full (cron check)")
        assert reply["ok"]
        resolve = fixture("pagerduty-events-v2-resolve.json")
        assert (await enqueue_events_v2(daemon.core, KEYS, resolve)).status == 202
        state = daemon.services.state("api")
        assert state.incident is not None and state.firing == frozenset()


def _as_alertmanager_sent(status: str, starts_at: str, ends_at: str | None = None) -> bytes:
    """The payload the real Alertmanager sent (tests/fixtures), as it sends one alert of it:
    firing (its `endsAt` zeroed, as Alertmanager does for a firing alert) or resolved (at
    `ends_at`)."""
    payload = json.loads((FIXTURES / "alertmanager-webhook-v4.json").read_bytes())
    alert = payload["alerts"][1]  # DiskFull on db-1, fingerprint bca7f9ce4118dd5d
    alert.update(status=status, startsAt=starts_at)
    if status == "firing":
        alert["endsAt"] = "0001-01-01T00:00:00Z"
    elif ends_at is not None:
        alert["endsAt"] = ends_at
    payload.update(status=status, alerts=[alert])
    return json.dumps(payload).encode()


async def _timeline(config: Config) -> list[tuple[str, str | None]]:
    """The history of service api's latest incident."""
    async with connect(config.socket) as conn:
        reply = await conn.request("history", service="api")
    return [(e["event"], e.get("detail")) for e in reply["timeline"]]


async def test_a_copy_of_an_earlier_firing_after_a_later_resolve_pages_nobody_after_a_restart(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """The alert fired and resolved twice; then a cluster peer that missed all of it, or a
    retry of an old request, delivers the first firing again: the same body, its `startsAt`
    before the one the alert last resolved with. Answered 200 (so nobody retries it), changes
    nothing, pages nobody; counted and logged."""
    first, second = "2026-11-30T21:24:22.809107Z", "2026-11-30T21:41:07.5Z"
    firing = _as_alertmanager_sent("firing", first)
    async with running(config) as daemon:
        for body in (
            firing,
            _as_alertmanager_sent("resolved", first, "2026-11-30T21:29:21.815957Z"),
            _as_alertmanager_sent("firing", second),
            _as_alertmanager_sent("resolved", second, "2026-11-30T21:50:01Z"),
        ):
            assert (await alertmanager_webhook(daemon.core, AM, body)).status == 200
        await settle()
        assert daemon.services.state("api").healthy and pages(config) == 4
    caplog.set_level(logging.INFO, "pagerd.actors")
    async with running(config) as daemon:  # remembered on disk
        caplog.clear()
        answer = await alertmanager_webhook(daemon.core, AM, firing)
        assert answer.status == 200 and json.loads(answer.body)["status"] == "success"
        await settle()
        state = daemon.services.state("api")
        assert state.healthy and state.last_incident == 2 and pages(config) == 4
        text = await metrics_text(config.socket)
        assert 'pagerd_stale_firings_total{integration="prom"} 1' in text
        (line,) = [r for r in caplog.records if r.getMessage().startswith("late firing")]
        assert line.levelno == logging.WARNING
        assert "late firing ignored service=api alerts=prom:'bca7f9ce4118dd5d'" in line.getMessage()
        # Nothing happened to any incident: nothing in a history.
        assert "resolve_ignored" not in [event for event, _ in await _timeline(config)]


async def test_prometheus_back_after_alertmanager_resolved_its_alert_pages_again(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """Prometheus could not reach Alertmanager for longer than the alert's `endsAt`:
    Alertmanager resolved the alert itself (its `endsAt` the last one Prometheus set), and
    pagerd closed the incident. Prometheus comes back, the alert still firing, and Alertmanager
    notifies it firing with its old `startsAt`. The service is still down: it pages, a new
    incident, also across a restart in between."""
    started = "2026-11-30T21:24:22.809107Z"
    firing = _as_alertmanager_sent("firing", started)
    timed_out = _as_alertmanager_sent("resolved", started, "2026-11-30T21:28:22.809107Z")
    async with running(config) as daemon:
        assert (await alertmanager_webhook(daemon.core, AM, firing)).status == 200
        assert (await alertmanager_webhook(daemon.core, AM, timed_out)).status == 200
        await settle()
        assert daemon.services.state("api").healthy and pages(config) == 2
    async with running(config) as daemon:
        assert (await alertmanager_webhook(daemon.core, AM, firing)).status == 200
        await settle()
        state = daemon.services.state("api")
        assert state.incident is not None and state.incident.number == 2
        assert pages(config) == 4  # level 1's two targets, again
        text = await metrics_text(config.socket)
        assert "pagerd_stale_firings_total{" not in text


async def test_a_resolve_of_an_earlier_firing_leaves_the_incident_open(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """The alert resolved and fired again at Alertmanager; the new firing reached pagerd first
    (pagerd holds it as the open incident's), then the first firing's resolve, late. It
    resolves a firing that is over: the incident stays open, nothing is written to its
    history, and the line says why. The new firing's own resolve closes it."""
    first, second = "2026-11-30T21:24:22.809107Z", "2026-11-30T21:41:07.5Z"
    caplog.set_level(logging.INFO, "pagerd.actors")
    async with running(config) as daemon:
        services = daemon.services
        for body in (
            _as_alertmanager_sent("firing", first),
            _as_alertmanager_sent("firing", second),
            _as_alertmanager_sent("resolved", first, "2026-11-30T21:29:21.815957Z"),
        ):
            assert (await alertmanager_webhook(daemon.core, AM, body)).status == 200
        await settle()
        state = services.state("api")
        assert state.incident is not None and state.incident.number == 1 and pages(config) == 2
        (line,) = [r for r in caplog.records if r.getMessage().startswith("late resolve")]
        assert line.levelno == logging.WARNING
        assert (
            "late resolve ignored service=api alerts=prom:'bca7f9ce4118dd5d'" in line.getMessage()
        )
        # The on-call sees an incident that does not close: its history says why.
        timeline = await _timeline(config)
        assert "resolve" not in [event for event, _ in timeline]
        assert (
            "resolve_ignored",
            "prom: bca7f9ce4118dd5d started 2026-11-30T21:24:22.809107Z, before the firing that"
            " holds the incident (started 2026-11-30T21:41:07.5Z): the incident stays open",
        ) in timeline
        async with connect(config.socket) as conn:
            reply = await conn.request("history", service="api")
        shown = pager.cli.render("history", reply)
        assert (
            "late resolve ignored through prom: bca7f9ce4118dd5d started"
            " 2026-11-30T21:24:22.809107Z, before the firing that holds the incident (started"
            " 2026-11-30T21:41:07.5Z)" in shown
        )
        resolved = _as_alertmanager_sent("resolved", second, "2026-11-30T21:50:01Z")
        assert (await alertmanager_webhook(daemon.core, AM, resolved)).status == 200
        assert services.state("api").healthy
        assert ("resolve", "prom: bca7f9ce4118dd5d resolved") in await _timeline(config)


async def test_a_firing_without_starts_at_after_its_resolve_pages_as_before(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """Nothing proves it late: one page too many, never one too few."""
    async with running(config) as daemon:
        services = daemon.services
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing")))
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "resolved")))
        await alertmanager_webhook(daemon.core, AM, webhook(("f1", "firing")))
        state = services.state("api")
        assert state.incident is not None and state.incident.number == 2
